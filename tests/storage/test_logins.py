"""Refresh rotation with its grace window, the revocation records, and authorize codes, on MySQL and
SQLite."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine, func, insert, select

from storage import housekeeping, logins
from storage.db import session_factory
from storage.logins import Rotation
from storage.models import AuthorizeCode, LoginSession, Revocation
from tests.storage.helpers import make_user

TTL = 14 * 24 * 3600
GRACE = 60.0


def _login(engine: Engine) -> str:
    user_id, _ = make_user(engine)
    with session_factory(engine).begin() as session:
        return logins.open_session(session, user_id, TTL).id


def _rotate(engine: Engine, session_id: str, generation: int, **kw: object) -> logins.RotationResult:
    with session_factory(engine).begin() as session:
        return logins.rotate_session(session, session_id, generation, TTL, GRACE, **kw)  # type: ignore[arg-type]


def _row(engine: Engine, session_id: str) -> LoginSession:
    with session_factory(engine)() as session:
        row = session.get(LoginSession, session_id)
        assert row is not None
        return row


def _records(engine: Engine, subject: str) -> list[Revocation]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(Revocation).where(Revocation.subject == subject)))


def test_the_rotated_generation_gets_the_current_one_within_the_window_only(engine: Engine) -> None:
    sid = _login(engine)
    t0 = logins.utcnow().replace(microsecond=0)
    assert _rotate(engine, sid, 0, now=t0) == logins.RotationResult(Rotation.ROTATED, 1)
    # The injected clock stands at the edge of the window, then just past it.
    at_edge = _rotate(engine, sid, 0, now=t0 + timedelta(seconds=GRACE))
    assert at_edge == logins.RotationResult(Rotation.CONCURRENT, 1)
    assert _row(engine, sid).generation == 1 and _row(engine, sid).revoked_at is None
    late = _rotate(engine, sid, 0, now=t0 + timedelta(seconds=GRACE + 1))
    assert late.rotation is Rotation.REUSED and late.revocation is not None
    assert _row(engine, sid).revoked_at is not None
    assert [(r.kind, r.subject) for r in _records(engine, sid)] == [("session", sid)]
    # Revoked: even the current generation is refused now.
    assert _rotate(engine, sid, 1, now=t0 + timedelta(seconds=GRACE + 2)).rotation is Rotation.INVALID


def test_an_older_generation_is_reuse_at_once(engine: Engine) -> None:
    sid = _login(engine)
    t0 = logins.utcnow().replace(microsecond=0)
    assert _rotate(engine, sid, 0, now=t0).rotation is Rotation.ROTATED
    t1 = t0 + timedelta(seconds=GRACE + 1)
    assert _rotate(engine, sid, 1, now=t1).rotation is Rotation.ROTATED
    assert _rotate(engine, sid, 0, now=t1).rotation is Rotation.REUSED
    assert _row(engine, sid).revoked_at is not None and len(_records(engine, sid)) == 1


def test_the_client_re_issuing_one_403_after_another_never_drifts_into_reuse(engine: Engine) -> None:
    """The iOS client reads the refresh token from its Keychain for each 403's re-issue: a burst whose
    403s come back one after another presents the token of generation 0 (still in flight), then the
    generation 1 the first re-issue stored, then 0 again. The login rotates once per window, so none of
    them is reuse; once the window has passed, the current generation rotates again."""
    sid = _login(engine)
    t0 = logins.utcnow().replace(microsecond=0)
    assert _rotate(engine, sid, 0, now=t0) == logins.RotationResult(Rotation.ROTATED, 1)
    for seconds, generation in ((1, 1), (2, 0), (3, 1), (GRACE, 0), (GRACE, 1)):
        result = _rotate(engine, sid, generation, now=t0 + timedelta(seconds=seconds))
        assert result == logins.RotationResult(Rotation.CONCURRENT, 1), (seconds, generation)
    row = _row(engine, sid)
    assert row.generation == 1 and row.revoked_at is None and _records(engine, sid) == []
    later = t0 + timedelta(seconds=GRACE + 1)
    assert _rotate(engine, sid, 1, now=later) == logins.RotationResult(Rotation.ROTATED, 2)
    # Generation 1 is now the one just rotated (within the new window); 0 is two behind: reuse.
    assert _rotate(engine, sid, 1, now=later) == logins.RotationResult(Rotation.CONCURRENT, 2)
    assert _rotate(engine, sid, 0, now=later).rotation is Rotation.REUSED


def test_a_generation_never_issued_is_reuse(engine: Engine) -> None:
    sid = _login(engine)
    assert _rotate(engine, sid, 5).rotation is Rotation.REUSED


def test_parallel_presentations_of_one_token_rotate_once(engine: Engine) -> None:
    sid = _login(engine)
    n = 6
    barrier = threading.Barrier(n)

    def present(_: int) -> logins.RotationResult:
        barrier.wait(timeout=30)
        return _rotate(engine, sid, 0)

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(present, range(n)))
    assert sorted(r.rotation.value for r in results) == ["concurrent"] * (n - 1) + ["rotated"]
    assert {r.generation for r in results} == {1}
    row = _row(engine, sid)
    assert row.generation == 1 and row.revoked_at is None and _records(engine, sid) == []


def test_revoking_every_login_records_each_and_deleted_accounts_are_recorded(engine: Engine) -> None:
    user_id, _ = make_user(engine)
    with session_factory(engine).begin() as session:
        ids = {logins.open_session(session, user_id, TTL).id for _ in range(2)}
    since = logins.utcnow() - timedelta(seconds=1)
    with session_factory(engine).begin() as session:
        revoked = logins.revoke_user_sessions(session, user_id)
        logins.record_account_deleted(session, user_id)
    assert {r.subject for r in revoked} == ids
    with session_factory(engine)() as session:
        found = {(r.kind, r.subject) for r in logins.revocations_since(session, since)}
    assert {("session", i) for i in ids} | {("user", str(user_id))} <= found
    # Revoking again records nothing new (nothing was still active).
    with session_factory(engine).begin() as session:
        assert logins.revoke_user_sessions(session, user_id) == []
        assert logins.revoke_session(session, next(iter(ids))) is None


def test_an_authorize_code_is_created_without_deleting_the_expired_ones(engine: Engine) -> None:
    """getAuthorizeCode's transaction writes its own code and nothing else: the expired codes a flood
    from many addresses leaves are housekeeping's to delete, a bounded batch a transaction, not one
    request's delete as large as the flood, holding all their locks."""
    tag, flood = uuid.uuid4().hex, 1200
    long_expired = logins.utcnow() - timedelta(hours=2)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        rows = [
            {"code_hash": f"{tag}{i:032d}", "code_challenge": "c", "expires_at": long_expired}
            for i in range(flood)
        ]
        session.execute(insert(AuthorizeCode), rows)
    flooded = select(func.count()).where(AuthorizeCode.code_hash.startswith(tag))

    with sessions.begin() as session:
        code = logins.create_authorize_code(session, "challenge", 300)
    with sessions() as session:
        assert session.scalar(flooded) == flood
        assert session.get(AuthorizeCode, logins.authorize_code_hash(code)) is not None

    totals: list[int] = []
    now = logins.utcnow()
    housekeeping.delete_spent_authorize_codes(sessions, now, now, batch=500, each_batch=totals.append)
    assert max(b - a for a, b in zip([0, *totals], totals, strict=False)) <= 500
    with sessions() as session:
        assert session.scalar(flooded) == 0
        assert session.get(AuthorizeCode, logins.authorize_code_hash(code)) is not None
