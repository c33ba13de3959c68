"""Schema-driven fuzzing (schemathesis) of the live API over real HTTP: every operation of
``/openapi.json``, valid and invalid inputs, signed in; no answer may be a 5xx, and every answer must
have a status and a body its operation declares.

Operations that end a login or an account (signOut, resign, reIssueToken's rotation and reuse
detection) run in their own test against a throwaway user, after the others, so the fuzz user's
tokens stay valid for the rest and no other test's user is touched. Examples are bounded per operation
(``FUZZ_EXAMPLES``) and generation has no deadline: the run's length is the count of requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.fixtures.ios_client import IOSClient

FUZZ_EXAMPLES = 12
DESTRUCTIVE = "^(signOut|resign|reIssueToken.*)$"
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
CONFIG = {
    "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES},
    "phases": {"stateful": {"enabled": False}},
}


@dataclass
class FuzzUser:
    """A signed-up user with an entry, whose headers fill the spec's security schemes."""

    app: IOSClient

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": self.app.access,
            "Email": self.app.email,
            "Authorization-refresh": self.app.refresh,
        }


def _sign_up(api_url: str) -> Iterator[FuzzUser]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        app = IOSClient(http).sign_up(f"z{uuid.uuid4().hex[:8]}")
        assert app.save_feed(2024012017042712).status_code == 200
        yield FuzzUser(app)


@pytest.fixture(scope="module")
def fuzz_user(api_url: str) -> Iterator[FuzzUser]:
    """The user every non-destructive operation is fuzzed as (nobody else's data)."""
    yield from _sign_up(api_url)


@pytest.fixture(scope="module")
def throwaway_user(api_url: str) -> Iterator[FuzzUser]:
    """The user the destructive operations may sign out, rotate and resign."""
    yield from _sign_up(api_url)


def _schema(api_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(
        f"{api_url}/openapi.json", config=SchemathesisConfig.from_dict(CONFIG)
    )


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> schemathesis.BaseSchema:
    return _schema(api_url).exclude(operation_id_regex=DESTRUCTIVE)


@pytest.fixture(scope="module")
def destructive_schema(api_url: str) -> schemathesis.BaseSchema:
    return _schema(api_url).include(operation_id_regex=DESTRUCTIVE)


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
schema = schemathesis.pytest.from_fixture("api_schema")
destructive = schemathesis.pytest.from_fixture("destructive_schema")


@schema.parametrize()
@FUZZ
def test_no_operation_answers_5xx_or_outside_its_schema(case: schemathesis.Case, fuzz_user: FuzzUser) -> None:
    case.call_and_validate(headers=fuzz_user.headers, checks=CHECKS)


@destructive.parametrize()
@FUZZ
def test_nor_do_the_operations_that_end_a_login(case: schemathesis.Case, throwaway_user: FuzzUser) -> None:
    case.call_and_validate(headers=throwaway_user.headers, checks=CHECKS)
