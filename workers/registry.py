"""Which workflows and activities each task queue's worker runs.

Add a domain by listing its workflow classes and its activity methods here; ``workers.main`` and the
tests both build their workers from this one table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from activities.accounts import AccountActivities
from activities.deps import ActivityDeps
from activities.housekeeping import HousekeepingActivities
from activities.nickname import NicknameActivities
from activities.nudges import NudgeActivities
from activities.push import PushActivities
from activities.resign import ResignActivities
from temporal import task_queues
from workflows.dm_push import DmPushWorkflow
from workflows.housekeeping import HousekeepingWorkflow
from workflows.nickname import NicknameChangeWorkflow
from workflows.nudges import DailyReminderWorkflow, MonthlyStoryWorkflow
from workflows.push import PushDeliveryWorkflow
from workflows.resign import ResignWorkflow
from workflows.sign_in import SignInWorkflow

WORKFLOWS: dict[str, list[type]] = {
    task_queues.ACCOUNTS: [SignInWorkflow, ResignWorkflow, NicknameChangeWorkflow, HousekeepingWorkflow],
    # The nudge runs start their pushes as children on their own queue.
    task_queues.PUSH: [PushDeliveryWorkflow, DmPushWorkflow, DailyReminderWorkflow, MonthlyStoryWorkflow],
    # Sign-ins start here (eagerly, on the API process's own worker: api.sign_in_worker); the pool
    # polls it too, for starts no API worker takes. SignInWorkflow stays on ACCOUNTS for the runs
    # started there before.
    task_queues.SIGN_IN: [SignInWorkflow],
}

#: Every workflow class once (``SignInWorkflow`` is on two queues), e.g. for a replayer.
ALL_WORKFLOWS: list[type] = list(dict.fromkeys(wf for listed in WORKFLOWS.values() for wf in listed))


def sign_in_activities(deps: ActivityDeps) -> list[Callable[..., Any]]:
    """The activities of ``SignInWorkflow``, constructed over ``deps`` (also the API's sign-in worker)."""
    accounts = AccountActivities(deps)
    return [
        accounts.consume_authorize_code,
        accounts.exchange_apple_code,
        accounts.open_login,
        accounts.check_apple_code,
        accounts.open_requested_login,
    ]


def activities(deps: ActivityDeps) -> dict[str, Sequence[Callable[..., Any]]]:
    """The bound activity methods per task queue, constructed over ``deps``."""
    sign_in = sign_in_activities(deps)
    push = PushActivities(deps)
    resign = ResignActivities(deps)
    nickname = NicknameActivities(deps)
    housekeeping = HousekeepingActivities(deps)
    nudge = NudgeActivities(deps)
    return {
        task_queues.ACCOUNTS: [
            *sign_in,
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
            housekeeping.delete_expired_logins,
            housekeeping.delete_spent_authorize_codes,
            housekeeping.delete_dead_presence,
            housekeeping.delete_stale_revocations,
            housekeeping.delete_stale_page_marks,
            housekeeping.delete_dead_devices,
            housekeeping.restart_stopped_resigns,
        ],
        task_queues.PUSH: [
            push.device_tokens,
            push.device_ids,
            push.send_to_device,
            push.send_dm_to_device,
            push.remove_device_token,
            push.remove_device,
            push.record_push_failure,
            nudge.plan,
            nudge.push_batch,
        ],
        task_queues.SIGN_IN: sign_in,
    }
