"""Revision 0013 on a database whose users already hold look-alike nicknames: the earliest of each group
holds the look-alike key, the others keep their nicknames without it, each group is logged by user ids
alone; the database then refuses a second holder of a key; a re-run and a downgrade work (MySQL, SQLite)."""

from __future__ import annotations

import logging
import random
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select, update
from sqlalchemy.exc import IntegrityError

from accounts.nicknames import nickname_skeletons
from storage.db import alembic_config, create_db_engine
from storage.models import User
from tests.fixtures.databases import scratch_mysql_database
from tests.storage.helpers import add_user, revision_before

REVISION = "0013"
LOGGER = "storage.migrations.nickname_skeletons"


@pytest.fixture(params=["mysql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each dialect at the revision before 0013, dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'skeletons.db'}"
        command.upgrade(alembic_config(url), revision_before(url, REVISION))
        yield url
        return
    with scratch_mysql_database("sosohappy_skel", revision=None) as scratch:
        command.upgrade(alembic_config(scratch), revision_before(scratch, REVISION))
        yield scratch


def _skeletons(engine: Engine) -> dict[int, tuple[str | None, str | None]]:
    """``user id -> (folded key, cased key)``."""
    query = select(User.id, User.nickname_folded_skeleton, User.nickname_cased_skeleton)
    with engine.connect() as conn:
        return {user_id: (folded, cased) for user_id, folded, cased in conn.execute(query)}


def _nicknames(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        return {user_id: nickname for user_id, nickname in conn.execute(select(User.id, User.nickname))}


def _letters(count: int) -> str:
    """Random lower-case letters that are their own skeleton (no i, l, m, o and no digits)."""
    return "".join(random.choice("abcdefghjknpqrstuvwxyz") for _ in range(count))


def _seed(engine: Engine) -> tuple[dict[str, int], dict[str, str]]:
    """Users in id order (earliest first); ``(ids by role, nicknames by role)``."""
    base, cyr, ivan, hana, tail = (_letters(n) for n in (9, 9, 8, 8, 5))
    names = {
        "alice": base,
        "Alice": base.upper(),  # later look-alikes of the first (both keys): left without them
        "ａｌｉｃｅ": "".join(chr(ord(c) + 0xFEE0) for c in base),
        "cyrillic first": ("a" + cyr).replace("a", "\u0430"),  # the earliest holds it, whatever its script
        "latin later": "a" + cyr,
        "Ivan": f"I{ivan}",  # folded like ivan, cased like lvan: the earliest holds both keys
        "ivan": f"i{ivan}",  # shares the folded key only: keeps a cased key of its own
        "lvan": f"l{ivan}",  # shares the cased key only: keeps a folded key of its own
        "HANA": f"H{hana.upper()}",
        "НANA": f"\u041d{hana.upper()}",  # Cyrillic Н: shares the cased key only
        "korean": f"행복{tail}",
        "korean near": f"행볶{tail}",
        "alone": "s" + _letters(8),
    }
    ids = {role: add_user(engine, nickname) for role, nickname in names.items()}
    ids |= {
        "placeholder": add_user(engine, str(uuid.uuid4())),
        "no profile": add_user(engine, None),
        "zero-width": add_user(engine, "zw\u200bsp" + tail),  # rows 0007 left alone
        "decomposed": add_user(engine, unicodedata.normalize("NFD", f"마{tail}")),
    }
    return ids, names


def _upgrade(url: str, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        command.upgrade(alembic_config(url), "head")
    return [record for record in caplog.records if record.name == LOGGER]


def test_the_earliest_of_each_look_alike_group_holds_the_key(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(url)
    try:
        ids, names = _seed(engine)
        before = _nicknames(engine)

        records = _upgrade(url, caplog)

        assert _nicknames(engine) == before  # no nickname changes: every one keeps working
        keys = _skeletons(engine)

        def own(role: str) -> tuple[str, str]:
            return tuple(nickname_skeletons(names[role]))  # type: ignore[return-value]

        assert keys[ids["alice"]] == own("alice") == (names["alice"], names["alice"])
        assert keys[ids["cyrillic first"]] == own("latin later") == (names["latin later"],) * 2
        assert keys[ids["Ivan"]] == own("Ivan") == (names["ivan"], names["lvan"])
        assert keys[ids["ivan"]] == (None, names["ivan"])
        assert keys[ids["lvan"]] == (names["lvan"], None)
        assert keys[ids["HANA"]] == own("HANA")
        assert keys[ids["НANA"]] == (own("НANA")[0], None) and own("НANA")[1] == own("HANA")[1]
        for role in ("korean", "korean near"):
            assert keys[ids[role]] == (names[role], names[role])
        assert keys[ids["alone"]] == own("alone")
        for role in (
            "Alice",
            "ａｌｉｃｅ",
            "latin later",
            "placeholder",
            "no profile",
            "zero-width",
            "decomposed",
        ):
            assert keys[ids[role]] == (None, None), role

        groups = [r for r in records if getattr(r, "event", None) == "nickname_look_alike"]
        alices = [ids["alice"], ids["Alice"], ids["ａｌｉｃｅ"]]
        cyrillic = [ids["cyrillic first"], ids["latin later"]]
        assert sorted((r.key, r.user_ids, r.owner) for r in groups) == sorted(  # type: ignore[attr-defined]
            [
                ("folded", alices, ids["alice"]),
                ("cased", alices, ids["alice"]),
                ("folded", cyrillic, ids["cyrillic first"]),
                ("cased", cyrillic, ids["cyrillic first"]),
                ("folded", [ids["Ivan"], ids["ivan"]], ids["Ivan"]),
                ("cased", [ids["Ivan"], ids["lvan"]], ids["Ivan"]),
                ("cased", [ids["HANA"], ids["НANA"]], ids["HANA"]),
            ]
        )
        # Unkeyed: the placeholder and the two rows 0007 left alone (a user without a profile has no
        # nickname to key at all).
        [summary] = [r for r in records if getattr(r, "event", None) == "nickname_skeletons_filled"]
        filled = sum(key is not None for pair in keys.values() for key in pair)
        assert (summary.filled, summary.look_alike_groups, summary.unkeyed) == (filled, 7, 3)  # type: ignore[attr-defined]
        assert filled == 9 + 8
        # User ids only: no nickname, nor its key, reaches the log.
        text = " ".join(r.getMessage() for r in records)
        assert not any(
            fragment in text
            for nickname in before.values()
            if nickname
            for fragment in (nickname, *nickname_skeletons(nickname))
        )

        # The database itself refuses a second holder of either key.
        for column, key in (
            (User.nickname_folded_skeleton, own("alice")[0]),
            (User.nickname_cased_skeleton, own("alice")[1]),
        ):
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(update(User).where(User.id == ids["Alice"]).values({column: key}))

        # A run that died after its DDL is run again: the keys given are kept, nothing moves.
        command.stamp(alembic_config(url), revision_before(url, REVISION))
        again = _upgrade(url, caplog)
        assert _skeletons(engine) == keys
        [summary] = [r for r in again if getattr(r, "event", None) == "nickname_skeletons_filled"]
        assert summary.filled == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_the_revision_goes_down_and_up_again(url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_db_engine(url)
    try:
        ids, _ = _seed(engine)
        _upgrade(url, caplog)
        keys = _skeletons(engine)
        command.downgrade(alembic_config(url), revision_before(url, REVISION))
        columns = {c["name"] for c in inspect(engine).get_columns("users")}
        assert "nickname" in columns
        assert not {"nickname_folded_skeleton", "nickname_cased_skeleton"} & columns
        _upgrade(url, caplog)
        assert _skeletons(engine) == keys  # the same holders: the choice is deterministic
        assert None not in keys[ids["alice"]]
        assert keys[ids["Alice"]] == (None, None)
    finally:
        engine.dispose()
