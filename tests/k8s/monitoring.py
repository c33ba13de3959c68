"""What ``k8s/monitoring`` contains: the Prometheus rule files, the Grafana dashboards, and every PromQL
expression written in them, parsed with ``promql_parser``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.k8s.manifests import K8S

MONITORING = K8S / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass
class Expr:
    """One PromQL expression and where it is written."""

    where: str
    promql: str
    ast: Any = None


def all_rules() -> list[dict[str, Any]]:
    """Every alerting and recording rule of every rule file."""
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def all_alerts() -> list[dict[str, Any]]:
    """The alerting rules."""
    return [rule for rule in all_rules() if "alert" in rule]


def load_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def board_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def board_variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name -> template variable of a dashboard."""
    return {v["name"]: v for v in board["templating"]["list"]}


def grafana_to_promql(text: str, defined: set[str]) -> str:
    """Replace dashboard variables by what Grafana would put there: durations and match-all regexes."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__"):
            assert name in {"__rate_interval", "__interval", "__range"}, f"unexpected ${name}"
            return "5m"
        assert name in defined, f"${name} is used but not a variable of the dashboard"
        return ".*"

    return GRAFANA_VARIABLE.sub(value, text)


def parsed_expressions() -> list[Expr]:
    """Every rule expression, dashboard target, annotation query and variable query (as PromQL)."""
    exprs = [Expr(f"{r.get('alert') or r['record']}", r["expr"]) for r in all_rules()]
    for name, board in load_dashboards().items():
        variables = board_variables(board)
        found = [
            (f"{panel['title']} / {target['refId']}", target["expr"])
            for panel in board_panels(board)
            for target in panel.get("targets", [])
        ]
        found += [(f"annotation {a['name']}", a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
        for var in variables.values():
            if var["type"] == "query":
                query = var["query"]["query"]
                assert query.startswith("label_values(") and query.endswith(")"), query
                found.append((f"${var['name']}", query[len("label_values(") : query.rindex(",")]))
        exprs += [Expr(f"{name} / {where}", grafana_to_promql(text, set(variables))) for where, text in found]
    for expr in exprs:
        try:
            expr.ast = promql_parser.parse(expr.promql)
        except ValueError as exc:
            pytest.fail(f"{expr.where}: {exc}\n{expr.promql}")
    return exprs


def vector_selectors(ast: Any) -> list[Any]:
    """Every vector selector in a parsed expression."""
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(ast, visit)
    return found


def metric_name(selector: Any) -> str:
    """The metric a vector selector selects (by name or by ``__name__=``)."""
    if selector.name:
        return str(selector.name)
    [name] = [
        m.value
        for m in selector.matchers.matchers
        if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
    ]
    return str(name)


def label_matchers(selector: Any) -> list[Any]:
    """The label matchers of a vector selector, its metric name left out."""
    return [m for m in selector.matchers.matchers if m.name != "__name__"]


def recorded_names() -> set[str]:
    """The series the recording rules make."""
    return {rule["record"] for rule in all_rules() if "record" in rule}


#: Scrape jobs of the exporters (k8s/monitoring/prometheus/prometheus.yml) and the labels Prometheus
#: attaches to their series; the rules and dashboards always select those metrics by their job.
EXPORTER_TARGET_LABELS = {
    "sosohappy-mysql": {"job", "instance", "pod", "namespace", "container"},
    "sosohappy-mongodb": {"job", "instance", "pod", "namespace", "container"},
    "kafka-exporter": {"job", "instance", "pod", "namespace"},
    # The server's own `namespace` label (a Temporal namespace) is renamed temporal_namespace.
    "temporal-server": {"job", "instance", "pod", "namespace", "temporal_service"},
}


def selector_job(selector: Any) -> str | None:
    """The job a vector selector asks for with ``job="..."``, if any."""
    jobs = [
        m.value for m in label_matchers(selector) if m.name == "job" and m.op == promql_parser.MatchOp.Equal
    ]
    return str(jobs[0]) if jobs else None


def exporter_metrics() -> dict[str, str]:
    """Metric name -> exporter job, for every metric a rule or dashboard selects with an exporter's job."""
    found: dict[str, str] = {}
    for expr in parsed_expressions():
        for selector in vector_selectors(expr.ast):
            job = selector_job(selector)
            if job in EXPORTER_TARGET_LABELS:
                found[metric_name(selector)] = job
    return found


def unknown_names_and_labels(job: str, labels_of: Callable[[str], set[str] | None]) -> set[str]:
    """What the expressions name of ``job``'s metrics that ``labels_of`` (metric -> its label names, None
    when the metric is not there) lacks: metrics, matched labels, and labels grouped by."""
    metrics = {name for name, of in exporter_metrics().items() if of == job}
    target = EXPORTER_TARGET_LABELS[job] | ({"temporal_namespace"} if job == "temporal-server" else set())
    problems: set[str] = set()
    for expr in parsed_expressions():

        def check(node: Any, where: str = expr.where) -> None:
            if isinstance(node, promql_parser.VectorSelector) and metric_name(node) in metrics:
                have = labels_of(metric_name(node))
                if have is None:
                    problems.add(f"{metric_name(node)} ({where})")
                    return
                for m in label_matchers(node):
                    if m.name not in have | target:
                        problems.add(f"{metric_name(node)} has no label {m.name} ({where})")
            if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                names = {metric_name(s) for s in vector_selectors(node.expr)}
                if names and names <= metrics:
                    have = set().union(*(labels_of(n) or set() for n in names)) | target
                    for label in set(node.modifier.labels) - have:
                        problems.add(f"{sorted(names)} have no label {label} to group by ({where})")

        promql_parser.walk(expr.ast, check)
    return problems


@dataclass
class Scrape:
    """Metric names and the label names of their samples, per scrape job."""

    jobs: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def add(self, job: str, text: str) -> None:
        names: dict[str, set[str]] = {}
        # The parser names every counter sample <family>_total; Prometheus keeps the exposed name, which
        # for some exporters (the Temporal server's persistence_requests) has no _total.
        exposed = {m.group(0) for m in re.finditer(r"^[a-zA-Z_:][\w:]*", text, re.MULTILINE)}

        def as_exposed(name: str) -> str:
            return name if name in exposed or name.removesuffix("_total") not in exposed else name[:-6]

        for family in text_string_to_metric_families(text):
            declared = {
                "counter": [f"{family.name}_total"],
                "histogram": [f"{family.name}_{s}" for s in ("bucket", "sum", "count")],
            }.get(family.type, [family.name])
            for name in declared:
                names.setdefault(as_exposed(name), set())
            for sample in family.samples:
                names.setdefault(as_exposed(sample.name), set()).update(sample.labels)
        self.jobs[job] = names

    def labels(self, metric: str) -> set[str] | None:
        found = [names[metric] for names in self.jobs.values() if metric in names]
        return set().union(*found) if found else None
