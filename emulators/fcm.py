"""A local FCM HTTP v1 emulator (dev tool): records sends and fails on demand, like the real service.

``python -m emulators.fcm --port 9099``. firebase-admin is pointed at it by ``SOSOHAPPY_FCM_ENDPOINT``.
Control endpoints under ``/emulator/`` list what was received and inject failures and slow answers per
token.

Like FCM it refuses a message whose payload is over 4,096 bytes (``payload_bytes``) with HTTP 400
``INVALID_ARGUMENT``, in the shape FCM answers it (observed 2024, reown-com/push-server#346): message
"Android message is too big", a ``google.rpc.BadRequest`` detail without a field violation and an
``FcmError`` with errorCode ``INVALID_ARGUMENT``. An injected ``INVALID_ARGUMENT`` is by default an
invalid registration token, whose answer names ``message.token``; with ``field`` it is an invalid value
of that field (FCM's documented BadRequest example, no ``FcmError``), which says nothing of the token.

Like FCM it refuses a target that cannot be a registration token (``is_token_shaped``: empty, or with a
character outside the URL-safe base64 alphabet and ``:``, such as a space, a control character or
non-ASCII) with 400 ``INVALID_ARGUMENT`` as FCM answers it (firebase/firebase-admin-java#1064): the
message "The registration token is not a valid FCM registration token" and an ``FcmError`` detail,
without a field violation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from emulators.failures import FailureBook

#: FCM error code -> (HTTP status, canonical gRPC status) exactly as the real service answers.
ERRORS: dict[str, tuple[int, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND"),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED"),
    "UNAVAILABLE": (503, "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL"),
}
#: FCM's limit for a message to one registration token.
MAX_PAYLOAD_BYTES = 4096
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
MESSAGES = {
    "UNREGISTERED": "Requested entity was not found.",
    "INVALID_ARGUMENT": "The registration token is not a valid FCM registration token",
    "SENDER_ID_MISMATCH": "SenderId mismatch",
    "QUOTA_EXCEEDED": "Quota exceeded.",
    "UNAVAILABLE": "The service is currently unavailable.",
    "INTERNAL": "Internal error encountered.",
}


class FailureRule(BaseModel):
    """Fail sends to ``token`` with ``error`` for the next ``times`` calls (``None``: always).

    For ``INVALID_ARGUMENT``, ``field`` is the message field FCM names: ``message.token`` (default, an
    invalid registration token) or any other (an invalid value of that field: the token is fine)."""

    token: str
    error: str
    times: int | None = None
    #: The ``Retry-After`` header: seconds, or an HTTP date.
    retry_after: int | str | None = None
    field: str = "message.token"


class DelayRule(BaseModel):
    """Answer the next ``times`` sends to ``token`` (``None``: every one) ``seconds`` late, as a slow FCM
    does: the send is taken (and any failure rule applied) only when the answer is given."""

    token: str
    seconds: float
    times: int | None = 1


@dataclass
class FcmState:
    """Everything the emulator remembers; guarded by one lock."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    failures: FailureBook[FailureRule] = field(default_factory=FailureBook)
    delays: FailureBook[DelayRule] = field(default_factory=FailureBook)
    lock: threading.Lock = field(default_factory=threading.Lock)


#: What a registration token is made of: FCM's tokens are an instance id, ``:`` and URL-safe base64.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_:.\-]+")


def is_token_shaped(token: object) -> bool:
    """True when ``token`` could be a registration token (FCM refuses any other target as invalid)."""
    return isinstance(token, str) and TOKEN_SHAPE.fullmatch(token) is not None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def payload_bytes(message: dict[str, Any]) -> int:
    """The payload FCM counts against its limit, in UTF-8 bytes: the keys and values of ``data``,
    ``notification`` and ``android.notification``, plus the APNs payload (``apns.payload``) as JSON."""

    def pairs(values: Any) -> int:
        if not isinstance(values, dict):
            return 0
        return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in values.items())

    android = message.get("android")
    apns = message.get("apns")
    apns_payload = apns.get("payload") if isinstance(apns, dict) else None
    size = pairs(message.get("data")) + pairs(message.get("notification"))
    size += pairs(android.get("notification")) if isinstance(android, dict) else 0
    if apns_payload:
        size += len(json.dumps(apns_payload, ensure_ascii=False, separators=(",", ":")).encode())
    return size


def _error_body(code: str, field: str | None = "message.token") -> tuple[int, dict[str, Any]]:
    """FCM's answer to ``code``; an ``INVALID_ARGUMENT`` names ``field`` in a violation (``None``: none,
    as FCM answers a target that is not a token at all)."""
    status, canonical = ERRORS[code]
    details: list[dict[str, Any]] = [{"@type": FCM_ERROR, "errorCode": code}]
    message = MESSAGES[code]
    if code == "INVALID_ARGUMENT" and field == "message.token":
        violation = {"field": field, "description": "Invalid registration token"}
        details.append({"@type": BAD_REQUEST, "fieldViolations": [violation]})
    elif code == "INVALID_ARGUMENT" and field is not None:
        message = f"Invalid value at '{field}'"
        details = [{"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]}]
    return status, {"error": {"code": status, "message": message, "status": canonical, "details": details}}


def _too_big_body() -> dict[str, Any]:
    return {
        "error": {
            "code": 400,
            "message": "Android message is too big",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": BAD_REQUEST}, {"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"}],
        }
    }


def create_app() -> FastAPI:
    """The emulator's ASGI app with fresh state."""
    app = FastAPI(title="FCM emulator", docs_url=None, redoc_url=None)
    state = FcmState()
    app.state.fcm = state

    @app.post("/v1/projects/{project_id}/messages:send")
    async def send(project_id: str, request: Request) -> JSONResponse:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status_code=401)
        try:
            body = await request.json()
            message = body["message"]
            token = message.get("token") or message["fid"]
        except (ValueError, KeyError, TypeError, AttributeError):
            status, err = _error_body("INVALID_ARGUMENT", field="message")
            return JSONResponse(err, status_code=status)
        if not is_token_shaped(token):
            with state.lock:
                state.attempts.append(
                    {"token": token, "outcome": "INVALID_ARGUMENT", "reason": "not a token", "at": _now()}
                )
            status, err = _error_body("INVALID_ARGUMENT", field=None)
            return JSONResponse(err, status_code=status)
        with state.lock:
            delay = state.delays.take(token)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        size = payload_bytes(message)
        if size > MAX_PAYLOAD_BYTES:
            with state.lock:
                state.attempts.append(
                    {"token": token, "outcome": "INVALID_ARGUMENT", "reason": f"{size} bytes", "at": _now()}
                )
            return JSONResponse(_too_big_body(), status_code=400)
        with state.lock:
            rule = state.failures.take(token)
            state.attempts.append(
                {"token": token, "outcome": rule.error if rule else "accepted", "at": _now()}
            )
            if rule is None:
                name = f"projects/{project_id}/messages/{uuid.uuid4().hex}"
                if not body.get("validate_only"):
                    state.messages.append(
                        {
                            "id": name,
                            "project": project_id,
                            "token": token,
                            "message": message,
                            "received_at": _now(),
                        }
                    )
                return JSONResponse({"name": name})
        status, err = _error_body(rule.error, rule.field)
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
        return JSONResponse(err, status_code=status, headers=headers)

    @app.get("/emulator/messages")
    def messages(token: str | None = None) -> dict[str, Any]:
        with state.lock:
            return {"messages": [m for m in state.messages if token is None or m["token"] == token]}

    @app.get("/emulator/attempts")
    def attempts(token: str | None = None) -> dict[str, Any]:
        with state.lock:
            return {"attempts": [a for a in state.attempts if token is None or a["token"] == token]}

    @app.post("/emulator/failures")
    def add_failure(rule: FailureRule) -> JSONResponse:
        if rule.error not in ERRORS:
            return JSONResponse(
                {"detail": f"unknown error {rule.error}; one of {sorted(ERRORS)}"}, status_code=400
            )
        with state.lock:
            state.failures.add(rule.token, rule)
        return JSONResponse({"ok": True})

    @app.post("/emulator/delays")
    def add_delay(rule: DelayRule) -> dict[str, bool]:
        with state.lock:
            state.delays.add(rule.token, rule)
        return {"ok": True}

    @app.delete("/emulator/failures")
    def clear_failures() -> dict[str, bool]:
        with state.lock:
            state.failures.clear()
            state.delays.clear()
        return {"ok": True}

    @app.delete("/emulator/messages")
    def clear_messages() -> dict[str, bool]:
        with state.lock:
            state.messages.clear()
            state.attempts.clear()
        return {"ok": True}

    return app


def main() -> None:
    """Run the emulator until interrupted."""
    parser = argparse.ArgumentParser(description="FCM HTTP v1 emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9099)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
