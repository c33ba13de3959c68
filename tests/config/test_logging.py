"""The two line formats of ``config.logging``: JSON for machines, text for a terminal."""

from __future__ import annotations

import io
import json
import logging
import re

from config.logging import log_handler


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
