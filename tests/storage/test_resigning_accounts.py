"""``users.resigning_accounts`` pages through the accounts still resigning, by id, leaving out active ones
and those an operator holds (what housekeeping starts resigns again for), on MySQL and SQLite."""

from __future__ import annotations

from sqlalchemy import Engine, update

from storage import users
from storage.models import User
from tests.storage.helpers import add_user


def test_resigning_accounts_pages_by_id_past_active_and_held_ones(engine: Engine) -> None:
    ids = [add_user(engine, None) for _ in range(4)]
    emails = {
        ids[0]: f"{users.RESIGNING_PREFIX}{ids[0]}",
        ids[1]: f"{users.RESIGN_HELD_PREFIX}{ids[1]}",
        ids[3]: f"{users.RESIGNING_PREFIX}{ids[3]}",
    }
    with engine.begin() as conn:
        for user_id, email in emails.items():
            conn.execute(update(User).where(User.id == user_id).values(account_email=email))
    listed, after_id = [], ids[0] - 1
    with engine.connect() as conn:
        while page := users.resigning_accounts(conn, after_id, 1):
            listed += page
            after_id = page[-1][0]
    assert [entry for entry in listed if entry[0] in ids] == [(ids[0], "kakao"), (ids[3], "kakao")]
