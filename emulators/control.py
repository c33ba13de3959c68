"""Typed clients of the emulators' control endpoints, for tests, benchmarks and manual checks."""

from __future__ import annotations

from typing import Any

import httpx


class FcmEmulator:
    """Reads what the FCM emulator received and tells it to fail."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=10)

    def messages(self, token: str | None = None) -> list[dict[str, Any]]:
        """Accepted messages, optionally only those for ``token``."""
        params = {"token": token} if token is not None else {}
        return list(self._http.get("/emulator/messages", params=params).raise_for_status().json()["messages"])

    def attempts(self, token: str | None = None) -> list[dict[str, Any]]:
        """Every send attempt (accepted or failed), optionally for one token."""
        params = {"token": token} if token is not None else {}
        return list(self._http.get("/emulator/attempts", params=params).raise_for_status().json()["attempts"])

    def fail(
        self,
        token: str,
        error: str,
        times: int | None = None,
        retry_after: int | str | None = None,
        field: str = "message.token",
    ) -> None:
        """Answer sends to ``token`` with ``error`` for the next ``times`` calls (``None``: always); an
        ``INVALID_ARGUMENT`` names ``field`` (default: the registration token)."""
        body = {"token": token, "error": error, "times": times, "retry_after": retry_after, "field": field}
        self._http.post("/emulator/failures", json=body).raise_for_status()

    def delay(self, token: str, seconds: float, times: int | None = 1) -> None:
        """Answer the next ``times`` sends to ``token`` (``None``: all) ``seconds`` late (a slow FCM)."""
        body = {"token": token, "seconds": seconds, "times": times}
        self._http.post("/emulator/delays", json=body).raise_for_status()

    def reset(self) -> None:
        """Forget messages, attempts, failure rules and delays."""
        self._http.delete("/emulator/failures").raise_for_status()
        self._http.delete("/emulator/messages").raise_for_status()

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


class AppleEmulator:
    """Registers authorization codes with the Apple emulator, injects failures, reads revocations."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=10)

    def register_code(self, code: str, sub: str, email: str = "", forged: bool = False) -> None:
        """Make ``code`` exchangeable once for an id_token with ``sub`` and ``email`` (signed with a key
        Apple does not publish when ``forged``)."""
        body = {"code": code, "sub": sub, "email": email, "forged": forged}
        self._http.post("/emulator/codes", json=body).raise_for_status()

    def fail(self, endpoint: str, status: int, times: int | None = None) -> None:
        """Answer ``endpoint`` (``token`` or ``revoke``) with ``status`` for the next ``times`` calls."""
        body = {"endpoint": endpoint, "status": status, "times": times}
        self._http.post("/emulator/failures", json=body).raise_for_status()

    def revocations(self) -> list[dict[str, Any]]:
        """Every accepted revocation."""
        return list(self._http.get("/emulator/revocations").raise_for_status().json()["revocations"])

    def reset(self) -> None:
        """Forget codes, tokens, revocations and failure rules."""
        self._http.delete("/emulator/state").raise_for_status()

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()
