"""The README's restart after a Secret change names every Deployment that reads the Secret: a pod
started before the change keeps the old values (the codec server with the old keyring or token)."""

from __future__ import annotations

import json

import pytest

from tests.k8s.manifests import OVERLAYS, SIZES, of_kind, render
from tests.readme_commands import inline_spans

SECRET = "sosohappy-secrets"


def _restart_command() -> list[str]:
    [command] = [
        s for s in inline_spans() if s.startswith("kubectl -n sosohappy rollout restart deployment/")
    ]
    return command.split()


@pytest.mark.parametrize("size", SIZES)
def test_the_restart_after_a_secret_change_names_every_deployment_that_reads_it(size: str) -> None:
    restarted = {w.removeprefix("deployment/") for w in _restart_command() if w.startswith("deployment/")}
    readers = {
        d["metadata"]["name"]
        for d in of_kind(render(OVERLAYS / size), "Deployment")
        if f'"{SECRET}"' in json.dumps(d["spec"]["template"])
    }
    assert readers >= {"sosohappy-api", "sosohappy-worker", "sosohappy-codec"}
    assert restarted == readers
