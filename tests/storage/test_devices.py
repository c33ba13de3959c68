"""Device registrations are addressed only while the login that registered them is live, a login revoked for
refresh-token reuse forgets its devices in the revoking transaction, housekeeping deletes the rows of
logins that are over, and tokens compare exactly (FCM tokens are case-sensitive); on MySQL and SQLite."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from storage import devices, housekeeping, logins, nudges
from storage.db import create_db_engine, migrate, session_factory
from storage.models import DeviceRegistration, LoginSession
from tests.storage.helpers import make_user

TTL = 14 * 24 * 3600
GRACE = 60.0
#: A KST day nobody writes an entry on: every reachable user is due a reminder for it.
DAY = 29991231


def _login(engine: Engine, user_id: int) -> str:
    with session_factory(engine).begin() as session:
        return logins.open_session(session, user_id, TTL).id


def _device(engine: Engine, user_id: int, session_id: str | None) -> tuple[int, str]:
    """A registration written as given (``session_id`` NULL or naming no login too): ``(id, token)``."""
    token = f"tok-{uuid.uuid4().hex}"
    now = logins.utcnow()
    with engine.begin() as conn:
        result = conn.execute(
            insert(DeviceRegistration).values(
                user_id=user_id, session_id=session_id, token=token, created_at=now, updated_at=now
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0]), token


def _set_login(engine: Engine, session_id: str, **values: object) -> None:
    with session_factory(engine).begin() as session:
        row = session.get(LoginSession, session_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)


def _every_kind(engine: Engine, user_id: int) -> dict[str, tuple[int, str]]:
    """One device of ``user_id`` per state of its login: ``{state: (id, token)}``."""
    now = logins.utcnow()
    live, revoked, expired = (_login(engine, user_id) for _ in range(3))
    _set_login(engine, revoked, revoked_at=now - timedelta(minutes=1))
    _set_login(engine, expired, expires_at=now - timedelta(seconds=1))
    stranger, _ = make_user(engine)
    return {
        "live": _device(engine, user_id, live),
        "revoked": _device(engine, user_id, revoked),
        "expired": _device(engine, user_id, expired),
        "gone": _device(engine, user_id, str(uuid.uuid4())),  # the login row was deleted
        "none": _device(engine, user_id, None),  # no login at all (never written by a sign-in)
        "another user's": _device(engine, user_id, _login(engine, stranger)),
    }


def test_only_devices_whose_login_is_live_are_addressed(engine: Engine) -> None:
    user_id, _ = make_user(engine)
    kinds = _every_kind(engine, user_id)
    live_id, live_token = kinds["live"]
    with session_factory(engine)() as session:
        assert devices.ids_for(session, user_id) == [live_id]
        assert devices.tokens_for(session, user_id) == [live_token]
        for state, (device_id, token) in kinds.items():
            expected = token if state == "live" else None
            assert devices.token_of(session, device_id, user_id) == expected, state
    with engine.connect() as conn:  # the push activities read over a Core connection
        assert devices.ids_for(conn, user_id) == [live_id]


def test_a_nudge_needs_a_device_whose_own_login_is_live(engine: Engine) -> None:
    now = logins.utcnow()
    reachable, _ = make_user(engine)
    _device(engine, reachable, _login(engine, reachable))
    # A live login (on a device whose token was a placeholder: nothing registered) and a device whose
    # login was revoked: no device would get the reminder, so the user is not listed.
    split, _ = make_user(engine)
    _login(engine, split)
    revoked = _login(engine, split)
    _device(engine, split, revoked)
    _set_login(engine, revoked, revoked_at=now)
    with session_factory(engine)() as session:
        listed = nudges.reminder_recipients(session, DAY, now, min(reachable, split) - 1, 1000)
    assert reachable in listed
    assert split not in listed


def test_a_login_revoked_for_reuse_forgets_its_devices_in_the_same_transaction(engine: Engine) -> None:
    user_id, _ = make_user(engine)
    stolen, kept = _login(engine, user_id), _login(engine, user_id)
    _, stolen_token = _device(engine, user_id, stolen)
    kept_id, _ = _device(engine, user_id, kept)
    t0 = logins.utcnow().replace(microsecond=0)
    sessions = session_factory(engine)
    for generation, at in ((0, t0), (1, t0 + timedelta(seconds=GRACE + 1))):
        with sessions.begin() as session:
            assert logins.rotate_session(session, stolen, generation, TTL, GRACE, now=at).rotation is (
                logins.Rotation.ROTATED
            )
    reuse_at = t0 + timedelta(seconds=2 * GRACE + 2)

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), sessions.begin() as session:  # the revocation rolled back ...
        result = logins.rotate_session(session, stolen, 0, TTL, GRACE, now=reuse_at)
        assert result.rotation is logins.Rotation.REUSED
        assert devices.ids_for(session, user_id) == [kept_id]
        raise RolledBack
    with sessions() as session:  # ... takes the device's removal with it
        assert session.scalars(
            select(DeviceRegistration.token).where(DeviceRegistration.token == stolen_token)
        ).all()

    with sessions.begin() as session:
        assert logins.rotate_session(session, stolen, 0, TTL, GRACE, now=reuse_at).rotation is (
            logins.Rotation.REUSED
        )
    with sessions() as session:
        tokens = session.scalars(
            select(DeviceRegistration.token).where(DeviceRegistration.user_id == user_id)
        )
        assert stolen_token not in set(tokens)
        assert devices.ids_for(session, user_id) == [kept_id]  # the other login's device stays


def test_tokens_differing_only_in_case_or_ignorable_characters_are_different_devices(engine: Engine) -> None:
    """A sign-in with a case variant of another account's token (or one with a character the table's
    collation ignores) registers a device of its own: it never takes the other account's row, and FCM
    calling one of them dead removes that one alone."""
    core = uuid.uuid4().hex
    tokens = [f"AbC{core}x", f"abc{core}X", f"AbC\x01{core}x"]
    owners = [make_user(engine)[0] for _ in tokens]
    sessions = session_factory(engine)
    for owner, token in zip(owners, tokens, strict=True):
        login = _login(engine, owner)
        with sessions.begin() as session:
            assert devices.register_device(session, owner, token, login)

    def registered() -> dict[str, int]:
        with sessions() as session:
            rows = session.execute(select(DeviceRegistration.token, DeviceRegistration.user_id))
            return {token: user_id for token, user_id in rows if token in tokens}

    assert registered() == dict(zip(tokens, owners, strict=True))
    with sessions() as session:
        for owner, token in zip(owners, tokens, strict=True):
            assert devices.tokens_for(session, owner) == [token]
    with sessions.begin() as session:
        assert devices.remove_token(session, tokens[1]) == 1
    assert registered() == {tokens[0]: owners[0], tokens[2]: owners[2]}


def test_housekeeping_deletes_the_devices_of_logins_that_are_over_in_batches(tmp_path: Path) -> None:
    # A database of its own: every dead row in it is this test's, so the batch counts are exact.
    url = f"sqlite:///{tmp_path / 'devices.db'}"
    migrate(url)
    engine = create_db_engine(url)
    try:
        user_id, _ = make_user(engine)
        kinds = _every_kind(engine, user_id)
        dead = [device_id for state, (device_id, _) in kinds.items() if state != "live"]
        # Rows after the first batch, a live one among them: the keyset walk reads past it, keeps it.
        kept = [kinds["live"][0], _device(engine, user_id, _login(engine, user_id))[0]]
        dead.append(_device(engine, user_id, None)[0])
        sessions = session_factory(engine)
        batches: list[int] = []
        now = logins.utcnow()
        assert housekeeping.delete_dead_devices(sessions, now, 4, batches.append) == len(dead) == 6
        assert batches == [4, 6]  # the second batch is short: done
        with sessions() as session:
            assert set(session.scalars(select(DeviceRegistration.id))) == set(kept)
        assert housekeeping.delete_dead_devices(sessions, now, 4) == 0  # idempotent
    finally:
        engine.dispose()
