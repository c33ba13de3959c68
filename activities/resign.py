"""Resign steps: each removes one kind of trace of a user and is safe to run again (idempotent)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import delete, func, or_, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.apple import AppleClient, AppleRejected, AppleUnavailable
from activities.deps import ActivityDeps
from storage import devices, logins, users
from storage.models import Block, Feed, FeedLike, User

FEED_BATCH = 500


def _counted_first(count: Callable[[], int]) -> int:
    """What a deleting step reports: ``count()`` (what there is to delete) on its first attempt,
    recorded at once as the attempt's heartbeat before anything is deleted; a later attempt (its
    worker was killed mid-step, after deleting some) reports the count recorded, not what is left."""
    details = activity.info().heartbeat_details
    if details:
        return int(details[0])
    counted = count()
    activity.heartbeat(counted)
    return counted


class ResignActivities:
    """Activities of ``ResignWorkflow`` over the worker's MySQL, MongoDB and Apple client."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps
        self._http = httpx.Client(timeout=10)

    @activity.defn(name="resign_revoke_logins")
    def revoke_logins(self, user_id: int) -> int:
        """Revoke every login of the user; returns how many were still active."""
        with self._deps.sessions.begin() as session:
            return len(logins.revoke_user_sessions(session, user_id))

    @activity.defn(name="resign_revoke_apple")
    def revoke_apple(self, refresh_token: str) -> str:
        """Revoke the Apple refresh token: ``revoked``, or ``refused`` when Apple says no (permanent).
        (Resigns started with the token in their input; ``revoke_apple_of_user`` now.)"""
        return self._revoke(refresh_token)

    @activity.defn(name="resign_revoke_apple_of_user")
    def revoke_apple_of_user(self, user_id: int) -> str:
        """Revoke the Apple refresh token stored on the account row (still there: the row is deleted by
        the last step): ``revoked``, ``refused`` when Apple says no (permanent), or ``not-apple`` when
        the account holds no token. Revoking twice is harmless, so a retry simply revokes again."""
        with self._deps.sessions() as session:
            user = session.get(User, user_id)
            token = user.apple_refresh_token if user is not None else None
        if not token or token == "-":
            return "not-apple"
        return self._revoke(token)

    def _revoke(self, refresh_token: str) -> str:
        try:
            AppleClient(self._deps.settings, self._http).revoke(refresh_token)
        except AppleRejected:
            return "refused"
        except AppleUnavailable as exc:
            raise ApplicationError(str(exc), type="AppleUnavailable") from None
        return "revoked"

    @activity.defn(name="resign_delete_feeds")
    def delete_feeds(self, user_id: int) -> int:
        """Delete the user's feeds with their categories, images and likes, in batches; returns how many
        the user had when the step began (``_counted_first``), however many attempts deleted them."""
        with self._deps.sessions() as session:
            total = _counted_first(
                lambda: session.scalar(select(func.count()).where(Feed.user_id == user_id)) or 0
            )
        while True:
            with self._deps.sessions.begin() as session:
                ids = list(session.scalars(select(Feed.id).where(Feed.user_id == user_id).limit(FEED_BATCH)))
                if not ids:
                    return total
                session.execute(delete(Feed).where(Feed.id.in_(ids)))
            activity.heartbeat(total)

    @activity.defn(name="resign_delete_likes_and_blocks")
    def delete_likes_and_blocks(self, user_id: int) -> None:
        """Delete the likes the user gave and blocks in both directions."""
        with self._deps.sessions.begin() as session:
            session.execute(delete(FeedLike).where(FeedLike.user_id == user_id))
            session.execute(
                delete(Block).where(or_(Block.blocker_id == user_id, Block.blocked_id == user_id))
            )

    @activity.defn(name="resign_delete_user_messages")
    def delete_user_messages(self, user_id: int) -> int:
        """Delete every direct message the user sent or received, by id (and the legacy ones still
        stored under the user's nickname, while the account row still says which that is), a batch at a
        time; returns how many there were when the step began (``_counted_first``)."""
        with self._deps.sessions() as session:
            nickname = users.nickname_of(session, user_id)
        return self._delete_messages(user_id, nickname)

    @activity.defn(name="resign_delete_messages")
    def delete_messages(self, nickname: str) -> int:
        """For resigns started before messages were keyed by id (their histories schedule this with the
        nickname): the nickname's owner is still the resigning user (the account row goes last and its
        logins are revoked, so it cannot be renamed), so delete that user's messages by id, and the
        legacy ones under the nickname."""
        with self._deps.sessions() as session:
            user_id = users.id_of(session, nickname)
        return self._delete_messages(user_id, nickname)

    def _delete_messages(self, user_id: int | None, nickname: str | None) -> int:
        """Delete in batches (``dm.messages.DELETE_BATCH``), heartbeating the recorded count after each."""
        messages = self._deps.messages
        total = _counted_first(lambda: messages.count_of(user_id, nickname))
        if user_id is not None:
            messages.delete_user(user_id, after_batch=lambda: activity.heartbeat(total))
        if nickname:
            messages.delete_legacy(nickname, after_batch=lambda: activity.heartbeat(total))
        return total

    @activity.defn(name="resign_remove_devices")
    def remove_devices(self, user_id: int) -> int:
        """Forget the user's device tokens."""
        with self._deps.sessions.begin() as session:
            return devices.remove_user_devices(session, user_id)

    @activity.defn(name="resign_cancel_pushes")
    async def cancel_pushes(self, user_id: int) -> int:
        """Cancel the pushes still running for the user (found by their search attributes), heartbeating
        after each."""
        client = activity.client()
        query = f'SosoUserId="{user_id}" AND ExecutionStatus="Running" AND SosoKind STARTS_WITH "push-"'
        cancelled = 0
        async for execution in client.list_workflows(query):
            await client.get_workflow_handle(execution.id, run_id=execution.run_id).cancel()
            cancelled += 1
            activity.heartbeat()
        return cancelled

    @activity.defn(name="resign_delete_account")
    def delete_account(self, user_id: int) -> None:
        """Finally delete the account row (its logins go with it), recording in the same transaction
        that every token of the user is revoked (replicas' views read it from the database)."""
        with self._deps.sessions.begin() as session:
            if session.execute(delete(User).where(User.id == user_id)).rowcount:
                logins.record_account_deleted(session, user_id)
