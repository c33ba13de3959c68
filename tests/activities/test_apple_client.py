"""AppleClient against the Apple emulator: code exchange, revocation, error classes, client secrets."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import httpx
import pytest

from activities.apple import (
    AppleClient,
    AppleKeys,
    AppleRejected,
    AppleUnavailable,
    Deadline,
    generate_apple_private_key,
)
from config import Settings
from emulators.control import AppleEmulator
from tests.fixtures.stalling_proxy import stalling_proxy


@pytest.fixture
def apple(settings: Settings) -> AppleClient:
    return AppleClient(settings, httpx.Client(timeout=10))


def test_exchange_code_returns_the_registered_identity(
    apple: AppleClient, apple_emulator: AppleEmulator
) -> None:
    apple_emulator.register_code("code-1", sub="001234.abc.0815", email="abc@privaterelay.appleid.com")
    tokens = apple.exchange_code("code-1")
    assert (tokens.sub, tokens.email) == ("001234.abc.0815", "abc@privaterelay.appleid.com")
    assert tokens.refresh_token
    with pytest.raises(AppleRejected):  # single use
        apple.exchange_code("code-1")


def test_unknown_code_is_rejected(apple: AppleClient, apple_emulator: AppleEmulator) -> None:
    with pytest.raises(AppleRejected):
        apple.exchange_code("never-issued")


def test_server_errors_are_transient(apple: AppleClient, apple_emulator: AppleEmulator) -> None:
    apple_emulator.register_code("code-2", sub="s2")
    apple_emulator.fail("token", 503, times=1)
    with pytest.raises(AppleUnavailable):
        apple.exchange_code("code-2")
    assert apple.exchange_code("code-2").sub == "s2"


def test_network_errors_are_transient(settings: Settings) -> None:
    client = AppleClient(settings.model_copy(update={"apple_base_url": "http://127.0.0.1:1"}), httpx.Client())
    with pytest.raises(AppleUnavailable):
        client.revoke("anything")


def test_revoke_is_recorded(apple: AppleClient, apple_emulator: AppleEmulator) -> None:
    apple.revoke("r.token-1")
    assert [r["token"] for r in apple_emulator.revocations()] == ["r.token-1"]
    apple_emulator.fail("revoke", 400)
    with pytest.raises(AppleRejected):
        apple.revoke("r.token-2")


def test_a_secret_signed_with_another_key_is_refused(
    settings: Settings, apple_emulator: AppleEmulator
) -> None:
    apple_emulator.register_code("code-3", sub="s3")
    forged = AppleClient(
        settings.model_copy(update={"apple_private_key": generate_apple_private_key()}), httpx.Client()
    )
    with pytest.raises(AppleRejected, match="400"):
        forged.exchange_code("code-3")


def test_an_id_token_not_signed_by_apple_is_rejected(
    apple: AppleClient, apple_emulator: AppleEmulator
) -> None:
    apple_emulator.register_code("code-4", sub="s4", email="s4@icloud.com", forged=True)
    with pytest.raises(AppleRejected, match="id_token rejected: Signature verification failed"):
        apple.exchange_code("code-4")


def test_apples_keys_are_fetched_once_and_shared(settings: Settings, apple_emulator: AppleEmulator) -> None:
    fetched: list[str] = []
    http = httpx.Client(
        timeout=10,
        event_hooks={"request": [lambda r: fetched.append(r.url.path) if r.method == "GET" else None]},
    )
    keys = AppleKeys(settings, http)
    for i in range(3):
        apple_emulator.register_code(f"code-5-{i}", sub=f"s5-{i}")
        assert AppleClient(settings, http, keys).exchange_code(f"code-5-{i}").sub == f"s5-{i}"
    assert fetched == ["/auth/keys"]


def test_a_deadline_bounds_all_the_calls_of_an_exchange_however_long_the_clients_timeouts(
    settings: Settings, apple_emulator: AppleEmulator
) -> None:
    """Apple hung (connections accepted, nothing answered): with a deadline the exchange gives up by
    then, a transient failure, although each of the client's timeouts alone is far longer."""
    apple_emulator.register_code("code-hung", sub="s-hung")
    url = urlparse(settings.apple_base_url)
    assert url.hostname is not None and url.port is not None
    with stalling_proxy(url.hostname, url.port) as proxy:
        proxy.stall()
        hung = settings.model_copy(update={"apple_base_url": f"http://127.0.0.1:{proxy.port}"})
        client = AppleClient(hung, httpx.Client(timeout=30), deadline=Deadline(1.5))
        started = time.monotonic()
        with pytest.raises(AppleUnavailable):
            client.exchange_code("code-hung")
        assert time.monotonic() - started < 3
    with pytest.raises(AppleUnavailable, match="out of time"):  # nothing left: no request at all
        AppleClient(settings, httpx.Client(timeout=30), deadline=Deadline(0)).exchange_code("code-hung")
    assert AppleClient(settings, httpx.Client(timeout=30), deadline=Deadline(5)).exchange_code("code-hung")
