"""The API process's own small Temporal worker for sign-in, so sign-ins start eagerly.

``/auth-service/signIn`` starts ``SignInWorkflow`` on the shared sign-in task queue with
``request_eager_start``. This worker polls that same queue through the same ``Client`` object: when it
has a free workflow slot, the SDK reserves it and asks for eager execution, the server hands the first
workflow task back in the start response, and the workflow's local activities run here too, so a
sign-in costs one round trip to Temporal instead of a trip through matching to the worker pool and
back. When this worker is busy, not started yet or disabled (``SOSOHAPPY_API_SIGN_IN_WORKER=false``), the
start is an ordinary one: the task waits in the queue and the worker pool (``workers.main``) or any
replica's sign-in worker serves it. If the process dies holding a task, the task times out and the
pool takes it over, so no sign-in depends on one process.

Only ``SignInWorkflow`` and its activities are registered (``workers.registry.SIGN_IN``). The
activities share the API's database engine and Mongo client; attempts are counted by the same
interceptor as in the worker pool, so ``sosohappy_activity_attempts_total`` appears on the API's
``/metrics`` too (its ``job`` tells them apart). The SDK's own ``temporal_*`` metrics are not exported by
the API (its Temporal runtime has no metrics port; the worker pool's would collide on a shared host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from activities.deps import ActivityDeps
from api.resources import Resources
from temporal import task_queues
from workers import registry
from workers.interceptors import ActivityAttemptInterceptor

log = logging.getLogger(__name__)

#: Sign-ins one API process runs at a time; more concurrent starts go to the worker pool. Each slot
#: may hold a database connection beyond the request threads' (``database_pool_size``), within the
#: pool's overflow.
SLOTS = 4
#: Workflow-task pollers (a normal and a sticky one). The SDK reserves a slot for each outstanding poll
#: and asks for an eager start only when a slot is still free, so the pollers get slots of their own:
#: with every slot held by a poll, no start would ever be eager.
POLLERS = 2


def worker_identity(client: Client) -> str:
    """How this worker names itself to Temporal (``WorkflowTaskCompleted`` events carry it)."""
    return f"{client.identity}/api-sign-in"


class SignInWorker:
    """Runs, once Temporal is connected, until ``stop`` drains it."""

    def __init__(self, res: Resources) -> None:
        self._res = res
        self._worker: Worker | None = None
        self._stopping = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=SLOTS, thread_name_prefix="api-sign-in")

    @property
    def task_queue(self) -> str:
        """The sign-in task queue under the configured prefix (the one the routes start sign-ins on)."""
        return task_queues.named(task_queues.SIGN_IN, self._res.settings.temporal_task_queue_prefix)

    def build(self, client: Client) -> Worker:
        """The worker over ``client`` (the very object the routes start workflows with)."""
        res = self._res
        deps = ActivityDeps(
            settings=res.settings,
            engine=res.engine,
            sessions=res.sessions,
            mongo=res.mongo,
            messages=res.messages,
        )
        return Worker(
            client,
            task_queue=self.task_queue,
            workflows=registry.WORKFLOWS[task_queues.SIGN_IN],
            activities=registry.sign_in_activities(deps),
            activity_executor=self._executor,
            identity=worker_identity(client),
            max_concurrent_workflow_tasks=SLOTS + POLLERS,
            workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=POLLERS),
            activity_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=1),
            max_concurrent_activities=SLOTS,
            max_concurrent_local_activities=SLOTS,
            max_cached_workflows=4 * SLOTS,
            interceptors=[ActivityAttemptInterceptor()],
            graceful_shutdown_timeout=timedelta(seconds=res.settings.api_graceful_shutdown_seconds),
        )

    async def run(self) -> None:
        """Wait for the Temporal client, then poll until stopped."""
        client = await self._res.temporal_connected()
        if self._stopping.is_set():
            return
        self._worker = self.build(client)
        log.info("sign-in worker polling %s", self.task_queue)
        try:
            await self._worker.run()
        except Exception:  # sign-ins go on through the worker pool
            log.exception("the sign-in worker stopped; sign-ins are served by the worker pool")

    async def stop(self) -> None:
        """Stop polling, let running sign-ins finish (bounded by the graceful timeout), then close."""
        self._stopping.set()
        if self._worker is not None and self._worker.is_running:
            with contextlib.suppress(Exception):
                await self._worker.shutdown()
        self._executor.shutdown(wait=False, cancel_futures=True)


def start_sign_in_worker(res: Resources) -> SignInWorker | None:
    """Start the process's sign-in worker unless ``api_sign_in_worker`` is off; drained at shutdown."""
    if not res.settings.api_sign_in_worker:
        return None
    worker = SignInWorker(res)
    res.spawn(worker.run(), "sign-in-worker")
    res.on_close(worker.stop)
    return worker
