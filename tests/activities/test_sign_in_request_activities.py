"""The activities of a stored sign-in request, resign's Apple step and the push sends, called as the worker
calls them: they read secrets from the database by id, keep Apple's refresh token themselves, are
idempotent across retries, and their failures name error codes only."""

from __future__ import annotations

import base64
import dataclasses
import uuid

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.accounts import APPLE_CALLS_SECONDS, APPLE_CODE_SPENT, REQUEST_GONE, AccountActivities
from activities.apple import AppleUnavailable
from activities.deps import ActivityDeps
from activities.push import DEVICE_GONE, DeviceSend, DmDeviceSend, PushActivities
from activities.resign import ResignActivities
from emulators.control import AppleEmulator, FcmEmulator
from storage import sign_in_requests, users
from storage.models import DeviceRegistration, LoginSession, SignInRequest, User
from temporal.accounts import AppleCheck, OpenRequestedLogin
from temporal.push import LikeNotice
from tests.workflows.push_helpers import device_ids_by_token, named_user, user_with_devices
from workflows.sign_in import APPLE_TIMEOUT


def _request(deps: ActivityDeps, provider: str, provider_id: str, email: str, apple_code: str = "") -> str:
    with deps.sessions.begin() as s:
        return sign_in_requests.create(
            s,
            email=email,
            provider=provider,
            provider_id=provider_id,
            device_token=f"fcm-{uuid.uuid4().hex}",
            apple_authorization_code=base64.b64encode(apple_code.encode()).decode() if apple_code else None,
        )


def _row(deps: ActivityDeps, request_id: str) -> SignInRequest | None:
    with deps.sessions() as s:
        return s.get(SignInRequest, request_id)


def test_the_apple_exchange_keeps_the_refresh_token_and_a_retry_answers_from_the_request(
    activity_deps: ActivityDeps, apple_emulator: AppleEmulator
) -> None:
    code, sub, email = (
        f"c-{uuid.uuid4().hex}",
        f"s-{uuid.uuid4().hex[:8]}",
        f"a{uuid.uuid4().hex[:8]}@icloud.com",
    )
    apple_emulator.register_code(code, sub=sub, email=email)
    request_id = _request(activity_deps, "apple", sub, email, code)
    check = AccountActivities(activity_deps).check_apple_code
    env = ActivityEnvironment()
    assert env.run(check, request_id) == AppleCheck(sub_matches=True, email_matches=True)
    row = _row(activity_deps, request_id)
    assert row is not None and row.apple_refresh_token and row.apple_authorization_code is None
    # A retry (the result was lost): Apple codes are single-use, so it answers from the row.
    assert env.run(check, request_id) == AppleCheck(sub_matches=True, email_matches=True)


def test_an_apple_identity_for_another_email_is_not_kept(
    activity_deps: ActivityDeps, apple_emulator: AppleEmulator
) -> None:
    code, sub = f"c-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex[:8]}"
    apple_emulator.register_code(code, sub=sub, email="someone-else@icloud.com")
    request_id = _request(activity_deps, "apple", sub, f"a{uuid.uuid4().hex[:8]}@icloud.com", code)
    check = ActivityEnvironment().run(AccountActivities(activity_deps).check_apple_code, request_id)
    assert check == AppleCheck(sub_matches=True, email_matches=False)
    row = _row(activity_deps, request_id)
    assert row is not None and row.apple_refresh_token is None


def test_an_apple_refusal_names_apples_error_code_only(
    activity_deps: ActivityDeps, apple_emulator: AppleEmulator
) -> None:
    code = f"never-issued-{uuid.uuid4().hex}"
    request_id = _request(activity_deps, "apple", "s-x", "x@icloud.com", code)
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(AccountActivities(activity_deps).check_apple_code, request_id)
    assert info.value.type == "AppleRejected" and info.value.message == "/auth/token: HTTP 400 invalid_grant"


def test_a_retry_finding_the_apple_code_spent_by_the_attempt_before_is_not_apples_refusal(
    activity_deps: ActivityDeps, apple_emulator: AppleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt spent the single-use code, then failed (here Apple's key set could not be
    fetched to verify the id_token; a timeout after Apple answered or a failed database write alike):
    the retry's ``invalid_grant`` is the workflow's doing, not the user's, and says so."""
    code, sub, email = (
        f"c-{uuid.uuid4().hex}",
        f"s-{uuid.uuid4().hex[:8]}",
        f"a{uuid.uuid4().hex[:8]}@icloud.com",
    )
    apple_emulator.register_code(code, sub=sub, email=email)
    request_id = _request(activity_deps, "apple", sub, email, code)
    activities = AccountActivities(activity_deps)
    env = ActivityEnvironment()

    def keys_unreachable(kid: str, deadline: object = None) -> None:
        raise AppleUnavailable("/auth/keys: ConnectError")

    with monkeypatch.context() as patch:
        patch.setattr(activities._apple_keys, "key", keys_unreachable)
        with pytest.raises(ApplicationError) as first:
            env.run(activities.check_apple_code, request_id)
    assert first.value.type == "AppleUnavailable" and not first.value.non_retryable
    env.info = dataclasses.replace(env.info, attempt=2)
    with pytest.raises(ApplicationError) as retry:
        env.run(activities.check_apple_code, request_id)
    assert retry.value.type == APPLE_CODE_SPENT and retry.value.non_retryable
    assert "invalid_grant" in retry.value.message and code not in retry.value.message
    row = _row(activity_deps, request_id)
    assert row is not None and row.apple_sub_matches is None and row.apple_refresh_token is None


def test_a_first_attempts_invalid_grant_is_still_apples_refusal(
    activity_deps: ActivityDeps, apple_emulator: AppleEmulator
) -> None:
    request_id = _request(activity_deps, "apple", "s-x", "x@icloud.com", f"never-issued-{uuid.uuid4().hex}")
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(AccountActivities(activity_deps).check_apple_code, request_id)
    assert info.value.type == "AppleRejected" and info.value.non_retryable


def test_the_apple_calls_of_an_attempt_end_well_before_temporal_times_it_out() -> None:
    assert APPLE_CALLS_SECONDS <= APPLE_TIMEOUT.total_seconds() - 2


def test_opening_the_login_moves_the_secrets_out_of_the_request_and_is_idempotent(
    activity_deps: ActivityDeps,
) -> None:
    email = f"k{uuid.uuid4().hex[:10]}@gmail.com"
    request_id = _request(activity_deps, "kakao", f"k-{uuid.uuid4().hex[:8]}", email)
    row = _row(activity_deps, request_id)
    assert row is not None and row.device_token is not None
    device_token = row.device_token
    open_login = AccountActivities(activity_deps).open_requested_login
    req = OpenRequestedLogin(request_id=request_id, session_id=str(uuid.uuid4()), refresh_ttl_seconds=60)
    env = ActivityEnvironment()
    first = env.run(open_login, req)
    again = env.run(open_login, req.model_copy(update={"session_id": str(uuid.uuid4())}))  # a retry
    assert first.status == "ok" and first.device_registered
    assert (again.user_id, again.session_id) == (first.user_id, first.session_id)
    with activity_deps.sessions() as s:
        user = s.get(User, first.user_id)
        assert user is not None and user.account_email == f"{email}+kakao"
        assert (
            s.scalar(select(func.count()).select_from(LoginSession).where(LoginSession.user_id == user.id))
            == 1
        )
        assert s.scalars(
            select(DeviceRegistration.token).where(DeviceRegistration.user_id == user.id)
        ).all() == [device_token]
        row = s.get(SignInRequest, request_id)
        assert row is not None and row.device_token is None and row.apple_refresh_token is None


def test_a_request_that_is_gone_is_a_permanent_failure(activity_deps: ActivityDeps) -> None:
    req = OpenRequestedLogin(
        request_id=uuid.uuid4().hex, session_id=str(uuid.uuid4()), refresh_ttl_seconds=60
    )
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(AccountActivities(activity_deps).open_requested_login, req)
    assert info.value.type == REQUEST_GONE and info.value.non_retryable


def test_resign_revokes_the_apple_token_read_from_the_account_row(
    activity_deps: ActivityDeps, apple_emulator: AppleEmulator
) -> None:
    tag = uuid.uuid4().hex[:10]
    token = f"apple-refresh-{tag}"
    with activity_deps.sessions.begin() as s:
        apple_user_id = users.upsert_account(s, f"{tag}@icloud.com+apple", "apple", tag, token).id
    kakao_user, _ = user_with_devices(activity_deps, 0)
    revoke = ResignActivities(activity_deps).revoke_apple_of_user
    env = ActivityEnvironment()
    assert env.run(revoke, apple_user_id) == "revoked"
    assert env.run(revoke, apple_user_id) == "revoked"  # a retry revokes again, harmlessly
    assert [r["token"] for r in apple_emulator.revocations()].count(token) == 2
    assert env.run(revoke, kakao_user) == "not-apple"
    assert env.run(revoke, 10**12) == "not-apple"  # no account row at all


def test_a_device_no_longer_the_receivers_is_not_sent_to(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    from storage import devices, logins

    owner, [token] = user_with_devices(activity_deps, 1)
    [device_id] = device_ids_by_token(activity_deps, owner).values()
    other, _ = named_user(activity_deps, "other")
    with activity_deps.sessions.begin() as s:  # another account signed in on the device
        login = logins.open_session(s, other, activity_deps.settings.refresh_token_ttl_seconds)
        devices.register_device(s, other, token, login.id)
    push = PushActivities(activity_deps)
    env = ActivityEnvironment()
    like = LikeNotice(feed_id=1, liker_user_id=other, owner_user_id=owner, date=2024012017042712)
    like_send = DeviceSend(kind="like", device_id=int(device_id), receiver_user_id=owner, like=like)
    with pytest.raises(ApplicationError) as info:
        env.run(push.send_to_device, like_send)
    assert info.value.type == DEVICE_GONE and info.value.non_retryable
    dm_send = DmDeviceSend(
        device_id=int(device_id), receiver_user_id=owner, sender_user_id=other, message_id="m", count=1
    )
    with pytest.raises(ApplicationError) as info:
        env.run(push.send_dm_to_device, dm_send)
    assert info.value.type == DEVICE_GONE
    assert fcm_emulator.messages(token) == []


def test_an_fcm_failure_names_the_error_code_not_the_token(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    [device_id] = device_ids_by_token(activity_deps, owner).values()
    fcm_emulator.fail(token, "UNREGISTERED")
    req = DeviceSend(kind="like", device_id=int(device_id), receiver_user_id=owner)
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(PushActivities(activity_deps).send_to_device, req)
    assert (info.value.type, info.value.message) == ("UNREGISTERED", "FCM UNREGISTERED")
