"""The rules and dashboards under ``k8s/monitoring``: every PromQL expression parses, the dashboards are well
formed and link to the runbook queries in the Temporal Web UI, the alerts say how bad, for how long and
where to look, and the kustomization ships the files unchanged."""

from __future__ import annotations

import re
from collections import defaultdict
from urllib.parse import unquote

from temporal import search_attributes
from tests.k8s import ROOT
from tests.k8s.manifests import render
from tests.k8s.monitoring import (
    DASHBOARDS,
    MONITORING,
    PROMETHEUS,
    RULE_FILES,
    all_alerts,
    board_panels,
    board_variables,
    load_dashboards,
    metric_name,
    parsed_expressions,
    vector_selectors,
)

README = (ROOT / "README.md").read_text()

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The Temporal list queries the README's runbooks give, which failure links and alerts must match.
RESIGN_QUERY = 'SosoKind="resign" AND ExecutionStatus!="Completed"'
PUSH_QUERY = 'SosoKind STARTS_WITH "push-" AND (ExecutionStatus="Failed" OR SosoOutcome IN ("token-removed","undelivered"))'
PUSH_RETRYING_QUERY = 'SosoKind STARTS_WITH "push-" AND ExecutionStatus="Running"'
TEMPORAL_LINK = "${temporal_ui:raw}/namespaces/${temporal_namespace:raw}/workflows?query="


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


def test_every_expression_parses_and_names_its_metric() -> None:
    exprs = parsed_expressions()
    assert len(exprs) > 60
    for expr in exprs:
        for selector in vector_selectors(expr.ast):
            assert re.fullmatch(r"[a-zA-Z_:][\w:]*", metric_name(selector)), expr.where


def test_dashboards_are_well_formed() -> None:
    boards = load_dashboards()
    assert {
        "sosohappy-api.json",
        "sosohappy-workflows.json",
        "sosohappy-mysql.json",
        "sosohappy-mongodb.json",
    } <= set(boards)
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["schemaVersion"] >= 39, name
        variables = board_variables(board)
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        panels = board_panels(board)
        if any(panel.get("links") for panel in panels):  # boards that link to the Temporal Web UI
            assert variables["temporal_ui"]["query"].startswith("https://")
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
    assert RESIGN_QUERY in README and PUSH_QUERY in README and PUSH_RETRYING_QUERY in README
    linked: dict[str, set[str]] = defaultdict(set)
    for board in load_dashboards().values():
        for panel in board_panels(board):
            for link in panel.get("links", []):
                assert link["url"].startswith(TEMPORAL_LINK), link["url"]
                query = unquote(link["url"][len(TEMPORAL_LINK) :])
                allowed = {RESIGN_QUERY, PUSH_QUERY, PUSH_RETRYING_QUERY, 'ExecutionStatus="Failed"'}
                assert query in allowed, query
                linked[query].add(panel["title"])
    assert {"Failed resigns"} <= linked[RESIGN_QUERY]
    assert {"Undelivered pushes", "Pushes given up on a device", "Push attempts retried"} <= linked[
        PUSH_QUERY
    ]
    assert {"Push attempts retried"} <= linked[PUSH_RETRYING_QUERY]


def test_alerts_say_how_bad_for_how_long_and_where_to_look() -> None:
    anchors = _readme_anchors()
    attributes = {key.name for key in search_attributes.ALL}
    names = [a["alert"] for a in all_alerts()]
    assert len(names) == len(set(names))
    for alert in all_alerts():
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
    assert not [a for a in all_alerts() if "sosohappy_open_websockets" in a["expr"]]


def test_kustomization_renders_the_configmaps_with_the_files() -> None:
    maps = {doc["metadata"]["name"]: doc for doc in render(MONITORING)}
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
