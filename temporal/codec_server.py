"""``python -m temporal.codec_server``: the codec server that lets people read encrypted payloads.

It speaks the remote-codec protocol of the Temporal Web UI and CLI (``temporal ... --codec-endpoint``):
``POST …/encode`` and ``POST …/decode`` (only the last path segment counts) take and return a
``Payloads`` message in protobuf JSON (``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}``).
Every request needs ``Authorization: Bearer <SOSOHAPPY_CODEC_SERVER_TOKEN>`` (the CLI's
``--codec-auth``), compared in constant time. CORS admits only ``SOSOHAPPY_CODEC_SERVER_UI_ORIGIN``;
the Web UI calls from the browser and cannot send our token, so with
``SOSOHAPPY_CODEC_SERVER_UI_WITHOUT_TOKEN`` a /decode from that origin needs none when it comes from a
loopback peer (the same machine, or ``kubectl port-forward``), never from another address.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from config import Settings
from config.logging import configure_logging
from config.processes import Process, load_settings
from temporal.codec import ENCODING, EncryptionCodec, PayloadDecryptionError, encryption_codec

log = logging.getLogger("sosohappy.codec_server")

#: What this entry point checks its settings for (``config.processes``).
PROCESS = Process.CODEC_SERVER

#: Largest request body: a page of history payloads (Temporal caps one payload at 2 MB by default).
MAX_BODY_BYTES = 16 * 1024 * 1024
OPERATIONS = ("encode", "decode")


def _error(status: int, reason: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers or None)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings, codec: EncryptionCodec | None = None) -> Starlette:
    """The codec server of ``settings`` (token, UI origin, keyring); ``codec`` overrides the keyring."""
    if settings.codec_server_token is None:
        raise ValueError("SOSOHAPPY_CODEC_SERVER_TOKEN is required by the codec server")
    expected = f"Bearer {settings.codec_server_token.get_secret_value()}".encode()
    # It shows histories to people, so /decode returns a plain payload as it is (what someone started
    # without a key is what an operator needs to see; the workers refuse it). /encode always encrypts.
    the_codec = codec or encryption_codec(settings, accept_plain=True)

    def authorised(request: Request, operation: str) -> bool:
        if hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            return True
        return (
            settings.codec_server_ui_without_token
            and operation == "decode"
            and request.headers.get("origin") == settings.codec_server_ui_origin
            and _is_loopback(request.client.host if request.client else None)
        )

    async def convert(request: Request) -> Response:
        operation = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if operation not in OPERATIONS:
            return _error(404, "only …/encode and …/decode exist")
        if not authorised(request, operation):
            return _error(401, "a valid bearer token is required", **{"WWW-Authenticate": "Bearer"})
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            payloads = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return _error(400, f"the body is not a Payloads message in protobuf JSON: {exc}")
        try:
            if operation == "encode":
                converted = await the_codec.encode(list(payloads.payloads))
            else:
                converted = await the_codec.decode(list(payloads.payloads))
        except PayloadDecryptionError as exc:
            return _error(400, str(exc))
        # Namespace only: payload contents never reach the log.
        log.info(
            "%s %d payloads (namespace %s)", operation, len(converted), request.headers.get("x-namespace")
        )
        plain = sum(p.metadata.get("encoding") != ENCODING for p in payloads.payloads)
        if operation == "decode" and plain:
            log.warning("decode: %d payloads were not encrypted (the workers refuse them)", plain)
        return Response(
            json_format.MessageToJson(Payloads(payloads=converted), indent=None),
            media_type="application/json",
        )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", healthz, methods=["GET"]),
            Route("/{path:path}", convert, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[settings.codec_server_ui_origin],
                allow_methods=["POST"],
                # What the Web UI sends: its JSON body, the namespace, and (passAccessToken) a bearer.
                allow_headers=["Content-Type", "X-Namespace", "Authorization"],
                allow_credentials=True,  # the UI's codec.includeCredentials
                max_age=600,
            )
        ],
    )


def main() -> None:
    """Serve the codec server on ``codec_server_host:codec_server_port`` until SIGINT/SIGTERM."""
    # Refused without the payload keys (outside local/test) or the token (in any env: no open codec
    # server); it needs nothing else, e.g. no JWT secret or database (config.processes).
    settings = load_settings(PROCESS)
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.codec_server_host,
        port=settings.codec_server_port,
        # The peer address decides the UI's token-less path: never take it from X-Forwarded-For.
        proxy_headers=False,
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
