"""Every ``Settings`` field is read by the code outside ``config/``: a setting documented and shipped in the
ConfigMap but read by nothing is a lie to the operator who changes it."""

from __future__ import annotations

import ast
from pathlib import Path

from config import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Where the processes live (everything but config/ itself, the tests and the k8s/ tooling).
CODE_DIRS = sorted(
    p
    for p in ROOT.iterdir()
    if p.is_dir() and (p / "__init__.py").exists() and p.name not in {"config", "tests"}
)
#: Fields read only inside config/, each with why that is its use (checked below where it can be).
EXEMPT: dict[str, str] = {
    "log_level": "read by config.logging.configure_logging, which every process calls at start-up",
    "log_format": "read by config.logging.configure_logging, which every process calls at start-up",
}


def _holds_settings(node: ast.expr) -> bool:
    """``settings``, ``self._settings``, ``res.settings``, ``deps.settings``, ``Settings()``…"""
    if isinstance(node, ast.Name):
        return "settings" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "settings" in node.attr.lower()
    if isinstance(node, ast.Call):
        return _holds_settings(node.func)
    return False


def read_fields() -> dict[str, list[str]]:
    """Each attribute read off a settings object, with the files reading it."""
    found: dict[str, list[str]] = {}
    for directory in CODE_DIRS:
        for path in sorted(directory.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and _holds_settings(node.value):
                    found.setdefault(node.attr, []).append(str(path.relative_to(ROOT)))
                elif (  # getattr(settings, "field")
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "getattr"
                    and len(node.args) >= 2
                    and _holds_settings(node.args[0])
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)
                ):
                    found.setdefault(node.args[1].value, []).append(str(path.relative_to(ROOT)))
    return found


def test_the_scan_covers_every_process() -> None:
    names = {d.name for d in CODE_DIRS}
    assert {"api", "workers", "workflows", "activities", "devstack", "storage", "dm", "temporal"} <= names
    # the scan sees real reads: these two are read by the API and the worker
    fields = read_fields()
    assert any(f.startswith("api/") for f in fields["access_token_ttl_seconds"])
    assert any(f.startswith("workers/") for f in fields["worker_metrics_port"])


def test_every_setting_is_read_outside_config() -> None:
    fields = read_fields()
    unread = sorted(set(Settings.model_fields) - set(fields) - set(EXEMPT))
    assert unread == [], f"settings nothing outside config/ reads: {unread}"
    assert not set(EXEMPT) - set(Settings.model_fields), "an exemption names no setting"


def test_the_logging_settings_are_applied_by_every_process() -> None:
    """The reason of the two exemptions: the API, the worker and the pre-start step configure logging."""
    for path in ("api/main.py", "workers/main.py", "storage/migrate.py"):
        calls = [
            node
            for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8")))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "configure_logging"
        ]
        assert calls, f"{path} does not call configure_logging"
