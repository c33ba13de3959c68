"""The Temporal worker process: ``python -m workers.main`` polls every task queue in ``workers.registry``.

Ports (``0`` disables either): ``worker_metrics_port`` serves ``/metrics`` (this process's
``sosohappy_*`` metrics), ``/healthz`` and ``/readyz``; ``worker_temporal_metrics_port`` serves the
Temporal SDK's own ``temporal_*`` metrics (task latencies, slots, pollers, sticky cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from config import Settings
from config.logging import configure_logging, temporal_core_logging
from config.processes import Process, load_settings
from temporal import task_queues
from temporal.client import connect
from workers import registry
from workers.health import HealthServer, WorkerHealth
from workers.interceptors import ActivityAttemptInterceptor

log = logging.getLogger("workers")

#: What this entry point checks its settings for (``config.processes``).
PROCESS = Process.WORKER


def build_workers(
    client: Client,
    deps: ActivityDeps,
    executor: ThreadPoolExecutor,
    graceful_shutdown: timedelta = timedelta(0),
) -> list[Worker]:
    """One ``Worker`` per task queue that has anything registered, named under the settings' task-queue
    prefix, each recording its activity attempts; on shutdown running activities get ``graceful_shutdown``
    to finish before they are cancelled."""
    acts = registry.activities(deps)
    prefix = deps.settings.temporal_task_queue_prefix
    workers = []
    for queue, workflows in registry.WORKFLOWS.items():
        queue_activities = acts.get(queue, [])
        if not workflows and not queue_activities:
            continue
        workers.append(
            Worker(
                client,
                task_queue=task_queues.named(queue, prefix),
                workflows=workflows,
                activities=queue_activities,
                activity_executor=executor,
                max_concurrent_activities=32,
                interceptors=[ActivityAttemptInterceptor()],
                graceful_shutdown_timeout=graceful_shutdown,
            )
        )
    return workers


def bind_host(settings: Settings) -> str:
    """Where the worker's HTTP ports listen: every interface in a cluster, loopback on a laptop."""
    return "127.0.0.1" if settings.is_local else "0.0.0.0"


def temporal_runtime(settings: Settings) -> Runtime:
    """The SDK runtime of the worker: Core's log lines through our handler and, unless disabled, its
    metrics as Prometheus text on ``worker_temporal_metrics_port`` (durations in seconds, ``_seconds``
    and ``_total`` suffixes as Prometheus names them)."""
    metrics = None
    if settings.worker_temporal_metrics_port:
        metrics = PrometheusConfig(
            bind_address=f"{bind_host(settings)}:{settings.worker_temporal_metrics_port}",
            counters_total_suffix=True,
            unit_suffix=True,
            durations_as_seconds=True,
        )
    return Runtime(telemetry=TelemetryConfig(logging=temporal_core_logging(), metrics=metrics))


async def run(settings: Settings) -> None:
    """Serve health and metrics, connect, run every worker until SIGINT/SIGTERM, then drain and close."""
    health = WorkerHealth()
    server: HealthServer | None = None
    if settings.worker_metrics_port:
        server = HealthServer(health, bind_host(settings), settings.worker_metrics_port).start()
        log.info("worker metrics and health on :%d (/metrics, /healthz, /readyz)", server.port)
    background = [asyncio.create_task(health.keep_beating(), name="health-heartbeat")]
    runtime = temporal_runtime(settings)
    if settings.worker_temporal_metrics_port:
        log.info("Temporal SDK metrics on :%d/metrics", settings.worker_temporal_metrics_port)
    deps: ActivityDeps | None = None
    try:
        client = await connect(settings, runtime=runtime)
        background.append(asyncio.create_task(health.keep_checking(client), name="temporal-health"))
        deps = ActivityDeps.open(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with ThreadPoolExecutor(max_workers=32, thread_name_prefix="activity") as executor:
            grace = timedelta(seconds=settings.worker_graceful_shutdown_seconds)
            workers = build_workers(client, deps, executor, grace)
            health.watch(workers)
            log.info("worker polling %s", ", ".join(w.task_queue for w in workers) or "nothing")
            runs = [asyncio.create_task(w.run()) for w in workers]
            # A worker that dies (e.g. its namespace is gone) ends the process instead of idling unready.
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([stopped, *runs], return_when=asyncio.FIRST_COMPLETED)
            health.stopping()
            log.info("worker shutting down")
            stopped.cancel()
            await asyncio.gather(*(w.shutdown() for w in workers))
            results = await asyncio.gather(*runs, return_exceptions=True)
            for worker, result in zip(workers, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("worker of %s failed", worker.task_queue, exc_info=result)
            if not stop.is_set():
                log.error("a worker stopped without being asked to; exiting")
                raise SystemExit(1)
    finally:
        for task in background:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*background, return_exceptions=True)
        if deps is not None:
            deps.close()
        if server is not None:
            server.stop()


def main() -> None:
    """Entry point of the worker process."""
    settings = load_settings(PROCESS)
    configure_logging(settings)
    try:
        asyncio.run(run(settings))
    except Exception:
        log.exception("worker process failed")  # one JSON line with the traceback, not a bare print
        sys.exit(1)


if __name__ == "__main__":
    main()
