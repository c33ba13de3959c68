"""The processes' MongoDB client (``dm.messages.connect``) gives up on a server that stops answering
without closing (a partition, a hung host) instead of holding the thread that asked."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from pymongo.errors import PyMongoError

from dm.messages import SOCKET_TIMEOUT_SECONDS, MessageStore, connect
from tests.fixtures.stalling_proxy import stalling_proxy


def test_a_mongodb_that_stops_answering_fails_the_operation(mongo_url: str) -> None:
    target = urlsplit(mongo_url)
    with stalling_proxy(target.hostname or "127.0.0.1", target.port or 27017) as proxy:
        # directConnection: only the proxy, not the members the server names in its hello.
        query = "&".join(q for q in (target.query, "directConnection=true") if q)
        through = target._replace(netloc=f"127.0.0.1:{proxy.port}", query=query).geturl()
        client = connect(through, selection_ms=1000, socket_timeout_ms=1000)  # short, for the test
        try:
            store = MessageStore(client, "dm_timeouts")
            assert store.room_page(1, 2, 2**62, 10) == []  # the proxy forwards
            proxy.stall()
            with pytest.raises(PyMongoError):
                store.room_page(1, 2, 2**62, 10)
        finally:
            client.close()


def test_operations_wait_a_minute_for_an_answer_by_default() -> None:
    client = connect("mongodb://127.0.0.1:1", selection_ms=100)  # no I/O until first use
    try:
        assert client.options.pool_options.socket_timeout == SOCKET_TIMEOUT_SECONDS
    finally:
        client.close()
