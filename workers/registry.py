"""Which workflows and activities each task queue's worker runs.

Add a domain by listing its workflow classes and its activity methods here; ``workers.main`` and the
tests both build their workers from this one table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from activities.accounts import AccountActivities
from activities.deps import ActivityDeps
from activities.nickname import NicknameActivities
from activities.push import PushActivities
from activities.resign import ResignActivities
from temporal import task_queues
from workflows.dm_push import DmPushWorkflow
from workflows.nickname import NicknameChangeWorkflow
from workflows.push import PushDeliveryWorkflow
from workflows.resign import ResignWorkflow
from workflows.sign_in import SignInWorkflow

WORKFLOWS: dict[str, list[type]] = {
    task_queues.ACCOUNTS: [SignInWorkflow, ResignWorkflow, NicknameChangeWorkflow],
    task_queues.PUSH: [PushDeliveryWorkflow, DmPushWorkflow],
}


def activities(deps: ActivityDeps) -> dict[str, Sequence[Callable[..., Any]]]:
    """The bound activity methods per task queue, constructed over ``deps``."""
    accounts = AccountActivities(deps)
    push = PushActivities(deps)
    resign = ResignActivities(deps)
    nickname = NicknameActivities(deps)
    return {
        task_queues.ACCOUNTS: [
            accounts.consume_authorize_code,
            accounts.exchange_apple_code,
            accounts.open_login,
            accounts.check_apple_code,
            accounts.open_requested_login,
            resign.revoke_logins,
            resign.revoke_apple,
            resign.revoke_apple_of_user,
            resign.delete_feeds,
            resign.delete_likes_and_blocks,
            resign.delete_user_messages,
            resign.delete_messages,
            resign.remove_devices,
            resign.cancel_pushes,
            resign.delete_account,
            nickname.rename_in_messages,
        ],
        task_queues.PUSH: [
            push.device_tokens,
            push.device_ids,
            push.send_to_device,
            push.send_dm_to_device,
            push.remove_device_token,
            push.remove_device,
            push.record_push_failure,
        ],
    }
