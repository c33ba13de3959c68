"""``python -m dm.migrate_messages``: give the messages stored by nickname only ("legacy") their users' ids.

Run by the pre-start step (``python -m storage.migrate``, the migration Job) after the relational
migrations, and by ``make run`` once MongoDB is up; also by the last legacy rename's activity. Idempotent:
only documents still legacy are read and written, so re-runs (and runs side by side) change nothing more.

Each side of a legacy document that a pre-upgrade rename has not pinned to its user already
(``MessageStore.claim_legacy``) is resolved against the users as they are now: the user holding exactly
that nickname, else the one holding its canonical form (stored before nicknames were normalised, see
revision 0007). A document whose two names resolve gets ``senderId``,
``receiverId`` and ``roomKey`` and is visible again, and its room's row in the room list
(``dm.rooms``, revision 0004) is brought up to the latest converted message, so the room is listed and
its history pages as any other. One whose name resolves to nobody (a user gone, or
renamed without the rename reaching the messages) is marked ``unresolved`` with the sides it could not
place: it is shown to no one (nobody can be shown to own it), resign deletes it by the id it has, and it
is counted in the report (find them with ``{"unresolved": {"$exists": true}}``).

While a rename numbered before the upgrade is still pending (``storage.nickname_changes``), a legacy
document may still carry a nickname its user gave up, which someone else may hold now; the conversion
then converts nothing (the report says ``deferred``) and runs again when that rename's activity has
pinned the renamed user's documents. (Legacy data cannot say more: a message stored under a nickname by
a user who took it over before the upgrade is attributed to whoever held it last, as before.)
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pymongo import MongoClient
from sqlalchemy import Connection, Engine

from accounts.nicknames import nickname_key
from config import Settings
from config.logging import configure_logging
from config.processes import Process, load_settings
from dm import rooms
from dm.messages import LegacyMessage, MessageStore, StoredMessage
from storage import nickname_changes, users
from storage.db import create_db_engine

log = logging.getLogger("dm.migrate_messages")

#: What this entry point checks its settings for (``config.processes``): the migration's stores.
PROCESS = Process.MIGRATE

BATCH = 1000


@dataclass
class ConversionReport:
    """What one conversion run did."""

    #: Legacy documents given both ids by this run.
    converted: int = 0
    #: Legacy documents this run could not place (marked ``unresolved``).
    unresolved: int = 0
    #: ``unresolved`` documents in the collection after the run (from this run and earlier ones).
    unresolved_total: int = 0
    #: Users with a pending pre-upgrade rename; when above 0 nothing was converted.
    deferred_for_renames: int = 0


def resolve_nicknames(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """``stored nickname -> user id`` for the names that name a user now: exactly, else by canonical form."""
    wanted = set(names)
    exact = {name: uid for uid, name in users.current_nicknames(conn, nicknames=wanted).items() if name}
    keys = {name: nickname_key(name) for name in wanted - exact.keys()}
    canonical = {key for key in keys.values() if key is not None}
    by_key = {name: uid for uid, name in users.current_nicknames(conn, nicknames=canonical).items() if name}
    return exact | {name: by_key[key] for name, key in keys.items() if key is not None and key in by_key}


def latest_per_room(resolved: Iterable[tuple[LegacyMessage, int | None, int | None]]) -> list[StoredMessage]:
    """The latest message (by date, then by storage order) of each room among the documents whose two
    sides resolved: what the room list's row of that pair must hold at least."""
    latest: dict[tuple[int, int], StoredMessage] = {}
    for message, sender_id, receiver_id in resolved:
        if sender_id is None or receiver_id is None:
            continue
        pair = (min(sender_id, receiver_id), max(sender_id, receiver_id))
        current = latest.get(pair)
        if current is None or (message.date, str(message.id)) >= (current.date, current.id):
            latest[pair] = StoredMessage(str(message.id), sender_id, receiver_id, message.date, message.text)
    return list(latest.values())


def convert_legacy_messages(
    engine: Engine,
    messages: MessageStore,
    batch: int = BATCH,
    after_batch: Callable[[], object] | None = None,
) -> ConversionReport:
    """Convert every legacy message (see the module docstring); the report says what was done.
    ``after_batch`` is called after each batch is written (an activity's heartbeat)."""
    report = ConversionReport()
    batches = messages.legacy_batches(batch)
    first = next(batches, None)
    if first is not None:
        with engine.connect() as conn:
            report.deferred_for_renames = nickname_changes.pending_count(conn)
        if report.deferred_for_renames:
            report.unresolved_total = messages.count_unresolved()
            return report
        for found in itertools.chain([first], batches):
            with engine.connect() as conn:
                ids = resolve_nicknames(conn, {m.sender for m in found} | {m.receiver for m in found})
            resolved = [
                (
                    m,
                    m.sender_id if m.sender_id is not None else ids.get(m.sender),
                    m.receiver_id if m.receiver_id is not None else ids.get(m.receiver),
                )
                for m in found
            ]
            # Room rows first: a run stopped between the two steps leaves a row whose message is still
            # legacy (shown once the next run converts it), never a converted message without its room.
            with engine.begin() as conn:
                for latest in latest_per_room(resolved):
                    rooms.record_message(conn, latest.sender_id, latest.receiver_id, latest)
            converted, unresolved = messages.attach_ids((m.id, s, r) for m, s, r in resolved)
            report.converted += converted
            report.unresolved += unresolved
            if after_batch is not None:
                after_batch()
    report.unresolved_total = messages.count_unresolved()
    return report


def log_report(report: ConversionReport) -> None:
    """One JSON line (``event: messages_converted``) with the counts; a warning when something was left."""
    extra = {"event": "messages_converted", **report.__dict__}
    if report.deferred_for_renames:
        log.warning(
            "legacy messages not converted: %d users have a rename still pending; converted once it is applied",
            report.deferred_for_renames,
            extra=extra,
        )
    elif report.unresolved_total:
        log.warning(
            "legacy messages: %d converted, %d unresolved now (%d in all): shown to nobody, "
            'find them with {"unresolved": {"$exists": true}}',
            report.converted,
            report.unresolved,
            report.unresolved_total,
            extra=extra,
        )
    else:
        log.info("legacy messages: %d converted", report.converted, extra=extra)


def convert_from_settings(settings: Settings, timeout: float) -> ConversionReport:
    """Run the conversion against the configured stores, waiting up to ``timeout`` s for MongoDB, and
    log its report."""
    engine = create_db_engine(settings.sqlalchemy_url)
    mongo: MongoClient = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=max(int(timeout * 1000), 1))
    try:
        messages = MessageStore(mongo, settings.mongo_database)
        messages.ensure_indexes()
        report = convert_legacy_messages(engine, messages)
    finally:
        mongo.close()
        engine.dispose()
    log_report(report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Convert the legacy messages of the configured stores; the process exit code."""
    settings = load_settings(PROCESS)
    parser = argparse.ArgumentParser(
        prog="python -m dm.migrate_messages",
        description="Give the direct messages stored by nickname only their users' ids (idempotent).",
    )
    parser.add_argument(
        "--timeout", type=float, default=settings.database_wait_seconds, help="seconds to wait for MongoDB"
    )
    args = parser.parse_args(argv)
    configure_logging(settings)
    try:
        convert_from_settings(settings, args.timeout)
    except Exception as exc:
        log.exception(
            "converting legacy messages failed: %s", type(exc).__name__, extra={"event": "messages_failed"}
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
