"""Sign-in through API → Temporal → worker → activities → DB, as the iOS client does it (CLIENT_CONTRACT §3.1–3.2)."""

from __future__ import annotations

import base64
import hashlib
import socket
import uuid
from urllib.parse import urlparse

import httpx
from sqlalchemy import select
from temporalio.client import Client

from activities.deps import ActivityDeps
from emulators.control import AppleEmulator
from storage.models import DeviceRegistration, User
from tests.fixtures.ios_client import IOSClient, code_challenge, code_verifier, multipart


def _email() -> str:
    return f"u{uuid.uuid4().hex[:10]}@gmail.com"


def test_new_user_signs_in_and_gets_the_three_headers(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    app = IOSClient(http)
    email = _email()
    resp = app.sign_in(email)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"nickname": ""}
    assert resp.headers["Authorization"].startswith("Bearer ey")
    assert resp.headers["authorization-refresh"].startswith("Bearer ey")
    assert resp.headers["email"] == f"{email}+kakao"
    with activity_deps.sessions() as s:
        user = s.scalars(select(User).where(User.account_email == f"{email}+kakao")).one()
        tokens = s.scalars(
            select(DeviceRegistration.token).where(DeviceRegistration.user_id == user.id)
        ).all()
    assert tokens == [app.device_token]


def test_header_names_keep_their_case_on_the_wire(api_url: str) -> None:
    http = httpx.Client(base_url=api_url)
    verifier = code_verifier()
    body, ctype = multipart([("codeChallenge", code_challenge(verifier))])
    code = http.post("/auth-service/getAuthorizeCode", content=body, headers={"Content-Type": ctype}).json()
    body, ctype = multipart(
        [
            ("email", _email()),
            ("provider", "google"),
            ("providerId", "g-1"),
            ("codeVerifier", verifier),
            ("authorizeCode", code["authorizeCode"]),
            ("authorizationCode", ""),
            ("deviceToken", "unknownFcmToken"),
        ]
    )
    url = urlparse(api_url)
    request = (
        f"POST /auth-service/signIn HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200"), head
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n")[1:]]
    assert b"Authorization" in names and b"authorization-refresh" in names and b"email" in names, names


def test_existing_user_gets_the_nickname_and_a_second_device(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    email = _email()
    phone, tablet = IOSClient(http), IOSClient(http)
    assert phone.sign_in(email).status_code == 200
    with activity_deps.sessions.begin() as s:
        s.scalars(select(User).where(User.account_email == f"{email}+kakao")).one().nickname = (
            "해피" + email[1:5]
        )
    resp = tablet.sign_in(email)
    assert resp.json() == {"nickname": "해피" + email[1:5]}
    with activity_deps.sessions() as s:
        user = s.scalars(select(User).where(User.account_email == f"{email}+kakao")).one()
        tokens = set(s.scalars(select(DeviceRegistration.token).where(DeviceRegistration.user_id == user.id)))
    assert tokens == {phone.device_token, tablet.device_token}


def test_placeholder_device_token_is_not_stored(http: httpx.Client, activity_deps: ActivityDeps) -> None:
    app = IOSClient(http, device_token="unknownFcmToken")
    assert app.sign_in(_email()).status_code == 200
    with activity_deps.sessions() as s:
        assert (
            s.scalars(select(DeviceRegistration).where(DeviceRegistration.token == "unknownFcmToken")).all()
            == []
        )


def test_original_server_challenge_form_without_leading_zeros_is_accepted(http: httpx.Client) -> None:
    verifier = next(
        v for v in (code_verifier() for _ in range(2000)) if hashlib.sha512(v.encode()).hexdigest()[0] == "0"
    )
    short = format(int.from_bytes(hashlib.sha512(verifier.encode()).digest(), "big"), "064x")
    assert len(short) < 128
    app = IOSClient(http)
    code = app.post_multipart(
        "/auth-service/getAuthorizeCode", [("codeChallenge", short)], authed=False
    ).json()
    resp = app.post_multipart(
        "/auth-service/signIn",
        [
            ("email", _email()),
            ("provider", "kakao"),
            ("providerId", "1"),
            ("codeVerifier", verifier),
            ("authorizeCode", code["authorizeCode"]),
            ("authorizationCode", ""),
            ("deviceToken", "t"),
        ],
        authed=False,
    )
    assert resp.status_code == 200, resp.text


def test_unknown_provider_is_403_and_leaves_the_code_usable(http: httpx.Client) -> None:
    app = IOSClient(http)
    verifier = code_verifier()
    code = app.authorize_code(verifier)
    refused = app.present_code(code, verifier, _email(), provider="naver")
    assert refused.status_code == 403 and "unknown provider" in refused.json()["message"]
    assert app.present_code(code, verifier, _email()).status_code == 200


def test_missing_parts_are_400_with_a_reason(http: httpx.Client) -> None:
    resp = IOSClient(http).post_multipart("/auth-service/signIn", [("provider", "kakao")], authed=False)
    assert resp.status_code == 400
    assert "email is required" in resp.json()["message"]


def test_apple_sign_in_checks_the_identity_with_apple(
    http: httpx.Client, apple_emulator: AppleEmulator, temporal_client: Client
) -> None:
    apple_emulator.register_code("apple-code-1", sub="001234.abc.0815", email="abc@privaterelay.appleid.com")
    apple_code = base64.b64encode(b"apple-code-1").decode()
    ok = IOSClient(http).sign_in("abc@privaterelay.appleid.com", "apple", "001234.abc.0815", apple_code)
    assert ok.status_code == 200, ok.text
    apple_emulator.register_code("apple-code-2", sub="001234.someone-else.0815")
    bad = IOSClient(http).sign_in(
        "abc@privaterelay.appleid.com", "apple", "001234.abc.0815", base64.b64encode(b"apple-code-2").decode()
    )
    assert bad.status_code == 403


def test_apple_outage_is_retried_by_the_workflow(http: httpx.Client, apple_emulator: AppleEmulator) -> None:
    apple_emulator.register_code("apple-code-3", sub="s-3", email="x@icloud.com")
    apple_emulator.fail("token", 503, times=2)
    resp = IOSClient(http).sign_in("x@icloud.com", "apple", "s-3", base64.b64encode(b"apple-code-3").decode())
    assert resp.status_code == 200, resp.text
