"""A like from someone the author blocked puts nothing on the author's lock screen, through the API, the
worker and the FCM emulator; the like itself is answered as any other (blocking is one-directional and the
blocked user is not told, BACKEND_SPEC A9), and a like from anyone else is still pushed."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.deps import ActivityDeps
from emulators.control import FcmEmulator
from storage.models import Feed
from temporal.ids import like_push_workflow_id
from tests.api.feed_helpers import day_feed, kst, like, member, unique_year, user_id
from tests.workflows.push_helpers import push_result

pytestmark = pytest.mark.usefixtures("worker")


async def test_a_like_from_someone_the_author_blocked_is_kept_but_not_pushed(
    http: httpx.Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, temporal_client: Client
) -> None:
    author, blocked, fan = member(http), member(http), member(http)
    date = kst(unique_year(), 6, 1)
    assert author.save_feed(date).status_code == 200
    block = author.post_multipart(
        "/auth-service/block", [("srcNickname", author.nickname), ("dstNickname", blocked.nickname)]
    )
    assert block.status_code == 200 and block.json() == {"success": True}

    assert like(blocked, author.nickname, date).json() == {"like": True}  # answered as ever
    assert like(fan, author.nickname, date).json() == {"like": True}
    assert set(day_feed(author, author.nickname, date).json()["likeNicknameList"]) == {
        blocked.nickname,
        fan.nickname,
    }

    with activity_deps.sessions() as session:
        author_id = user_id(activity_deps, author.nickname)
        feed_id = session.scalars(select(Feed.id).where(Feed.user_id == author_id)).one()
    # The unblocked fan's like was pushed; the blocked user's like started no push at all.
    await push_result(temporal_client, like_push_workflow_id(feed_id, user_id(activity_deps, fan.nickname)))
    with pytest.raises(RPCError) as missing:
        await temporal_client.get_workflow_handle(
            like_push_workflow_id(feed_id, user_id(activity_deps, blocked.nickname))
        ).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    bodies = [m["message"]["notification"]["body"] for m in fcm_emulator.messages(author.device_token)]
    assert bodies == [f"{fan.nickname}님이 {author.nickname}님의 행복을 응원합니다\U0001fa77"]
