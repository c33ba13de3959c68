"""HS512 access and refresh tokens with the original claims (``sub``, ``exp``, ``email``), ``sub`` enforced.

Both also carry the login session (``sid``) and the user id (``uid``); a refresh token carries the session's
``gen``eration so a replayed, already-rotated refresh token is recognised.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt

from config import Settings

#: Verified tokens each issuer remembers (by their exact string): a client sends one access token with
#: every request until it expires, and checking its HS512 signature and decoding its JSON each time
#: was about a tenth of a feed listing's CPU in the API (py-spy of ``bench.feed``).
VERIFIED_TOKENS_KEPT = 4096
#: Claims whose check depends on the clock besides ``exp``: a token carrying one is never remembered.
_CLOCK_CLAIMS = ("nbf", "iat")

ACCESS = "AccessToken"
REFRESH = "RefreshToken"
BEARER = "Bearer "


class InvalidToken(Exception):
    """The token is missing, malformed, expired, badly signed or of the wrong kind."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    kind: str
    account_email: str
    user_id: int
    session_id: str
    generation: int
    expires_at: int


class TokenIssuer:
    """Signs and verifies tokens with the configured secret and lifetimes."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret.encode()
        self._ttl = {ACCESS: settings.access_token_ttl_seconds, REFRESH: settings.refresh_token_ttl_seconds}
        # token -> (exp, payload) of tokens whose signature and claims verified (only those: an entry
        # can only come from this issuer's secret); oldest first, at most VERIFIED_TOKENS_KEPT.
        self._verified: dict[str, tuple[int, dict[str, Any]]] = {}
        self._verified_lock = threading.Lock()

    def issue(self, kind: str, account_email: str, user_id: int, session_id: str, generation: int) -> str:
        """A signed token of ``kind`` (``AccessToken`` or ``RefreshToken``)."""
        claims = {
            "sub": kind,
            "exp": int(time.time()) + self._ttl[kind],
            "email": account_email,
            "uid": user_id,
            "sid": session_id,
        }
        if kind == REFRESH:
            claims["gen"] = generation
        return jwt.encode(claims, self._secret, algorithm="HS512", headers={"typ": "JWT"})

    def pair(self, account_email: str, user_id: int, session_id: str, generation: int) -> tuple[str, str]:
        """``(access, refresh)`` for one login at ``generation``."""
        return (
            self.issue(ACCESS, account_email, user_id, session_id, generation),
            self.issue(REFRESH, account_email, user_id, session_id, generation),
        )

    def verify(self, token: str, kind: str) -> TokenClaims:
        """The claims of ``token`` if it is a valid, unexpired token of ``kind``; else ``InvalidToken``.

        A token string's signature and claims are checked once and remembered; its expiry (PyJWT's rule
        and message) and its kind are checked on every call."""
        known = self._verified.get(token)
        if known is None:
            claims = self._decode(token)
        elif known[0] <= time.time():
            raise InvalidToken("Signature has expired")
        else:
            claims = known[1]
        if claims["sub"] != kind:
            raise InvalidToken(f"a {claims['sub']} is not a {kind}")
        try:
            return TokenClaims(
                kind=kind,
                account_email=str(claims["email"]),
                user_id=int(claims["uid"]),
                session_id=str(claims["sid"]),
                generation=int(claims.get("gen", 0)),
                expires_at=int(claims["exp"]),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidToken(f"malformed claims: {exc}") from exc

    def _decode(self, token: str) -> dict[str, Any]:
        """PyJWT's full check of ``token`` (signature, required claims, expiry); the payload, remembered
        unless a claim other than ``exp`` depends on the clock."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS512"],
                options={"require": ["sub", "exp", "email", "sid", "uid"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if not any(claim in claims for claim in _CLOCK_CLAIMS):
            with self._verified_lock:
                if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                    del self._verified[next(iter(self._verified))]
                self._verified[token] = (int(claims["exp"]), claims)
        return claims


def strip_bearer(header: str | None) -> str:
    """The token inside an ``Authorization: Bearer <jwt>`` value; ``InvalidToken`` if it is not one."""
    if not header or not header.startswith(BEARER):
        raise InvalidToken("missing Bearer token")
    return header[len(BEARER) :].strip()
