"""Users a nudge may be for, made directly in the test database: reachable (a device registered by a live
login), signed out, with entries on given KST moments."""

from __future__ import annotations

import uuid

from activities.deps import ActivityDeps
from storage import devices, feeds, logins, users
from storage.feeds import NewEntry


def reachable_user(deps: ActivityDeps, nickname: str | None = None) -> tuple[int, str]:
    """A new user signed in on one device (a live login that registered its token): ``(id, token)``."""
    tag = uuid.uuid4().hex[:10]
    token = f"nudge-tok-{tag}"
    with deps.sessions.begin() as session:
        user = users.upsert_account(session, f"n{tag}@example.com+kakao", "kakao", f"kakao-{tag}", None)
        if nickname is not None:
            user.nickname = nickname
        login = logins.open_session(session, user.id, deps.settings.refresh_token_ttl_seconds)
        devices.register_device(session, user.id, token, login.id)
        return user.id, token


def sign_out_everywhere(deps: ActivityDeps, user_id: int) -> None:
    """What ``signOut`` does to each of the user's logins: revoke it and forget its devices."""
    with deps.sessions.begin() as session:
        for revocation in logins.revoke_user_sessions(session, user_id):
            devices.remove_session_devices(session, revocation.subject)


def write_entry(
    deps: ActivityDeps, user_id: int, date: int, happiness: int = 3, categories: tuple[str, ...] = ()
) -> None:
    """The user's entry of the KST day of ``date`` (``yyyyMMddHHmmssSS``)."""
    entry = NewEntry(
        user_id=user_id,
        date=date,
        weather="sunny",
        happiness=happiness,
        text="오늘의 비밀 일기",
        is_public=False,
        categories=categories,
        images=(),
    )
    with deps.engine.begin() as conn:
        feeds.save_entry(conn, entry)
