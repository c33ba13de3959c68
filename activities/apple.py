"""Sign in with Apple: the ES256 client secret, the authorization-code exchange and token revocation.

Base URL, team, key and client ids come from settings, so the same code talks to Apple or the emulator.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config import Settings

APPLE_AUDIENCE = "https://appleid.apple.com"
#: Apple signs id_tokens with RS256 keys published at ``<base>/auth/keys``.
ID_TOKEN_ALGORITHMS = ["RS256"]
#: Clock skew tolerated on the id_token's ``iat``/``exp``.
ID_TOKEN_LEEWAY_SECONDS = 60


class AppleRejected(Exception):
    """Apple refused the request (4xx): permanent, retrying cannot help. ``error`` is Apple's error code
    (``invalid_grant``, …) when it gave one."""

    def __init__(self, message: str, error: str = "") -> None:
        super().__init__(message)
        self.error = error


class AppleUnavailable(Exception):
    """Apple could not answer (5xx or network): transient, worth retrying."""


class Deadline:
    """When a series of Apple calls must be over (``time.monotonic``): each request gets what is left,
    a third per phase (connect, send, read), so the series ends by then even when every phase is slow;
    ``AppleUnavailable`` once nothing is left."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def timeout(self, what: str) -> httpx.Timeout:
        """The timeout of the next request, ``what`` naming it in the error when time is up."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise AppleUnavailable(f"{what}: out of time")
        return httpx.Timeout(left / 3)


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


class AppleKeys:
    """Apple's id_token signing keys (``/auth/keys``), fetched on first use and again for an unknown
    ``kid`` (Apple rotates them); one per process, shared by its exchanges."""

    def __init__(self, settings: Settings, http: httpx.Client) -> None:
        self._url = f"{settings.apple_base_url.rstrip('/')}/auth/keys"
        self._http = http
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = threading.Lock()

    def _fetch(self, deadline: Deadline | None) -> dict[str, jwt.PyJWK]:
        timeout = deadline.timeout("/auth/keys") if deadline is not None else httpx.USE_CLIENT_DEFAULT
        try:
            resp = self._http.get(self._url, headers={"Accept": "application/json"}, timeout=timeout)
        except httpx.HTTPError as exc:
            raise AppleUnavailable(f"/auth/keys: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise AppleUnavailable(f"/auth/keys: HTTP {resp.status_code}")
        try:
            keys = jwt.PyJWKSet.from_dict(resp.json()).keys
        except (ValueError, jwt.PyJWTError) as exc:
            raise AppleUnavailable(f"/auth/keys: unreadable key set: {exc}") from exc
        return {str(key.key_id): key for key in keys if key.key_id}

    def load(self, deadline: Deadline | None = None) -> None:
        """Fetch the keys unless some are known: called before a code is exchanged, so an outage of
        ``/auth/keys`` is a retry with the code still unused rather than a code spent for nothing."""
        with self._lock:
            if not self._keys:
                self._keys = self._fetch(deadline)

    def key(self, kid: str, deadline: Deadline | None = None) -> jwt.PyJWK:
        """The public key ``kid``; ``AppleRejected`` when Apple does not publish it."""
        with self._lock:
            if kid not in self._keys:
                self._keys = self._fetch(deadline)
            if kid not in self._keys:
                raise AppleRejected(f"id_token signed with a key Apple does not publish ({kid[:40]!r})")
            return self._keys[kid]


def _error_code(resp: httpx.Response) -> str:
    """Apple's ``error`` code (``invalid_grant``, …) of a refused request: only that, never the body,
    which could echo what was sent (the message ends up in workflow failures and logs)."""
    try:
        error = resp.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return error[:64] if isinstance(error, str) and error.isascii() and error.isprintable() else ""


class AppleClient:
    """Talks to Apple's ``/auth/token`` and ``/auth/revoke`` with a fresh client secret per call."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.Client,
        keys: AppleKeys | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """Calls made through this client end by ``deadline`` when one is given (else each request has
        ``http``'s own timeouts)."""
        if not settings.apple_private_key:
            raise ValueError("SOSOHAPPY_APPLE_PRIVATE_KEY is not set")
        self._settings = settings
        self._http = http
        self._keys = keys or AppleKeys(settings, http)
        self._deadline = deadline
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
        timeout = self._deadline.timeout(path) if self._deadline is not None else httpx.USE_CLIENT_DEFAULT
        try:
            resp = self._http.post(url, data=form, headers={"Accept": "application/json"}, timeout=timeout)
        except httpx.HTTPError as exc:
            raise AppleUnavailable(f"{path}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500:
            raise AppleUnavailable(f"{path}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            error = _error_code(resp)
            raise AppleRejected(f"{path}: HTTP {resp.status_code} {error}".rstrip(), error)
        return resp

    def exchange_code(self, code: str) -> AppleTokens:
        """Exchange an authorization code for tokens; the id_token is verified (Apple's signature,
        issuer, audience, expiry) and its ``sub`` identifies the Apple user."""
        self._keys.load(self._deadline)
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
        id_token = str(body.get("id_token", ""))
        claims = self.verify_id_token(id_token)
        return AppleTokens(
            refresh_token=str(body.get("refresh_token", "")),
            id_token=id_token,
            sub=str(claims["sub"]),
            email=str(claims.get("email") or ""),
        )

    def verify_id_token(self, id_token: str) -> dict[str, object]:
        """The claims of an id_token signed by Apple for this app; ``AppleRejected`` otherwise.

        The signature is checked against Apple's published keys, not only the claims: the identity
        binds accounts, so it must be Apple's word, whatever answered on the token endpoint.
        """
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
            if not isinstance(kid, str) or not kid:
                raise AppleRejected("id_token has no key id")
            claims: dict[str, object] = jwt.decode(
                id_token,
                key=self._keys.key(kid, self._deadline),
                algorithms=ID_TOKEN_ALGORITHMS,
                audience=self._settings.apple_client_id,
                issuer=APPLE_AUDIENCE,
                leeway=ID_TOKEN_LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "sub", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise AppleRejected(f"id_token rejected: {exc}") from exc
        if not claims.get("sub"):
            raise AppleRejected("id_token has no subject")
        return claims

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
