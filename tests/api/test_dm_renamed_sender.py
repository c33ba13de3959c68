"""A socket whose user renamed (on this device or another) while it was open: its frames may name
the sender by the new nickname, as the app then does, and are still taken by the old one it connected
with; either way the message is the user's (by id), shown with the nickname they hold now."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.api.dm_helpers import dm_socket
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")
FRAME_WAIT = 60  # seconds an expected frame may take on a loaded machine (a condition, not a timing)


def _member(http: httpx.Client) -> IOSClient:
    return IOSClient(http).sign_up("s" + uuid.uuid4().hex[:7])


def test_a_socket_opened_before_a_rename_sends_under_the_new_nickname(
    http: httpx.Client, api_url: str
) -> None:
    me, you = _member(http), _member(http)
    with dm_socket(me, api_url, 10) as ws, dm_socket(you, api_url, 10) as inbox:
        old, new = me.nickname, "t" + me.nickname[1:]
        resp = me.post_multipart("/auth-service/setProfile", [("email", me.email), ("nickname", new)])
        assert resp.status_code == 200, resp.text
        for sender, text in ((new, "as renamed"), (new, "again"), (old, "as connected")):
            ws.send(json.dumps({"sender": sender, "receiver": you.nickname, "text": text}))
            got = json.loads(inbox.recv(timeout=FRAME_WAIT))
            assert (got["sender"], got["text"]) == (new, text)
        ws.send(json.dumps({"sender": you.nickname, "receiver": you.nickname, "text": "not mine"}))
        assert "sender must be your own nickname" in json.loads(ws.recv(timeout=FRAME_WAIT))["error"]
