"""The relational store round-trips on both engines we support: MySQL (production) and SQLite (embedded)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, event, insert, make_url, select
from sqlalchemy.exc import IntegrityError, OperationalError

from storage.db import IO_TIMEOUT_SECONDS, check_database, create_db_engine, migrate, session_factory
from storage.models import Feed, FeedCategory, User
from tests.fixtures.stalling_proxy import stalling_proxy


def _user(email: str, nickname: str | None) -> User:
    now = datetime(2024, 1, 20, 8, 0, 0)
    return User(
        account_email=email,
        provider="kakao",
        provider_id="1",
        nickname=nickname,
        introduction="",
        created_at=now,
        updated_at=now,
    )


def test_round_trip_with_unicode_and_children(engine: Engine) -> None:
    check_database(engine)
    sessions = session_factory(engine)
    nickname = "소소🩷" + engine.dialect.name[:3]
    with sessions.begin() as s:
        user = _user(f"rt-{engine.dialect.name}@example.com+kakao", nickname)
        s.add(user)
        s.flush()
        feed = Feed(
            user_id=user.id,
            day=20240120,
            date=2024012017042712,
            weather="sunny",
            happiness=5,
            text="행복한 하루 🩷",
            is_public=True,
            created_at=user.created_at,
            updated_at=user.created_at,
        )
        s.add(feed)
        s.flush()
        s.add_all(
            [FeedCategory(feed_id=feed.id, position=i, category=c) for i, c in enumerate(["coffee", "love"])]
        )
    with sessions() as s:
        got = s.scalars(select(Feed).join(User).where(User.nickname == nickname)).one()
        assert (got.date, got.text, got.is_public) == (2024012017042712, "행복한 하루 🩷", True)
        cats = s.scalars(
            select(FeedCategory.category).where(FeedCategory.feed_id == got.id).order_by("position")
        )
        assert list(cats) == ["coffee", "love"]


def test_one_feed_per_user_per_day_is_enforced(engine: Engine) -> None:
    sessions = session_factory(engine)
    with sessions.begin() as s:
        user = _user(f"day-{engine.dialect.name}@example.com+google", None)
        s.add(user)
        s.flush()
        user_id, now = user.id, user.created_at
    row = {
        "weather": "cloudy",
        "happiness": 3,
        "text": None,
        "is_public": False,
        "created_at": now,
        "updated_at": now,
    }
    with sessions.begin() as s:
        s.add(Feed(user_id=user_id, day=20240121, date=2024012109000000, **row))
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(Feed(user_id=user_id, day=20240121, date=2024012123595999, **row))


def test_nickname_uniqueness_is_case_sensitive_on_mysql(mysql_url: str) -> None:
    sessions = session_factory(create_db_engine(mysql_url))
    with sessions.begin() as s:
        s.add_all([_user("case1@example.com+kakao", "Happy"), _user("case2@example.com+kakao", "happy")])
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(_user("case3@example.com+kakao", "Happy"))


def test_migrate_is_idempotent(sqlite_url: str) -> None:
    migrate(sqlite_url)
    migrate(sqlite_url)


def test_a_failed_commit_hands_the_next_checkout_no_open_transaction(mysql_url: str) -> None:
    """The pool skips its ROLLBACK on return; a commit that fails before reaching the server must not
    leave its writes in the connection for the next checkout's commit to commit."""
    engine = create_db_engine(mysql_url, pool_size=1)
    nickname = f"leak{datetime.now().microsecond}"

    def fail(_conn: object) -> None:
        raise RuntimeError("the commit did not happen")

    try:
        event.listen(engine, "commit", fail)
        with pytest.raises(RuntimeError, match="commit did not happen"), engine.begin() as conn:
            conn.execute(insert(User).values(**_columns(nickname)))
        event.remove(engine, "commit", fail)
        with engine.begin() as conn:  # the pool's one connection, committing
            conn.execute(select(1))
        with engine.connect() as conn:
            assert conn.execute(select(User.id).where(User.nickname == nickname)).first() is None
    finally:
        engine.dispose()


def _columns(nickname: str) -> dict[str, object]:
    user = _user(f"{nickname}@example.com+kakao", nickname)
    return {c.key: getattr(user, c.key) for c in User.__table__.columns if c.key != "id"}


def test_mysql_connections_give_up_on_a_server_that_stops_answering(mysql_url: str) -> None:
    """A statement to a server that went silent (a partition, a hung host: nothing is closed) fails
    with ``OperationalError`` after the read timeout instead of holding its thread for good; the API
    answers that with 503."""
    target = make_url(mysql_url)
    with stalling_proxy(target.host or "127.0.0.1", target.port or 3306) as proxy:
        # Short timeouts for the test; the default one is checked below.
        through = target.set(host="127.0.0.1", port=proxy.port).update_query_dict(
            {"read_timeout": "1", "connect_timeout": "1"}
        )
        engine = create_db_engine(through.render_as_string(hide_password=False), pool_size=1)
        try:
            check_database(engine)  # the proxy forwards
            proxy.stall()
            with pytest.raises(OperationalError, match=r"timed out|Lost connection|Can.t connect"):
                check_database(engine)
        finally:
            engine.dispose()


def test_mysql_connections_wait_a_minute_for_an_answer_by_default(mysql_url: str) -> None:
    engine = create_db_engine(mysql_url, pool_size=1)
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            assert (driver._read_timeout, driver._write_timeout) == (IO_TIMEOUT_SECONDS, IO_TIMEOUT_SECONDS)
    finally:
        engine.dispose()
