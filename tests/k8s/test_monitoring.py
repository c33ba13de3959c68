"""Monitoring (``k8s/monitoring``): Prometheus scrape config, alert and recording rules, Grafana dashboards.

Every PromQL expression is parsed with ``promql_parser``; the metric names and label names it selects
must exist in a live scrape of the dev stack (API, worker and Temporal SDK endpoints) after real
traffic, including a push that fails; the relabelling is run by ``promtool`` against the pods the
``k8s/base`` manifests describe; the alert rules are unit-tested with ``promtool test rules``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import jwt
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import WorkflowFailureError
from websockets.sync.client import connect as ws_connect

from api.push import request_push
from config import Settings
from devstack.processes import free_port
from emulators.control import FcmEmulator
from temporal import search_attributes
from temporal.client import connect as temporal_connect
from temporal.push import PushRequest
from tests.api.feed_helpers import kst, like, nick, unique_year
from tests.fixtures.ios_client import IOSClient

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k8s" / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
README = (ROOT / "README.md").read_text()

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Series Prometheus makes itself rather than scraping them.
SYNTHESISED = {"up", "ALERTS", "ALERTS_FOR_STATE"}
#: Labels Prometheus attaches to every scraped series of ours (prometheus.yml relabel_configs).
TARGET_LABELS = {"job", "instance", "pod", "namespace", "container"}
#: The Temporal list queries the README's runbooks give, which failure links and alerts must match.
RESIGN_QUERY = 'SosoKind="resign" AND ExecutionStatus!="Completed"'
PUSH_QUERY = 'SosoKind STARTS_WITH "push-" AND (ExecutionStatus="Failed" OR SosoOutcome IN ("token-removed","undelivered"))'
TEMPORAL_LINK = "${temporal_ui:raw}/namespaces/${temporal_namespace:raw}/workflows?query="
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


# --- what the monitoring files contain ---------------------------------------------------------


@dataclass
class Expr:
    """One PromQL expression and where it is written."""

    where: str
    promql: str
    ast: Any = None


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def _grafana_to_promql(text: str, defined: set[str]) -> str:
    """Replace dashboard variables by what Grafana would put there: durations and match-all regexes."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__"):
            assert name in {"__rate_interval", "__interval", "__range"}, f"unexpected ${name}"
            return "5m"
        assert name in defined, f"${name} is used but not a variable of the dashboard"
        return ".*"

    return GRAFANA_VARIABLE.sub(value, text)


def _expressions() -> list[Expr]:
    """Every rule expression, dashboard target, annotation query and variable query (as PromQL)."""
    exprs = [Expr(f"{r.get('alert') or r['record']}", r["expr"]) for r in _rules()]
    for name, board in _dashboards().items():
        variables = _variables(board)
        found = [
            (f"{panel['title']} / {target['refId']}", target["expr"])
            for panel in _panels(board)
            for target in panel.get("targets", [])
        ]
        found += [(f"annotation {a['name']}", a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
        for var in variables.values():
            if var["type"] == "query":
                query = var["query"]["query"]
                assert query.startswith("label_values(") and query.endswith(")"), query
                found.append((f"${var['name']}", query[len("label_values(") : query.rindex(",")]))
        exprs += [
            Expr(f"{name} / {where}", _grafana_to_promql(text, set(variables))) for where, text in found
        ]
    for expr in exprs:
        try:
            expr.ast = promql_parser.parse(expr.promql)
        except ValueError as exc:
            pytest.fail(f"{expr.where}: {exc}\n{expr.promql}")
    return exprs


def _selectors(ast: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(ast, visit)
    return found


def _metric_name(selector: Any) -> str:
    if selector.name:
        return str(selector.name)
    [name] = [
        m.value
        for m in selector.matchers.matchers
        if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
    ]
    return str(name)


def _matchers(selector: Any) -> list[Any]:
    return [m for m in selector.matchers.matchers if m.name != "__name__"]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _readme_anchors() -> set[str]:
    """GitHub's anchors of the README's headings (fenced code is not a heading)."""
    anchors, fenced = set(), False
    for line in README.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


# --- static checks ------------------------------------------------------------------------------


def test_every_expression_parses_and_names_its_metric() -> None:
    exprs = _expressions()
    assert len(exprs) > 60
    for expr in exprs:
        for selector in _selectors(expr.ast):
            assert re.fullmatch(r"[a-zA-Z_:][\w:]*", _metric_name(selector)), expr.where


def test_dashboards_are_well_formed() -> None:
    boards = _dashboards()
    assert {"sosohappy-api.json", "sosohappy-workflows.json"} <= set(boards)
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["schemaVersion"] >= 39, name
        variables = _variables(board)
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["temporal_ui"]["query"].startswith("https://")
        panels = _panels(board)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in panels:
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, (name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["type"] in {"timeseries", "stat"}, (name, panel["title"])
            assert panel["datasource"] == DATASOURCE, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE and target["expr"].strip(), (name, panel["title"])


def test_failure_panels_link_to_the_runbook_queries_in_the_temporal_web_ui() -> None:
    assert RESIGN_QUERY in README and PUSH_QUERY in README
    linked: dict[str, set[str]] = defaultdict(set)
    for board in _dashboards().values():
        for panel in _panels(board):
            for link in panel.get("links", []):
                assert link["url"].startswith(TEMPORAL_LINK), link["url"]
                query = unquote(link["url"][len(TEMPORAL_LINK) :])
                assert query in {RESIGN_QUERY, PUSH_QUERY, 'ExecutionStatus="Failed"'}, query
                linked[query].add(panel["title"])
    assert {"Failed resigns"} <= linked[RESIGN_QUERY]
    assert {"Undelivered pushes", "Pushes given up on a device", "Push attempts retried"} <= linked[
        PUSH_QUERY
    ]


def test_alerts_say_how_bad_for_how_long_and_where_to_look() -> None:
    anchors = _readme_anchors()
    attributes = {key.name for key in search_attributes.ALL}
    names = [a["alert"] for a in _alerts()]
    assert len(names) == len(set(names))
    for alert in _alerts():
        where = alert["alert"]
        assert re.fullmatch(r"\d+[smh]", alert["for"]), where
        assert alert["labels"]["severity"] in {"critical", "warning"}, where
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], where
        path, _, anchor = annotations["runbook"].partition("#")
        assert path == "README.md" and anchor in anchors, (where, annotations["runbook"])
        query = annotations.get("temporal_query")
        if query is not None:
            assert set(re.findall(r"Soso\w+", query)) <= attributes, (where, query)
            if anchor in {"resign-runbook", "push-delivery-runbook"}:
                assert query == {"resign-runbook": RESIGN_QUERY, "push-delivery-runbook": PUSH_QUERY}[anchor]
    expected = {"SosohappyApiDown", "SosohappyWorkerDown", "SosohappyPushUndelivered", "SosohappyResignStuck"}
    assert expected <= set(names)
    assert not [a for a in _alerts() if "sosohappy_open_websockets" in a["expr"]]


def test_kustomization_renders_the_configmaps_with_the_files() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH")
    out = subprocess.run(
        ["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, check=True
    )
    maps = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(out.stdout)}
    assert all(
        doc["kind"] == "ConfigMap" and doc["metadata"]["namespace"] == "sosohappy" for doc in maps.values()
    )
    assert maps["sosohappy-prometheus-config"]["data"] == {
        "prometheus.yml": (PROMETHEUS / "prometheus.yml").read_text()
    }
    assert maps["sosohappy-prometheus-rules"]["data"] == {p.name: p.read_text() for p in RULE_FILES}
    dashboards = {
        key: value
        for doc in maps.values()
        if doc["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        for key, value in doc["data"].items()
    }
    assert dashboards == {p.name: p.read_text() for p in DASHBOARDS}


# --- promtool -----------------------------------------------------------------------------------


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not on PATH (Debian/Ubuntu: apt-get install prometheus)")
    return found


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules() -> None:
    result = _run(_promtool(), "check", "rules", *map(str, RULE_FILES), cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_fire_the_alerts() -> None:
    tests = sorted(p.name for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    result = _run(_promtool(), "test", "rules", *(f"tests/{t}" for t in tests), cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_config_as_deployed(tmp_path: Path) -> None:
    promtool = _promtool()
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    result = _run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path / "prometheus")
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool is built without Kubernetes service discovery (Debian's package)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def _pods_of_base() -> list[dict[str, Any]]:
    """The pod templates of every workload ``kubectl kustomize k8s/base`` renders."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH")
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / "base")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return [
        {"name": d["metadata"]["name"], "namespace": d["metadata"]["namespace"], **d["spec"]["template"]}
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}
    ]


def _targets(pod: dict[str, Any], ip: str, phase: str = "Running") -> list[dict[str, Any]]:
    """What Kubernetes pod discovery yields for one pod: a target per container port."""
    meta = {
        "__meta_kubernetes_namespace": pod["namespace"],
        "__meta_kubernetes_pod_name": f"{pod['name']}-7d9f-x2x4q",
        "__meta_kubernetes_pod_phase": phase,
    }
    for key, value in pod["metadata"].get("labels", {}).items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", key)] = value
    return [
        {
            "targets": [f"{ip}:{port['containerPort']}"],
            "labels": meta
            | {
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
            },
        }
        for container in pod["spec"]["containers"]
        for port in container.get("ports", [])
    ]


def test_scrape_config_turns_the_manifests_pods_into_the_three_jobs(tmp_path: Path) -> None:
    promtool = _promtool()
    pods = _pods_of_base()
    groups = [group for i, pod in enumerate(pods) for group in _targets(pod, f"10.0.0.{i + 1}")]
    api = next(pod for pod in pods if pod["metadata"]["labels"].get("app.kubernetes.io/component") == "api")
    groups += _targets(api, "10.0.9.9", phase="Pending")  # not scraped until it runs
    stranger = {**api, "metadata": {"labels": {"app.kubernetes.io/component": "api"}}}
    groups += _targets(stranger, "10.0.9.8")  # not part-of=sosohappy
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:  # this promtool may lack Kubernetes discovery: list the pods
        sd = job.pop("kubernetes_sd_configs")
        if job["job_name"] == "sosohappy":
            assert sd == [{"role": "pod", "namespaces": {"names": ["sosohappy"]}}]
            job["static_configs"] = groups
    shutil.copytree(PROMETHEUS / "rules", tmp_path / "rules")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

    check = _run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in check.stdout
    sd_run = _run(
        promtool, "check", "service-discovery", "--timeout=2s", "prometheus.yml", "sosohappy", cwd=tmp_path
    )
    assert sd_run.returncode == 0, sd_run.stdout + sd_run.stderr
    scraped = {
        (
            t["labels"]["job"],
            t["labels"]["instance"],
            t["labels"]["pod"],
            t["labels"]["namespace"],
            t["labels"]["container"],
        )
        for t in json.loads(sd_run.stdout)
        if t["labels"]  # dropped targets are listed without labels
    }
    by_job = {job: (instance.rsplit(":", 1)[1], ns) for job, instance, _, ns, _ in scraped}
    assert by_job == {
        "sosohappy-api": ("8888", "sosohappy"),
        "sosohappy-worker": ("9464", "sosohappy"),
        "sosohappy-worker-sdk": ("9465", "sosohappy"),
    }, scraped
    assert len(scraped) == 3 and all(pod.endswith("-7d9f-x2x4q") for _, _, pod, _, _ in scraped)


# --- the live stack -----------------------------------------------------------------------------


@dataclass
class Scrape:
    """Metric names and the label names of their samples, per scrape job."""

    jobs: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def add(self, job: str, text: str) -> None:
        names: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            declared = {
                "counter": [f"{family.name}_total"],
                "histogram": [f"{family.name}_{s}" for s in ("bucket", "sum", "count")],
            }.get(family.type, [family.name])
            for name in declared:
                names.setdefault(name, set())
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
        self.jobs[job] = names

    def labels(self, metric: str) -> set[str] | None:
        found = [names[metric] for names in self.jobs.values() if metric in names]
        return set().union(*found) if found else None


STACK_PORTS = [
    "TEMPORAL_PORT",
    "TEMPORAL_UI_PORT",
    "KAFKA_PORT",
    "MONGO_PORT",
    "FCM_EMULATOR_PORT",
    "APPLE_EMULATOR_PORT",
    "API_PORT",
    "WORKER_METRICS_PORT",
    "WORKER_TEMPORAL_METRICS_PORT",
]


def _start_stack(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    ports = {name: free_port() for name in STACK_PORTS}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOSOHAPPY_")}
    env |= {f"SOSOHAPPY_{name}": str(port) for name, port in ports.items()}
    env["SOSOHAPPY_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.run"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if not line or "Press Ctrl-C" in line:
            break
    return proc, ports, "".join(lines)


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


async def _undeliverable_push(temporal_port: int, receiver_id: int) -> None:
    """A like push with a 2 s deadline to a device FCM keeps refusing: it must fail (PushUndelivered)."""
    client = await temporal_connect(
        Settings(temporal_address=f"127.0.0.1:{temporal_port}", temporal_namespace="default")
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


def _drive_traffic(ports: dict[str, int]) -> None:
    """Sign-ups, a feed, a like push that is retried once, a DM to an offline user, a bad frame, 4xx
    answers, and a push that fails: every labelled series the rules and dashboards read gets a sample."""
    api = f"127.0.0.1:{ports['API_PORT']}"
    fcm = FcmEmulator(f"http://127.0.0.1:{ports['FCM_EMULATOR_PORT']}")
    with httpx.Client(base_url=f"http://{api}", timeout=30) as http:
        alice, bob = IOSClient(http).sign_up(nick()), IOSClient(http).sign_up(nick())
        date = kst(unique_year(), 5, 5)
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
    asyncio.run(_undeliverable_push(ports["TEMPORAL_PORT"], bob_id))
    fcm.close()


@pytest.fixture(scope="module")
def live_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    proc, ports, output = _start_stack(tmp_path_factory.mktemp("monitoring-stack"))
    try:
        assert "Press Ctrl-C" in output, output
        _drive_traffic(ports)
        scrape = Scrape()
        for job, port in (
            ("sosohappy-api", ports["API_PORT"]),
            ("sosohappy-worker", ports["WORKER_METRICS_PORT"]),
            ("sosohappy-worker-sdk", ports["WORKER_TEMPORAL_METRICS_PORT"]),
        ):
            resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert resp.status_code == 200, (job, resp.text)
            scrape.add(job, resp.text)
        yield scrape
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.mark.slow
def test_every_metric_used_is_exported_by_the_running_stack(live_scrape: Scrape) -> None:
    known = SYNTHESISED | _recorded()
    missing, wrong_job = set(), set()
    for expr in _expressions():
        for selector in _selectors(expr.ast):
            name = _metric_name(selector)
            if name in known:
                continue
            if live_scrape.labels(name) is None:
                missing.add(f"{name} ({expr.where})")
            for m in _matchers(selector):
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
    skip = SYNTHESISED | _recorded()

    def labels_of(name: str) -> set[str]:
        found = live_scrape.labels(name) or set()
        # Prometheus renames the SDK's Temporal `namespace` label (prometheus.yml metric_relabel_configs).
        return found | TARGET_LABELS | ({"temporal_namespace"} if "namespace" in found else set())

    problems = set()
    for expr in _expressions():

        def check(node: Any, where: str = expr.where) -> None:
            if isinstance(node, promql_parser.VectorSelector) and _metric_name(node) not in skip:
                for m in _matchers(node):
                    if m.name not in labels_of(_metric_name(node)):
                        problems.add(f"{_metric_name(node)} has no label {m.name} ({where})")
            if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                names = {_metric_name(s) for s in _selectors(node.expr)}
                if names and not names & skip:
                    have = set().union(*map(labels_of, names))
                    for label in set(node.modifier.labels) - have:
                        problems.add(f"{sorted(names)} have no label {label} to group by ({where})")

        promql_parser.walk(expr.ast, check)
    assert not problems, "\n".join(sorted(problems))
