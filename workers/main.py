"""The Temporal worker process: ``python -m workers.main`` polls every task queue in ``workers.registry``."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from config import Settings
from temporal.client import connect
from workers import registry

log = logging.getLogger("workers")


def build_workers(client: Client, deps: ActivityDeps, executor: ThreadPoolExecutor) -> list[Worker]:
    """One ``Worker`` per task queue that has anything registered."""
    acts = registry.activities(deps)
    workers = []
    for queue, workflows in registry.WORKFLOWS.items():
        queue_activities = acts.get(queue, [])
        if not workflows and not queue_activities:
            continue
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=workflows,
                activities=queue_activities,
                activity_executor=executor,
                max_concurrent_activities=32,
            )
        )
    return workers


async def run(settings: Settings) -> None:
    """Connect, run every worker until SIGINT/SIGTERM, then drain and close."""
    if settings.worker_metrics_port:
        # Push, activity and SDK counters of this process, scraped by Prometheus.
        start_http_server(
            settings.worker_metrics_port, addr="0.0.0.0" if not settings.is_local else "127.0.0.1"
        )
        log.info("worker metrics on :%d/metrics", settings.worker_metrics_port)
    client = await connect(settings)
    deps = ActivityDeps.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=32, thread_name_prefix="activity") as executor:
        workers = build_workers(client, deps, executor)
        log.info("worker polling %s", ", ".join(w.task_queue for w in workers) or "nothing")
        runs = [asyncio.create_task(w.run()) for w in workers]
        await stop.wait()
        log.info("worker shutting down")
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*runs, return_exceptions=True)
    deps.close()


def main() -> None:
    """Entry point of the worker process."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(Settings()))


if __name__ == "__main__":
    main()
