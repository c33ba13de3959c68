"""The two line formats of ``config.logging``: JSON for machines, text for a terminal."""

from __future__ import annotations

import io
import json
import logging
import re

from pymongo.errors import BulkWriteError, DuplicateKeyError
from sqlalchemy.exc import IntegrityError

from config.logging import format_exception, log_handler, safe_error_text
from tests.fixtures.errors import duplicate_key_error


def _emit(fmt: str, exc: bool = False) -> str:
    stream = io.StringIO()
    logger = logging.getLogger(f"tests.config.logging.{fmt}.{exc}")
    logger.propagate, logger.level = False, logging.INFO
    handler = log_handler(fmt, stream)
    logger.addHandler(handler)
    try:
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed %s", "once", extra={"request_id": "r-1"})
        else:
            logger.info("GET %s %d", "/healthz", 200, extra={"request_id": "r-1", "user_id": 7})
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_lines_carry_the_message_and_the_fields() -> None:
    (line,) = _emit("json").splitlines()
    parsed = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed.pop("ts"))
    assert parsed == {
        "level": "INFO",
        "logger": "tests.config.logging.json.False",
        "msg": "GET /healthz 200",
        "request_id": "r-1",
        "user_id": 7,
    }


def test_text_lines_put_the_fields_after_the_message_and_the_traceback_below() -> None:
    (line,) = _emit("text").splitlines()
    assert line.endswith(" INFO tests.config.logging.text.False: GET /healthz 200 request_id=r-1 user_id=7")
    first, *rest = _emit("text", exc=True).splitlines()
    assert first.endswith(": failed once request_id=r-1")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_a_json_exception_stays_on_one_line() -> None:
    (line,) = _emit("json", exc=True).splitlines()
    parsed = json.loads(line)
    assert parsed["msg"] == "failed once" and parsed["exc"].endswith("ValueError: boom")


SECRET = "someone@example.com+kakao"


def _database_error() -> Exception:
    """A duplicate key's error, raised again with a cause."""
    try:
        raise RuntimeError("the account was not stored") from duplicate_key_error(SECRET)
    except RuntimeError as wrapped:
        return wrapped


def test_a_database_error_is_logged_with_its_type_and_code_never_its_text() -> None:
    error = _database_error()
    assert isinstance(error.__cause__, IntegrityError)
    assert safe_error_text(error.__cause__) == "sqlite3 IntegrityError 1062 (message withheld)"
    assert safe_error_text(error) == "the account was not stored"  # not a driver's: as it is
    stream = io.StringIO()
    logger = logging.getLogger("tests.config.logging.database")
    logger.propagate, logger.level = False, logging.INFO
    for fmt in ("json", "text"):
        handler = log_handler(fmt, stream)
        logger.addHandler(handler)
        try:
            raise error
        except RuntimeError:
            logger.exception("store failed")
        finally:
            logger.removeHandler(handler)
    json_line, *text_lines = stream.getvalue().splitlines()
    shown = json.loads(json_line)["exc"]
    assert SECRET not in stream.getvalue()
    # Both exceptions of the chain with their frames, in Python's order and wording.
    assert shown.startswith("Traceback (most recent call last):\n")
    assert "sqlalchemy.exc.IntegrityError: sqlite3 IntegrityError 1062 (message withheld)\n\n" in shown
    assert "The above exception was the direct cause of the following exception:" in shown
    assert shown.endswith("RuntimeError: the account was not stored")
    assert text_lines[-1] == "RuntimeError: the account was not stored"


def test_pymongo_errors_keep_their_code_only() -> None:
    failed = BulkWriteError({"writeErrors": [{"code": 11000, "op": {"text": SECRET}}]})
    assert SECRET in str(failed.details)
    assert safe_error_text(failed) == "BulkWriteError 65 (message withheld)"
    assert safe_error_text(DuplicateKeyError(f"E11000 dup key: {{ text: '{SECRET}' }}", 11000)) == (
        "DuplicateKeyError 11000 (message withheld)"
    )


def test_uvicorns_websocket_handshake_lines_keep_the_path_without_the_query() -> None:
    """uvicorn writes these on ``uvicorn.error`` (its ``websockets_sansio_impl``, whatever the access
    log says); the DM socket's query names the user. Records as uvicorn makes them, through the
    production handler."""
    stream = io.StringIO()
    handler = log_handler("json", stream)
    query = "/dm-service/connect-dm?nickname=%EC%86%8C%ED%96%89"
    for msg, args in (
        ('%s - "WebSocket %s" [accepted]', ("10.0.0.7:53211", query)),
        ('%s - "WebSocket %s" 403', ("10.0.0.7:53212", query)),
        ('%s - "WebSocket %s" %d', ("10.0.0.7:53213", query, 500)),
        ("Started server process [%d]", (42,)),
    ):
        handler.handle(logging.LogRecord("uvicorn.error", logging.INFO, __file__, 0, msg, args, None))
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == [
        '10.0.0.7:53211 - "WebSocket /dm-service/connect-dm" [accepted]',
        '10.0.0.7:53212 - "WebSocket /dm-service/connect-dm" 403',
        '10.0.0.7:53213 - "WebSocket /dm-service/connect-dm" 500',
        "Started server process [42]",
    ]


def test_a_database_error_inside_an_exception_group_is_written_without_its_text() -> None:
    group = ExceptionGroup("the batch failed", [ValueError("plain"), duplicate_key_error(SECRET)])
    try:
        raise group
    except ExceptionGroup as raised:
        shown = format_exception(raised)
    assert SECRET not in shown
    assert "ExceptionGroup: the batch failed (2 sub-exceptions)" in shown
    assert "| ValueError: plain" in shown
    assert "| sqlalchemy.exc.IntegrityError: sqlite3 IntegrityError 1062 (message withheld)" in shown
