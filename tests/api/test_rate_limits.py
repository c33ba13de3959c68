"""getAuthorizeCode and signIn are rate-limited per client IP (429 with Retry-After), counted on a fake
clock: nothing here sleeps or depends on how fast the machine is (issue 12 point 3)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from api.main import create_app
from api.rate_limits import RateLimiter, client_key
from config import Settings
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.clock import FakeClock
from tests.fixtures.ios_client import IOSClient, code_challenge, code_verifier


def test_a_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=6, burst=3, clock=clock)  # one request every 10 s
    assert [limiter.acquire("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("a") == pytest.approx(10)
    clock.now += 4
    assert limiter.acquire("a") == pytest.approx(6)  # a refused request takes nothing
    clock.now += 6
    assert limiter.acquire("a") == 0
    assert limiter.acquire("a") == pytest.approx(10)
    assert limiter.acquire("b") == 0  # every key has its own bucket
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_the_least_recently_used_buckets_are_forgotten_first() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=1, burst=1, clock=clock, max_keys=2)
    assert limiter.acquire("old") == 0 and limiter.acquire("mid") == 0
    assert limiter.acquire("mid") > 0
    assert limiter.acquire("new") == 0  # "old" is dropped, "mid" (just used) is kept
    assert limiter.acquire("mid") > 0
    assert limiter.acquire("old") == 0


@pytest.fixture(scope="module")
def limited() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def limited_url(settings: Settings, api_url: str, limited: FakeClock) -> Iterator[str]:
    """An API replica of its own with a small limit (the session's API must not limit its tests):
    a burst of 3, then one request every 10 s, per client IP and endpoint."""
    small = settings.model_copy(update={"sign_in_rate_limit_per_minute": 6, "sign_in_rate_limit_burst": 3})
    with serve_in_thread(
        create_app(small, clock=limited), http="h11", proxy_headers=True, forwarded_allow_ips="127.0.0.1"
    ) as url:
        yield url


def _get_code(http: httpx.Client, forwarded_for: str) -> httpx.Response:
    verifier = code_verifier()
    return http.post(
        "/auth-service/getAuthorizeCode",
        data={"codeChallenge": code_challenge(verifier)},
        headers={"X-Forwarded-For": forwarded_for},
    )


def test_get_authorize_code_is_limited_per_client_ip(limited_url: str, limited: FakeClock) -> None:
    http = httpx.Client(base_url=limited_url, timeout=30)
    ip = "203.0.113.10"
    assert [_get_code(http, ip).status_code for _ in range(3)] == [200, 200, 200]
    refused = _get_code(http, ip)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"
    assert refused.json() == {
        "status": 429,
        "error": "Too Many Requests",
        "message": "too many sign-in requests from this address; retry in 10 s",
        "path": "/auth-service/getAuthorizeCode",
    }
    assert _get_code(http, "203.0.113.11").status_code == 200  # another client is not held back
    limited.now += 10
    assert _get_code(http, ip).status_code == 200
    assert _get_code(http, ip).status_code == 429


def test_sign_in_has_its_own_limit_and_refuses_before_reading_the_body(
    limited_url: str, limited: FakeClock
) -> None:
    http = httpx.Client(base_url=limited_url, timeout=30)
    ip = "203.0.113.20"
    app = IOSClient(http)
    for _ in range(3):
        verifier = code_verifier()
        code = app.authorize_code(verifier)
        resp = http.post(
            "/auth-service/signIn",
            data={
                "email": f"l{uuid.uuid4().hex[:10]}@gmail.com",
                "provider": "kakao",
                "providerId": "1",
                "codeVerifier": verifier,
                "authorizeCode": code,
                "authorizationCode": "",
                "deviceToken": "t",
            },
            headers={"X-Forwarded-For": ip},
        )
        assert resp.status_code == 200, resp.text
    refused = http.post("/auth-service/signIn", content=b"not even a form", headers={"X-Forwarded-For": ip})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert _get_code(http, ip).status_code == 200  # getAuthorizeCode counts apart


def test_an_ipv6_network_is_one_bucket_and_an_ipv4_address_is_one() -> None:
    # One subscriber's /64: any of its addresses fills the same bucket.
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("203.0.113.7") == "203.0.113.7" != client_key("203.0.113.8")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"  # an IPv4 client on a dual-stack socket
    assert client_key("testclient") == "testclient"  # not an address: as given
