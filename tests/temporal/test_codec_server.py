"""The codec server over real HTTP: /encode and /decode in the remote-codec protocol, the bearer token,
CORS for the UI origin only, and the UI's token-less /decode only from a loopback peer."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from config import Settings
from temporal.codec import ENCODING, KEY_ID, encryption_codec, generate_key_entry
from temporal.codec_server import create_app
from tests.fixtures.codec import UI_ORIGIN, CodecServer

TEXT = b'{"deviceToken":"fcm-device-token-42"}'


def body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_of(resp: httpx.Response) -> list[Payload]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    return list(json_format.Parse(resp.text, Payloads()).payloads)


def test_encode_then_decode_round_trips_in_protobuf_json(codec_server: CodecServer) -> None:
    original = Payload(metadata={"encoding": b"json/plain"}, data=TEXT)
    with httpx.Client(base_url=codec_server.url, headers=codec_server.auth) as http:
        # Only the last path segment counts (the protocol lets a server be mounted at any depth).
        encoded = payloads_of(http.post("/sosohappy/encode", content=body(original)))
        (sealed,) = encoded
        assert sealed.metadata["encoding"] == ENCODING and KEY_ID in sealed.metadata
        assert TEXT not in sealed.data
        raw = http.post("/decode", content=body(*encoded), headers={"X-Namespace": "sosohappy"})
        assert payloads_of(raw) == [original]
        # What a client reads: base64 data, base64 metadata values.
        (shown,) = raw.json()["payloads"]
        assert base64.b64decode(shown["data"]) == TEXT
        assert base64.b64decode(shown["metadata"]["encoding"]) == b"json/plain"


async def test_decoding_what_a_client_wrote_and_unencrypted_payloads(codec_server: CodecServer) -> None:
    written = await encryption_codec(codec_server.settings).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=TEXT)]
    )
    unencrypted = Payload(metadata={"encoding": b"json/plain"}, data=b'"old history"')
    resp = httpx.post(
        f"{codec_server.url}/decode", content=body(*written, unencrypted), headers=codec_server.auth
    )
    assert [p.data for p in payloads_of(resp)] == [TEXT, b'"old history"']


@pytest.mark.parametrize("path", ["/encode", "/decode"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-of-the-right-length-0000000000", "Basic x"])
def test_a_missing_or_wrong_token_is_401(codec_server: CodecServer, path: str, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    resp = httpx.post(f"{codec_server.url}{path}", content=body(Payload(data=TEXT)), headers=headers)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert resp.json() == {"error": "a valid bearer token is required"}


def test_bad_bodies_are_400_with_a_reason(codec_server: CodecServer) -> None:
    with httpx.Client(base_url=codec_server.url, headers=codec_server.auth) as http:
        resp = http.post("/decode", content="not json")
        assert resp.status_code == 400 and "protobuf JSON" in resp.json()["error"]
        tampered = Payload(metadata={"encoding": ENCODING, KEY_ID: b"nope"}, data=b"x" * 40)
        resp = http.post("/decode", content=body(tampered))
        assert (
            resp.status_code == 400 and "key id 'nope', which is not in the keyring" in resp.json()["error"]
        )
        assert http.post("/other", content=body()).status_code == 404


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{url}/decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )


def test_cors_preflight_admits_the_ui_origin_only(codec_server: CodecServer) -> None:
    allowed = preflight(codec_server.url, UI_ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert {h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")} >= {
        "content-type",
        "x-namespace",
        "authorization",
    }
    refused = preflight(codec_server.url, "http://evil.example")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_the_ui_decodes_without_a_token_only_from_its_origin_on_loopback(codec_server: CodecServer) -> None:
    sealed = body(Payload(metadata={"encoding": b"json/plain"}, data=TEXT))
    ui = {"Origin": UI_ORIGIN, "X-Namespace": "sosohappy", "Content-Type": "application/json"}
    with httpx.Client(base_url=codec_server.url) as http:
        resp = http.post("/decode", content=sealed, headers=ui)
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == UI_ORIGIN
        assert http.post("/encode", content=sealed, headers=ui).status_code == 401
        other = {**ui, "Origin": "http://evil.example"}
        resp = http.post("/decode", content=sealed, headers=other)
        assert resp.status_code == 401 and "access-control-allow-origin" not in resp.headers


async def test_the_token_less_ui_path_is_closed_to_other_peers_and_when_off() -> None:
    token = "t" * 40
    keys = generate_key_entry("k1")
    ui = {"Origin": UI_ORIGIN, "Content-Type": "application/json"}
    for peer, without_token, status in (
        ("10.0.0.7", True, 401),
        ("127.0.0.1", False, 401),
        ("::1", True, 200),
    ):
        settings = Settings(
            env="test",
            temporal_payload_keys=keys,  # type: ignore[arg-type]
            codec_server_token=token,  # type: ignore[arg-type]
            codec_server_ui_origin=UI_ORIGIN,
            codec_server_ui_without_token=without_token,
        )
        transport = httpx.ASGITransport(app=create_app(settings), client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
            resp = await http.post("/decode", content=body(Payload(data=TEXT)), headers=ui)
            assert resp.status_code == status, (peer, without_token)
            authorised = await http.post(
                "/decode", content=body(Payload(data=TEXT)), headers={"Authorization": f"Bearer {token}"}
            )
            assert authorised.status_code == 200


def test_the_codec_server_refuses_to_run_without_a_token() -> None:
    with pytest.raises(ValueError, match="SOSOHAPPY_CODEC_SERVER_TOKEN is required"):
        create_app(Settings(env="test"))


def test_health_needs_no_token(codec_server: CodecServer) -> None:
    assert httpx.get(f"{codec_server.url}/healthz").json() == {"status": "ok"}
    assert json.loads(httpx.get(f"{codec_server.url}/readyz").text) == {"status": "ok"}
