"""Sign in with Apple: the ES256 client secret, the authorization-code exchange and token revocation.

Base URL, team, key and client ids come from settings, so the same code talks to Apple or the emulator.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config import Settings

APPLE_AUDIENCE = "https://appleid.apple.com"


class AppleRejected(Exception):
    """Apple refused the request (4xx): permanent, retrying cannot help."""


class AppleUnavailable(Exception):
    """Apple could not answer (5xx or network): transient, worth retrying."""


@dataclass(frozen=True)
class AppleTokens:
    """What an authorization-code exchange yields."""

    refresh_token: str
    id_token: str
    sub: str
    email: str


def generate_apple_private_key() -> str:
    """A new P-256 key as base64 PKCS#8 DER (the ``.p8`` body), for local development and tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(der).decode()


def apple_public_key_pem(private_key_b64: str) -> bytes:
    """The PEM public key matching a base64 PKCS#8 private key (given to the emulator)."""
    key = serialization.load_der_private_key(base64.b64decode(private_key_b64), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class AppleClient:
    """Talks to Apple's ``/auth/token`` and ``/auth/revoke`` with a fresh client secret per call."""

    def __init__(self, settings: Settings, http: httpx.Client) -> None:
        if not settings.apple_private_key:
            raise ValueError("SOSOHAPPY_APPLE_PRIVATE_KEY is not set")
        self._settings = settings
        self._http = http
        self._key = serialization.load_der_private_key(
            base64.b64decode(settings.apple_private_key), password=None
        )

    def client_secret(self) -> str:
        """An ES256 JWT valid for 60 s, as Apple requires (kid = key id, iss = team, sub = client id)."""
        now = int(time.time())
        claims = {
            "iss": self._settings.apple_team_id,
            "aud": APPLE_AUDIENCE,
            "sub": self._settings.apple_client_id,
            "iat": now,
            "exp": now + 60,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._settings.apple_key_id})  # type: ignore[arg-type]

    def _post(self, path: str, form: dict[str, str]) -> httpx.Response:
        url = f"{self._settings.apple_base_url.rstrip('/')}{path}"
        try:
            resp = self._http.post(url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise AppleUnavailable(f"{path}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500:
            raise AppleUnavailable(f"{path}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise AppleRejected(f"{path}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp

    def exchange_code(self, code: str) -> AppleTokens:
        """Exchange an authorization code for tokens; the id_token's ``sub`` identifies the Apple user."""
        resp = self._post(
            "/auth/token",
            {
                "code": code,
                "client_id": self._settings.apple_client_id,
                "client_secret": self.client_secret(),
                "grant_type": "authorization_code",
                "redirect_uri": self._settings.apple_redirect_uri,
            },
        )
        body = resp.json()
        id_token = body.get("id_token", "")
        try:
            # The id_token comes straight from Apple's token endpoint over TLS, so its claims are
            # checked (issuer, audience) without fetching Apple's signing keys (OpenID Connect §3.1.3.7).
            claims = jwt.decode(id_token, options={"verify_signature": False, "verify_exp": False})
        except jwt.PyJWTError as exc:
            raise AppleRejected(f"unreadable id_token: {exc}") from exc
        if claims.get("iss") != APPLE_AUDIENCE or claims.get("aud") != self._settings.apple_client_id:
            raise AppleRejected("id_token issued for another issuer or audience")
        return AppleTokens(
            refresh_token=str(body.get("refresh_token", "")),
            id_token=id_token,
            sub=str(claims.get("sub", "")),
            email=str(claims.get("email", "")),
        )

    def revoke(self, refresh_token: str) -> None:
        """Revoke a user's Apple refresh token (used when the account resigns)."""
        self._post(
            "/auth/revoke",
            {
                "client_id": self._settings.apple_client_id,
                "client_secret": self.client_secret(),
                "token": refresh_token,
                "token_type_hint": "refresh_token",
            },
        )
