"""The rules and dashboards read what the application really exports: the dev stack (API, worker and
Temporal SDK endpoints) is started, driven with real traffic, including a push that fails, and scraped;
every metric name and label name a PromQL expression selects or groups by must be in that scrape (the
exporters' metrics, selected by their jobs, are checked in test_database_exporters)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import promql_parser
import pytest
from temporalio.client import WorkflowFailureError
from websockets.sync.client import connect as ws_connect

from api.push import request_push
from config import Settings
from emulators.control import FcmEmulator
from kst.dates import now_kst
from temporal.client import connect as temporal_connect
from temporal.codec import local_key_file
from temporal.push import PushRequest
from tests.api.feed_helpers import like, nick
from tests.fixtures.devstack import PORT_VARIABLES, start_ready_stack, stop_stack
from tests.fixtures.ios_client import IOSClient
from tests.k8s.monitoring import (
    Scrape,
    exporter_metrics,
    label_matchers,
    metric_name,
    parsed_expressions,
    recorded_names,
    vector_selectors,
)

#: Series Prometheus makes itself rather than scraping them.
SYNTHESISED = {"up", "ALERTS", "ALERTS_FOR_STATE"}
#: Labels Prometheus attaches to every scraped series of ours (prometheus.yml relabel_configs).
TARGET_LABELS = {"job", "instance", "pod", "namespace", "container"}


def _start_stack(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    proc, env, output = start_ready_stack(data_dir)
    ports = {name.removeprefix("SOSOHAPPY_"): int(env[name]) for name in PORT_VARIABLES}
    return proc, ports, output


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


async def _undeliverable_push(temporal_port: int, receiver_id: int, data_dir: Path) -> None:
    """A like push with a 2 s deadline to a device FCM keeps refusing: it must fail (PushUndelivered)."""
    client = await temporal_connect(
        Settings(
            env="test",
            temporal_address=f"127.0.0.1:{temporal_port}",
            temporal_namespace="default",
            # The stack's own payload key (generated into its data folder), not the test session's.
            temporal_payload_keys=local_key_file(data_dir).read_text().strip(),  # type: ignore[arg-type]
        )
    )
    request = PushRequest(
        kind="like",
        workflow_id=f"push:like:monitoring-test:{uuid.uuid4().hex}",
        receiver_user_id=receiver_id,
        title="소소해피",
        body="deadline test",
        data={},
        deadline_seconds=2,
    )
    await request_push(client, request)
    with pytest.raises(WorkflowFailureError) as failed:
        await client.get_workflow_handle(request.workflow_id).result()
    assert "PushUndelivered" in repr(failed.value.cause)


def _drive_traffic(ports: dict[str, int], data_dir: Path) -> None:
    """Sign-ups, a feed, a like push that is retried once, a DM to an offline user, a bad frame, 4xx
    answers, and a push that fails: every labelled series the rules and dashboards read gets a sample."""
    api = f"127.0.0.1:{ports['API_PORT']}"
    fcm = FcmEmulator(f"http://127.0.0.1:{ports['FCM_EMULATOR_PORT']}")
    with httpx.Client(base_url=f"http://{api}", timeout=30) as http:
        alice, bob = IOSClient(http).sign_up(nick()), IOSClient(http).sign_up(nick())
        date = now_kst()  # the stack runs with the production date rule: nothing past tomorrow
        assert alice.save_feed(date).status_code == 200
        fcm.fail(alice.device_token, "UNAVAILABLE", times=1)
        assert like(bob, alice.nickname, date).status_code == 200
        _wait_for(lambda: len(fcm.messages(alice.device_token)) == 1, "the like push after one retry")
        assert http.get("/feed-service/no-such-route").status_code == 404
        assert bob.save_feed(date, happiness=9).status_code == 400
        headers = {"Authorization": bob.access, "email": bob.email}
        with ws_connect(
            f"ws://{api}/dm-service/connect-dm?nickname={bob.nickname}", additional_headers=headers
        ) as ws:
            ws.send(json.dumps({"sender": bob.nickname, "receiver": alice.nickname, "text": "hi"}))
            ws.send(json.dumps({"sender": bob.nickname, "receiver": alice.nickname, "text": ""}))
            assert "error" in json.loads(ws.recv(timeout=10))
        _wait_for(lambda: len(fcm.messages(alice.device_token)) == 2, "the DM push to offline alice")
        fcm.fail(bob.device_token, "UNAVAILABLE")
        bob_id = jwt.decode(bob.access.removeprefix("Bearer "), options={"verify_signature": False})["uid"]
    asyncio.run(_undeliverable_push(ports["TEMPORAL_PORT"], bob_id, data_dir))
    fcm.close()


@pytest.fixture(scope="module")
def live_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    data_dir = tmp_path_factory.mktemp("monitoring-stack")
    proc, ports, output = _start_stack(data_dir)
    try:
        assert "Press Ctrl-C" in output, output
        _drive_traffic(ports, data_dir)
        scrape = Scrape()
        for job, port in (
            ("sosohappy-api", ports["API_METRICS_PORT"]),
            ("sosohappy-worker", ports["WORKER_METRICS_PORT"]),
            ("sosohappy-worker-sdk", ports["WORKER_TEMPORAL_METRICS_PORT"]),
        ):
            resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert resp.status_code == 200, (job, resp.text)
            scrape.add(job, resp.text)
        # The API's own port serves no metrics (the ingress routes it; the metrics port is internal).
        assert httpx.get(f"http://127.0.0.1:{ports['API_PORT']}/metrics", timeout=10).status_code == 404
        yield scrape
    finally:
        stop_stack(proc)


@pytest.mark.slow
def test_every_metric_used_is_exported_by_the_running_stack(live_scrape: Scrape) -> None:
    # The exporters' metrics are checked against their own scrapes (test_database_exporters).
    known = SYNTHESISED | recorded_names() | set(exporter_metrics())
    missing, wrong_job = set(), set()
    for expr in parsed_expressions():
        for selector in vector_selectors(expr.ast):
            name = metric_name(selector)
            if name in known:
                continue
            if live_scrape.labels(name) is None:
                missing.add(f"{name} ({expr.where})")
            for m in label_matchers(selector):
                if (
                    m.name == "job"
                    and m.op == promql_parser.MatchOp.Equal
                    and name not in live_scrape.jobs[m.value]
                ):
                    wrong_job.add(f"{name} is not on {m.value} ({expr.where})")
    assert not missing | wrong_job, "not in the scrape:\n" + "\n".join(sorted(missing | wrong_job))
    assert "temporal_workflow_failed_total" in live_scrape.jobs["sosohappy-worker-sdk"]


@pytest.mark.slow
def test_every_label_matched_or_grouped_exists_on_the_scraped_series(live_scrape: Scrape) -> None:
    skip = SYNTHESISED | recorded_names() | set(exporter_metrics())

    def labels_of(name: str) -> set[str]:
        found = live_scrape.labels(name) or set()
        # Prometheus renames the SDK's Temporal `namespace` label (prometheus.yml metric_relabel_configs).
        return found | TARGET_LABELS | ({"temporal_namespace"} if "namespace" in found else set())

    problems = set()
    for expr in parsed_expressions():

        def check(node: Any, where: str = expr.where) -> None:
            if isinstance(node, promql_parser.VectorSelector) and metric_name(node) not in skip:
                for m in label_matchers(node):
                    if m.name not in labels_of(metric_name(node)):
                        problems.add(f"{metric_name(node)} has no label {m.name} ({where})")
            if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                names = {metric_name(s) for s in vector_selectors(node.expr)}
                if names and not names & skip:
                    have = set().union(*map(labels_of, names))
                    for label in set(node.modifier.labels) - have:
                        problems.add(f"{sorted(names)} have no label {label} to group by ({where})")

        promql_parser.walk(expr.ast, check)
    assert not problems, "\n".join(sorted(problems))
