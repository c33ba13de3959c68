"""stored nicknames in their canonical form (NFC, trimmed)

Revision ID: 0007
Revises: 0006

Data only. Every stored nickname whose canonical form (``accounts.nicknames.normalize_nickname``)
differs from it is rewritten to that form, unless another row has or would get the same key: such
collisions, and rows that are not valid nicknames at all, are logged and left alone (sign-in then
reports ``""`` for them and the app asks the user for a new nickname). Each rewrite is logged with the
``rename`` payload that brings the user's direct messages (MongoDB keeps nicknames by value) along
through ``NicknameChangeWorkflow`` (README, "Nickname normalisation").
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from accounts.nicknames import InvalidNickname, normalize_nickname

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("storage.migrations.nicknames")
users = sa.table("users", sa.column("id", sa.BigInteger()), sa.column("nickname", sa.String()))


def _shown(nickname: str) -> str:
    """``nickname`` with every non-ASCII character escaped, so NFD and NFC forms read differently."""
    return nickname.encode("ascii", "backslashreplace").decode()


def upgrade() -> None:
    conn = op.get_bind()
    query = sa.select(users.c.id, users.c.nickname).where(users.c.nickname.is_not(None)).order_by(users.c.id)
    rows = conn.execute(query)
    by_key: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user_id, stored in rows:
        try:
            by_key[normalize_nickname(stored)].append((user_id, stored))
        except InvalidNickname as exc:
            log.warning(
                "user %s: stored nickname is not a valid nickname (%s); left unchanged",
                user_id,
                exc.reason,
                extra={"event": "nickname_invalid", "user_id": user_id, "nickname": _shown(stored)},
            )
    renamed = 0
    for key, holders in by_key.items():  # in order of their first user id
        if len(holders) > 1:
            # The row already stored in canonical form (if any) keeps the key; the others stay as they are.
            ids = [user_id for user_id, _ in holders]
            owner = next((user_id for user_id, stored in holders if stored == key), None)
            log.warning(
                "users %s: nicknames normalise to one key '%s' (held by user %s); left unchanged",
                ", ".join(map(str, ids)),
                _shown(key),
                owner if owner is not None else "nobody",
                extra={"event": "nickname_collision", "user_ids": ids, "owner": owner},
            )
            continue
        [(user_id, stored)] = holders
        if stored == key:
            continue
        conn.execute(sa.update(users).where(users.c.id == user_id).values(nickname=key))
        renamed += 1
        # The NicknameChange payload for the README's `temporal workflow signal-with-start --signal-input`
        # (sent with --codec-endpoint/--codec-auth, so the history keeps it encrypted); quotes escaped
        # so it can be pasted between single quotes.
        change = json.dumps({"user_id": user_id, "old": stored, "new": key}).replace("'", "\\u0027")
        log.warning(
            "user %s: nickname '%s' normalised to '%s'",
            user_id,
            _shown(stored),
            _shown(key),
            extra={"event": "nickname_normalised", "user_id": user_id, "rename": change},
        )
    log.info("nicknames normalised: %d", renamed, extra={"event": "nicknames_normalised", "renamed": renamed})


def downgrade() -> None:
    # The old forms are not kept: the canonical ones are valid under the previous rules too.
    pass
