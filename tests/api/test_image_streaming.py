"""Images leave the server chunk by chunk: the image GET and findFeedImage start answering before the
last stored chunk is read (a gate on the chunk reader counts the reads; nothing here is timed), a
download that has begun sends the whole image though its entry is deleted or its images replaced
meanwhile (one deleted before the first chunk is read is a clean 404), and the GET honours a single ``Range`` (206, 416; malformed or several ranges: the whole image) and
``If-None-Match`` (304)."""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import Connection

from api.main import create_app
from config import Settings
from storage import feed_images
from storage.feed_images import IMAGE_CHUNK_BYTES
from tests.api.feed_helpers import PNG, day_feed, kst, member, unique_year
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient, multipart
from tests.fixtures.waiting import wait_until


class GatedChunks:
    """Stands in for ``storage.feed_images.read_chunks`` in the API under test (served in this process):
    records every chunk read and holds each read from chunk ``hold_from`` on until ``release`` is set
    (chunk 0 is read after the statement began: its snapshot is taken)."""

    def __init__(self, hold_from: int = 1) -> None:
        self.real = feed_images.read_chunks
        self.hold_from = hold_from
        self.started: list[int] = []
        self.done: list[int] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, conn: Connection, image_id: int, first: int, last: int) -> Iterator[bytes]:
        chunks = self.real(conn, image_id, first, last)
        for seq in range(first, last + 1):
            with self._lock:
                self.started.append(seq)
            if seq >= self.hold_from and not self.release.wait(120):
                raise RuntimeError("the test never released the chunk reader")
            data = next(chunks, None)
            if data is None:
                return
            with self._lock:
                self.done.append(seq)
            yield data


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedChunks]:
    gated = GatedChunks()
    monkeypatch.setattr(feed_images, "read_chunks", gated)
    yield gated
    gated.release.set()  # never leave a server thread waiting


def _image(megabytes: float) -> bytes:
    return PNG + random.randbytes(int(megabytes * IMAGE_CHUNK_BYTES))


def _saved(http: httpx.Client, data: bytes) -> tuple[IOSClient, int, int]:
    """A member with a public entry holding ``data``, the entry's date and the image's id."""
    me, date = member(http), kst(unique_year(), 3, 3)
    assert me.save_feed(date, images=[data]).status_code == 200
    [image_id] = day_feed(me, me.nickname, date).json()["imageIdList"]
    return me, date, image_id


def test_the_image_get_answers_before_its_last_chunk_is_read(http: httpx.Client, gate: GatedChunks) -> None:
    data = _image(5.5)  # six chunks
    _, _, image_id = _saved(http, data)
    with http.stream("GET", f"/feed-service/image/{image_id}") as resp:
        assert resp.status_code == 200 and resp.headers["content-length"] == str(len(data))
        pieces = resp.iter_bytes()
        first = next(pieces)
        wait_until(lambda: 1 in gate.started, "the second chunk's read began", deadline_seconds=60)
        # The client holds the first bytes while only the first of six chunks has been read.
        assert gate.done == [0] and first and data.startswith(first)
        gate.release.set()
        rest = b"".join(pieces)
    assert first + rest == data
    assert gate.done == [0, 1, 2, 3, 4, 5]


def test_find_feed_image_streams_its_base64_json(http: httpx.Client, gate: GatedChunks) -> None:
    data = _image(3.2)  # four chunks, whose sizes are not multiples of 3 once the PNG header is in
    me, _, image_id = _saved(http, data)
    body, content_type = multipart([("imageId", str(image_id))])
    headers = {"Content-Type": content_type, "Authorization": me.access, "email": me.email}
    with http.stream("POST", "/feed-service/findFeedImage", content=body, headers=headers) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        pieces = resp.iter_bytes()
        first = next(pieces)
        wait_until(lambda: 1 in gate.started, "the second chunk's read began", deadline_seconds=60)
        assert gate.done == [0] and first.startswith(b'{"image":"')
        gate.release.set()
        whole = first + b"".join(pieces)
    assert json.loads(whole) == {"image": base64.b64encode(data).decode()}
    assert int(resp.headers["content-length"]) == len(whole)
    assert gate.done == [0, 1, 2, 3]


def _delete(me: IOSClient, date: int) -> None:
    fields = [("nickname", me.nickname), ("date", str(date))]
    assert me.post_multipart("/feed-service/deleteFeed", fields).status_code == 200


def _replace(me: IOSClient, date: int) -> None:
    assert me.save_feed(date, images=[PNG]).status_code == 200


@pytest.mark.parametrize("change", [_delete, _replace])
def test_a_download_under_way_sends_the_whole_image_though_its_entry_changes(
    http: httpx.Client, gate: GatedChunks, change: Callable[[IOSClient, int], None]
) -> None:
    data = _image(3.5)  # four chunks
    me, date, image_id = _saved(http, data)
    url = f"/feed-service/image/{image_id}"
    with http.stream("GET", url) as resp:
        assert resp.status_code == 200 and resp.headers["content-length"] == str(len(data))
        pieces = resp.iter_bytes()
        first = next(pieces)
        wait_until(lambda: 1 in gate.started, "the second chunk's read began", deadline_seconds=60)
        change(me, date)  # committed while three of the four chunks are still unread
        assert http.get(url).status_code == 404
        gate.release.set()
        rest = b"".join(pieces)  # the old code cut the body short here (RemoteProtocolError)
    assert first + rest == data
    assert gate.done == [0, 1, 2, 3]


def test_find_feed_image_under_way_sends_the_whole_image_though_its_entry_is_deleted(
    http: httpx.Client, gate: GatedChunks
) -> None:
    data = _image(2.2)
    me, date, image_id = _saved(http, data)
    body, content_type = multipart([("imageId", str(image_id))])
    headers = {"Content-Type": content_type, "Authorization": me.access, "email": me.email}
    with http.stream("POST", "/feed-service/findFeedImage", content=body, headers=headers) as resp:
        assert resp.status_code == 200
        pieces = resp.iter_bytes()
        first = next(pieces)
        wait_until(lambda: 1 in gate.started, "the second chunk's read began", deadline_seconds=60)
        _delete(me, date)
        gate.release.set()
        whole = first + b"".join(pieces)
    assert json.loads(whole) == {"image": base64.b64encode(data).decode()}


def test_an_image_deleted_before_its_first_chunk_is_read_is_a_clean_404(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = GatedChunks(hold_from=0)  # the statement waits: its snapshot comes after the delete
    monkeypatch.setattr(feed_images, "read_chunks", gate)
    me, date, image_id = _saved(http, _image(1.5))
    with ThreadPoolExecutor(1) as pool:
        try:
            answer = pool.submit(http.get, f"/feed-service/image/{image_id}")
            wait_until(lambda: 0 in gate.started, "the first chunk's read began", deadline_seconds=60)
            _delete(me, date)
        finally:
            gate.release.set()
        resp = answer.result(timeout=60)
    assert resp.status_code == 404 and resp.json()["message"] == f"no image {image_id}"


def test_a_download_past_the_spool_budget_is_refused_before_its_body(
    settings: Settings, http: httpx.Client, gate: GatedChunks
) -> None:
    app = create_app(settings.model_copy(update={"download_spool_bytes": 32 * IMAGE_CHUNK_BYTES}))
    data = _image(18)  # 19 chunks: two downloads of it would spool 38 MiB
    _, _, image_id = _saved(http, data)
    url = f"/feed-service/image/{image_id}"
    with serve_in_thread(app, http="h11") as base, httpx.Client(base_url=base, timeout=60) as replica:
        budget = app.state.resources.image_spools
        with replica.stream("GET", url) as held:
            assert held.status_code == 200 and budget.in_use == 19 * IMAGE_CHUNK_BYTES
            refused = httpx.get(base + url, timeout=60)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "as many images as it can hold" in refused.json()["message"]
            gate.release.set()
            assert held.read() == data
        wait_until(lambda: budget.in_use == 0, "the spool was given back", deadline_seconds=60)
        assert replica.get(url).content == data


def test_a_client_that_leaves_mid_download_gives_its_spool_back(
    settings: Settings, http: httpx.Client, gate: GatedChunks
) -> None:
    app = create_app(settings)
    data = _image(3.5)
    _, _, image_id = _saved(http, data)
    with serve_in_thread(app, http="h11") as base, httpx.Client(base_url=base, timeout=60) as replica:
        budget = app.state.resources.image_spools
        with replica.stream("GET", f"/feed-service/image/{image_id}") as held:
            assert next(held.iter_bytes()) and budget.in_use == 4 * IMAGE_CHUNK_BYTES
        # The client hung up with three chunks unread: the spool goes once the response has seen
        # that and the copier, let go, has stopped (at the next chunk, or the last).
        gate.release.set()
        wait_until(lambda: budget.in_use == 0, "the spool was given back", deadline_seconds=60)


@pytest.fixture(scope="module")
def stored(api_url: str) -> Iterator[tuple[bytes, str, str]]:
    """A public image of three chunks: its bytes, URL and ETag."""
    data = _image(2.5)
    with httpx.Client(base_url=api_url, timeout=30) as http:
        _, _, image_id = _saved(http, data)
        url = f"/feed-service/image/{image_id}"
        etag = http.get(url).headers["etag"]
        yield data, url, etag


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=1048570-1048590", 1048570, 1048590),  # across the first chunk boundary
        ("bytes=100-", 100, None),  # to the end
        ("bytes=-700", -700, None),  # the last 700 bytes
        ("bytes=2000000-99999999999999999999999", 2000000, None),  # clipped to the end
        ("BYTES=5-5", 5, 5),  # the unit is case-insensitive
    ],
)
def test_a_single_range_is_answered_with_206_and_exactly_those_bytes(
    http: httpx.Client, stored: tuple[bytes, str, str], header: str, start: int, end: int | None
) -> None:
    data, url, etag = stored
    resp = http.get(url, headers={"Range": header})
    expected = data[start : None if end is None else end + 1]
    first = start if start >= 0 else len(data) + start
    assert resp.status_code == 206 and resp.content == expected
    assert resp.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert resp.headers["content-length"] == str(len(expected))
    assert resp.headers["etag"] == etag and resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["content-type"] == "image/png"


def test_a_suffix_longer_than_the_image_is_the_whole_image(
    http: httpx.Client, stored: tuple[bytes, str, str]
) -> None:
    data, url, _ = stored
    resp = http.get(url, headers={"Range": f"bytes=-{len(data) * 2}"})
    assert resp.status_code == 206 and resp.content == data
    assert resp.headers["content-range"] == f"bytes 0-{len(data) - 1}/{len(data)}"


@pytest.mark.parametrize(
    "header", ["bytes={size}-", "bytes={size}-{size}", "bytes=-0", "bytes=99999999999999999999-"]
)
def test_a_range_past_the_end_is_416_with_the_size(
    http: httpx.Client, stored: tuple[bytes, str, str], header: str
) -> None:
    data, url, _ = stored
    resp = http.get(url, headers={"Range": header.format(size=len(data))})
    assert resp.status_code == 416 and resp.headers["content-range"] == f"bytes */{len(data)}"
    assert resp.json()["status"] == 416 and "Range" in resp.json()["message"]


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "bytes=9-2",
        "items=0-1",
        "bytes=",
        "bytes=-",
        "0-10",
        "bytes=0-1,5-6",
        "bytes=1.5-2",
        "bytes = 0-1",
    ],
)
def test_a_malformed_or_multiple_range_is_ignored_and_the_whole_image_sent(
    http: httpx.Client, stored: tuple[bytes, str, str], header: str
) -> None:
    data, url, _ = stored
    resp = http.get(url, headers={"Range": header})
    assert resp.status_code == 200 and resp.content == data
    assert "content-range" not in resp.headers


def test_if_range_serves_the_range_only_for_the_current_etag(
    http: httpx.Client, stored: tuple[bytes, str, str]
) -> None:
    data, url, etag = stored
    same = http.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
    assert same.status_code == 206 and same.content == data[:4]
    for other in ('"another"', f"W/{etag}", "Tue, 01 Jan 2030 00:00:00 GMT"):
        whole = http.get(url, headers={"Range": "bytes=0-3", "If-Range": other})
        assert whole.status_code == 200 and whole.content == data, other


def test_if_none_match_is_304_before_any_range(http: httpx.Client, stored: tuple[bytes, str, str]) -> None:
    data, url, etag = stored
    for tags in (etag, f'"x", {etag}', "*", f"W/{etag}"):
        resp = http.get(url, headers={"If-None-Match": tags, "Range": "bytes=0-3"})
        assert resp.status_code == 304 and resp.content == b"", tags
        assert resp.headers["etag"] == etag
        assert resp.headers["cache-control"] == "private, max-age=31536000, immutable"
    fresh = http.get(url, headers={"If-None-Match": '"stale"'})
    assert fresh.status_code == 200 and fresh.content == data
