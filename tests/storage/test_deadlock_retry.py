"""``retry_deadlocks``: a transaction InnoDB picked as a deadlock victim runs again; other errors do not."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from storage.db import retry_deadlocks


class _DbApiError(Exception):
    pass


def _error(code: int) -> OperationalError:
    return OperationalError("INSERT ...", {}, _DbApiError(code, "message"))


def test_a_deadlock_victim_runs_again_until_it_commits() -> None:
    calls: list[int] = []

    def transaction() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _error(1213)
        return "committed"

    assert retry_deadlocks(transaction) == "committed"
    assert len(calls) == 3


def test_the_last_deadlock_propagates_after_the_attempts() -> None:
    calls: list[int] = []

    def transaction() -> None:
        calls.append(1)
        raise _error(1213)

    with pytest.raises(OperationalError):
        retry_deadlocks(transaction, attempts=3)
    assert len(calls) == 3


def test_other_database_errors_are_not_retried() -> None:
    calls: list[int] = []

    def transaction() -> None:
        calls.append(1)
        raise _error(2003)  # cannot connect

    with pytest.raises(OperationalError):
        retry_deadlocks(transaction)
    assert calls == [1]
