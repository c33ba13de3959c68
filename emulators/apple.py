"""A local emulator of Sign in with Apple's ``/auth/token`` and ``/auth/revoke`` (dev tool).

``python -m emulators.apple --port 9098 [--client-public-key-file key.pem]``. Codes are registered through
``POST /emulator/codes``; a code ``local:<sub>:<email>`` is accepted without registration for manual use.
With the client's public key it verifies the ES256 client secret's signature, as Apple does. id_tokens
are signed with an RS256 key published at ``/auth/keys`` (or, for a code registered ``forged``, with one
that is not).
"""

from __future__ import annotations

import argparse
import base64
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from emulators.failures import FailureBook

ISSUER = "https://appleid.apple.com"
KEY_ID = "emulator-rs256"


class CodeGrant(BaseModel):
    """What an authorization code stands for."""

    code: str
    sub: str
    email: str = ""
    #: Sign this code's id_token with a key ``/auth/keys`` does not publish (a forged identity).
    forged: bool = False


class FailureRule(BaseModel):
    """Answer ``status`` on ``endpoint`` (token|revoke) for the next ``times`` calls (``None``: always)."""

    endpoint: str
    status: int
    times: int | None = None


@dataclass
class AppleState:
    """Registered codes, issued refresh tokens, revocations and injected failures."""

    codes: dict[str, CodeGrant] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    revocations: list[dict[str, Any]] = field(default_factory=list)
    failures: FailureBook[FailureRule] = field(default_factory=FailureBook)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _client_secret_problem(secret: str, client_id: str, public_key_pem: bytes | None) -> str | None:
    """Why ``secret`` is not a valid client secret for ``client_id``, or ``None``."""
    try:
        header = jwt.get_unverified_header(secret)
        if header.get("alg") != "ES256" or not header.get("kid"):
            return "client_secret must be ES256 with a kid"
        options = {
            "verify_signature": public_key_pem is not None,
            "require": ["iss", "sub", "aud", "iat", "exp"],
        }
        claims = jwt.decode(
            secret,
            key=public_key_pem or "",
            algorithms=["ES256"],
            audience=ISSUER,
            options=options,  # type: ignore[arg-type]
        )
    except jwt.PyJWTError as exc:
        return f"client_secret rejected: {exc}"
    if claims.get("sub") != client_id:
        return "client_secret sub must equal client_id"
    return None


def create_app(client_public_key_pem: bytes | None = None) -> FastAPI:
    """The emulator's ASGI app; with ``client_public_key_pem`` client secrets are signature-checked."""
    app = FastAPI(title="Sign in with Apple emulator", docs_url=None, redoc_url=None)
    state = AppleState()
    app.state.apple = state
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_numbers = signing_key.public_key().public_numbers()
    signing_pem = signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forging_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    def failure_response(endpoint: str) -> JSONResponse | None:
        with state.lock:
            rule = state.failures.take(endpoint)
        if rule is None:
            return None
        error = "invalid_grant" if rule.status < 500 else "server_error"
        return JSONResponse({"error": error}, status_code=rule.status)

    async def client_form(request: Request) -> tuple[dict[str, str], JSONResponse | None]:
        form = {k: str(v) for k, v in (await request.form()).items()}
        problem = _client_secret_problem(
            form.get("client_secret", ""), form.get("client_id", ""), client_public_key_pem
        )
        if problem:
            return form, JSONResponse(
                {"error": "invalid_client", "error_description": problem}, status_code=400
            )
        return form, None

    @app.post("/auth/token")
    async def token(request: Request) -> JSONResponse:
        if (failed := failure_response("token")) is not None:
            return failed
        form, bad = await client_form(request)
        if bad is not None:
            return bad
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        code = form.get("code", "")
        with state.lock:
            grant = state.codes.pop(code, None)
        if grant is None and code.startswith("local:") and code.count(":") >= 2:
            _, sub, email = code.split(":", 2)
            grant = CodeGrant(code=code, sub=sub, email=email)
        if grant is None:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "unknown or used code"}, status_code=400
            )
        now = int(time.time())
        id_token = jwt.encode(
            {
                "iss": ISSUER,
                "aud": form["client_id"],
                "sub": grant.sub,
                "email": grant.email,
                "iat": now,
                "exp": now + 600,
                "email_verified": "true",
            },
            forging_pem if grant.forged else signing_pem,
            algorithm="RS256",
            headers={"kid": KEY_ID},
        )
        refresh = f"r.{uuid.uuid4().hex}"
        with state.lock:
            state.refresh_tokens[refresh] = grant.sub
        return JSONResponse(
            {
                "access_token": f"a.{uuid.uuid4().hex}",
                "expires_in": 3600,
                "id_token": id_token,
                "refresh_token": refresh,
                "token_type": "Bearer",
            }
        )

    @app.post("/auth/revoke")
    async def revoke(request: Request) -> JSONResponse:
        if (failed := failure_response("revoke")) is not None:
            return failed
        form, bad = await client_form(request)
        if bad is not None:
            return bad
        with state.lock:
            state.revocations.append({"token": form.get("token", ""), "at": datetime.now(UTC).isoformat()})
            state.refresh_tokens.pop(form.get("token", ""), None)
        return JSONResponse({})

    @app.get("/auth/keys")
    def keys() -> dict[str, Any]:
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": KEY_ID,
                    "use": "sig",
                    "alg": "RS256",
                    "n": _b64url_uint(public_numbers.n),
                    "e": _b64url_uint(public_numbers.e),
                }
            ]
        }

    @app.post("/emulator/codes")
    def register_code(grant: CodeGrant) -> dict[str, bool]:
        with state.lock:
            state.codes[grant.code] = grant
        return {"ok": True}

    @app.get("/emulator/revocations")
    def revocations() -> dict[str, Any]:
        with state.lock:
            return {"revocations": list(state.revocations)}

    @app.post("/emulator/failures")
    def add_failure(rule: FailureRule) -> JSONResponse:
        if rule.endpoint not in ("token", "revoke"):
            return JSONResponse({"detail": "endpoint must be token or revoke"}, status_code=400)
        with state.lock:
            state.failures.add(rule.endpoint, rule)
        return JSONResponse({"ok": True})

    @app.delete("/emulator/failures")
    def clear_failures() -> dict[str, bool]:
        with state.lock:
            state.failures.clear()
        return {"ok": True}

    @app.delete("/emulator/state")
    def clear_state() -> dict[str, bool]:
        with state.lock:
            state.codes.clear()
            state.refresh_tokens.clear()
            state.revocations.clear()
            state.failures.clear()
        return {"ok": True}

    return app


def main() -> None:
    """Run the emulator until interrupted."""
    parser = argparse.ArgumentParser(description="Sign in with Apple emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9098)
    parser.add_argument("--client-public-key-file", type=Path, default=None)
    args = parser.parse_args()
    pem = args.client_public_key_file.read_bytes() if args.client_public_key_file else None
    uvicorn.run(create_app(pem), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
