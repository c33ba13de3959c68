"""Schema-driven fuzzing (schemathesis) of the live API over real HTTP: every operation of
``/openapi.json``, valid and invalid inputs, signed in; no answer may be a 5xx, and every answer must
have a status and a body its operation declares.

Operations that end a login or an account (signOut, resign, reIssueToken's rotation and reuse
detection) run in their own test against a throwaway user, after the others, so the fuzz user's
tokens stay valid for the rest and no other test's user is touched. Examples are bounded per operation
(``FUZZ_EXAMPLES``) and generation has no deadline: the run's length is the count of requests.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from api.main import create_app
from config import Settings
from tests.fixtures.ios_client import IOSClient

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
DESTRUCTIVE = re.compile("^(signOut|resign|reIssueToken.*)$")
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
#: The spec does not depend on a running server: the operations are known at collection.
SPEC = create_app(Settings(env="test")).openapi()
OPERATIONS: list[str] = [op["operationId"] for item in SPEC["paths"].values() for op in item.values()]
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@dataclass
class FuzzUser:
    """A signed-up user with an entry, whose headers fill the spec's security schemes."""

    app: IOSClient

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization``, ``Email`` and ``Authorization-refresh`` as the client sends them."""
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
    """The user every operation that keeps the login is fuzzed as (nobody else's data)."""
    yield from _sign_up(api_url)


@pytest.fixture
def throwaway_user(api_url: str) -> Iterator[FuzzUser]:
    """A user of its own for each operation that ends a login (sign-out, rotation, resign)."""
    yield from _sign_up(api_url)


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> Any:
    """The live API's spec as schemathesis reads it, aimed at the live server."""
    config = SchemathesisConfig.from_dict({"base-url": api_url})
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json", config=config)


#: Fields that must name the caller (or may: the other party) for a request to get past ownership.
OWNER_FIELDS = {"nickname", "srcNickname", "dstNickname", "sender", "receiver"}
VALID_DATE = 2024012017042712


def _as_owner(case: Any, user: FuzzUser) -> None:
    """Make a valid case the caller's own (its nicknames, e-mail and a real date), so that half of
    the valid cases get past the ownership and date checks to the stores."""
    for container in (case.query, case.body):
        if not isinstance(container, dict):
            continue
        for name in container.keys() & OWNER_FIELDS:
            container[name] = user.app.nickname
        if "date" in container:
            container["date"] = VALID_DATE
        if "email" in container and case.operation.path != "/auth-service/signIn":
            container["email"] = user.app.email


def _destructive(operation_id: str) -> bool:
    return DESTRUCTIVE.match(operation_id) is not None


def _no_entry(response: Any) -> bool:
    headers = {name.lower() for name in response.headers}
    return response.status_code == 200 and "content-type" not in headers and not response.content


# The operations that end a login last (each with a throwaway user of its own).
@pytest.mark.parametrize(
    "operation_id",
    [o for o in OPERATIONS if not _destructive(o)] + [o for o in OPERATIONS if _destructive(o)],
)
def test_no_operation_answers_5xx_or_outside_its_schema(
    operation_id: str, api_schema: Any, api_url: str, request: pytest.FixtureRequest
) -> None:
    user: FuzzUser = request.getfixturevalue("throwaway_user" if _destructive(operation_id) else "fuzz_user")
    operation = api_schema.find_operation_by_id(operation_id)
    cases = st.one_of(
        *api_schema.get_strategies_from_examples(operation),
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases, as_owner=st.booleans())
    @FUZZ
    def check(case: Any, as_owner: bool) -> None:
        if as_owner and case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
            _as_owner(case, user)
        response = case.call(base_url=api_url, headers=user.headers)
        if operation_id == "findDayFeed" and _no_entry(response):
            # The original's "no entry" answer, declared in the 200's description: an empty body
            # without Content-Type, which OpenAPI cannot put beside the JSON entry of the same 200.
            assert response.content == b""
            return
        case.validate_response(response, checks=CHECKS)

    check()
