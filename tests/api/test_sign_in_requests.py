"""The stored sign-in request lives for one sign-in: deleted once the workflow answered, whether the
sign-in succeeded or was refused, and purged when a crash left it behind (issue 14)."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from activities.deps import ActivityDeps
from emulators.control import AppleEmulator
from storage import sign_in_requests
from storage.logins import utcnow
from storage.models import SignInRequest
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")


def _rows(deps: ActivityDeps, email: str) -> list[SignInRequest]:
    with deps.sessions() as s:
        return list(s.scalars(select(SignInRequest).where(SignInRequest.email == email)))


def test_an_answered_sign_in_leaves_no_request(http: httpx.Client, activity_deps: ActivityDeps) -> None:
    email = f"k{uuid.uuid4().hex[:10]}@gmail.com"
    resp = IOSClient(http).sign_in(email)
    assert resp.status_code == 200 and resp.headers["email"] == f"{email}+kakao"
    assert _rows(activity_deps, email) == []


def test_a_refused_apple_sign_in_leaves_no_request(
    http: httpx.Client, activity_deps: ActivityDeps, apple_emulator: AppleEmulator
) -> None:
    code, sub, email = (
        f"c-{uuid.uuid4().hex}",
        f"s-{uuid.uuid4().hex[:8]}",
        f"a{uuid.uuid4().hex[:8]}@icloud.com",
    )
    apple_emulator.register_code(code, sub=sub, email="another@icloud.com")
    resp = IOSClient(http).sign_in(email, "apple", sub, base64.b64encode(code.encode()).decode())
    assert resp.status_code == 403 and resp.json()["message"] == "the Apple id_token is for another e-mail"
    assert _rows(activity_deps, email) == []


def test_a_request_left_behind_is_purged_once_expired(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    email = f"left{uuid.uuid4().hex[:8]}@gmail.com"
    with activity_deps.sessions.begin() as s:
        request_id = sign_in_requests.create(
            s,
            email=email,
            provider="kakao",
            provider_id="1",
            device_token="fcm-x",
            apple_authorization_code=None,
        )
        row = s.get(SignInRequest, request_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert IOSClient(http).sign_in(f"k{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    assert _rows(activity_deps, email) == []
