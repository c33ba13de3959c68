"""What ``k8s/monitoring`` contains: the Prometheus rule files, the Grafana dashboards, and every PromQL
expression written in them, parsed with ``promql_parser``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import promql_parser
import pytest
import yaml

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
