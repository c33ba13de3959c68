"""A user who asked to resign is gone for everyone from that request on (README "Resign"), though their
row waits for ``ResignWorkflow``: a frame to them is refused as to nobody, on the lean path (the
replica's hints still name them) as on the lookup, and their conversations leave the other user's
room list and history. The resign is held (``resigning:held:<id>``, the runbook's state), so no
workflow deletes the row meanwhile."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import update

from activities.deps import ActivityDeps
from storage.models import User
from tests.api.dm_helpers import dm_socket
from tests.dm.helpers import party, room_page
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")

FRAME_WAIT = 60  # seconds an expected frame may take on a loaded machine (a condition, not a timing)


def _member(http: httpx.Client) -> IOSClient:
    return IOSClient(http).sign_up("r" + uuid.uuid4().hex[:7])


def _hold_resign(deps: ActivityDeps, app: IOSClient) -> None:
    """``app``'s account as after its resign request, with the workflow held (its row stays)."""
    user_id = party(deps, app.nickname).id
    with deps.engine.begin() as conn:
        conn.execute(update(User).where(User.id == user_id).values(account_email=f"resigning:held:{user_id}"))


def _frame(sender: IOSClient, receiver: IOSClient, text: str) -> str:
    return json.dumps({"sender": sender.nickname, "receiver": receiver.nickname, "text": text})


def test_a_resigning_user_takes_no_message_and_leaves_the_room_list_and_history(
    http: httpx.Client, api_url: str, activity_deps: ActivityDeps
) -> None:
    me, leaving, staying = _member(http), _member(http), _member(http)
    with dm_socket(me, api_url, 10) as ws, dm_socket(leaving, api_url, 10) as inbox:
        ws.send(_frame(me, leaving, "before"))  # the replica now holds hints of both
        assert json.loads(inbox.recv(timeout=FRAME_WAIT))["text"] == "before"
        ws.send(_frame(me, staying, "to staying"))
        _hold_resign(activity_deps, leaving)
        ws.send(_frame(me, leaving, "after the request"))
        assert "there is no user" in json.loads(ws.recv(timeout=FRAME_WAIT))["error"]
    assert [m["text"] for m in room_page(activity_deps, me.nickname, leaving.nickname)] == ["before"]

    rooms = me.post_multipart("/dm-service/findMultipleDirectMessage", [("sender", me.nickname)])
    assert rooms.status_code == 200, rooms.text
    assert [m["receiver"] for m in rooms.json()] == [staying.nickname]
    parts = [("sender", me.nickname), ("receiver", leaving.nickname), ("timeBoundary", str(10**16 * 9))]
    history = me.post_multipart("/dm-service/findDirectMessage", parts)
    assert history.status_code == 200, history.text
    assert history.json() == []
