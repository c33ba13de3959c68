"""Bodies that are not multipart (JSON objects, url-encoded forms) are small or refused: the client
sends a few fields or none, so nothing lets an anonymous caller make the API parse megabytes into
memory, and no body makes it answer 500 or drop the connection."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from api.params import MAX_FIELDS, MAX_PLAIN_BODY
from tests.api.feed_helpers import member

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PATHS = ["/auth-service/getAuthorizeCode", "/auth-service/signIn", "/feed-service/updatePublicStatus"]


def test_a_json_body_over_the_limit_is_413_before_it_is_read(http: httpx.Client) -> None:
    """Under the large-upload threshold (a larger one is the upload gate's: 413 or the token's 403) and
    over ``MAX_PLAIN_BODY``: refused by its declared length, on a route with a token too."""
    me = member(http)
    body = b'{"email": [' + b"0," * (100 * 1024) + b"0]}"  # 200 KiB of one JSON array
    for path in PATHS:
        headers = {**JSON, "Authorization": me.access, "email": me.email}
        resp = http.post(path, content=body, headers=headers)
        assert resp.status_code == 413, (path, resp.text)
        assert f"over {MAX_PLAIN_BODY} bytes" in resp.json()["message"]


def test_a_chunked_json_or_form_body_is_cut_off_past_the_limit(http: httpx.Client) -> None:
    def chunks(piece: bytes) -> Iterator[bytes]:
        for _ in range(2 * MAX_PLAIN_BODY // len(piece) + 1):
            yield piece

    for headers, piece in ((JSON, b" " * 4096), (FORM, b"a=b&" * 1024)):
        resp = http.post("/auth-service/getAuthorizeCode", content=chunks(piece), headers=headers)
        assert resp.status_code == 413, resp.text


def test_json_nested_deeper_than_the_parser_is_a_400_and_the_connection_lives_on(http: httpx.Client) -> None:
    depth = MAX_PLAIN_BODY // 2 - 20
    body = '{"email": ' + "[" * depth + "]" * depth + "}"
    for path in PATHS:
        resp = http.post(path, content=body, headers=JSON)
        assert resp.status_code == 400, (path, resp.text)
        assert resp.json()["message"] == "malformed JSON body: nested too deeply"
    assert http.get("/healthz").status_code == 200  # same keep-alive connection: still open


def test_a_json_body_with_more_values_than_a_form_may_have_is_a_400(http: httpx.Client) -> None:
    body = '{"codeChallenge": [' + ",".join(['"x"'] * (MAX_FIELDS + 1)) + "]}"
    resp = http.post("/auth-service/getAuthorizeCode", content=body, headers=JSON)
    assert resp.status_code == 400, resp.text
    assert resp.json()["message"] == f"JSON body has more than {MAX_FIELDS} values"
