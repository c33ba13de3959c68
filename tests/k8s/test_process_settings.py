"""Every backend process the production manifests run starts with exactly the environment its container
gets: the ConfigMap, the keys of the Secrets it mounts (dummy values) and the secret files it mounts. Each
container's module (``args``) is imported and its own start-up check (``load_settings(module.PROCESS)``)
runs, so a manifest that leaves out something its process needs fails here, not in the cluster."""

from __future__ import annotations

import copy
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from activities.apple import generate_apple_private_key
from config import Settings
from config.processes import Process, SettingsRefused, load_settings
from devstack.processes import free_port
from temporal.codec import generate_key_entry
from tests.fixtures.firebase import service_account
from tests.k8s import ROOT
from tests.k8s.manifests import (
    APP_IMAGE,
    OVERLAYS,
    SIZES,
    Doc,
    ident,
    named,
    of_kind,
    pod_spec,
    render,
    secret_examples,
)

#: Values for the Secret keys whose example is empty (the others use their example value).
DUMMY_SECRET_VALUES = {
    "SOSOHAPPY_JWT_SECRET": "j" * 64,
    "SOSOHAPPY_APPLE_TEAM_ID": "TEAM123456",
    "SOSOHAPPY_APPLE_KEY_ID": "KEY1234567",
    "SOSOHAPPY_APPLE_PRIVATE_KEY": generate_apple_private_key(),
    "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS": f"{generate_key_entry('k2')},{generate_key_entry('k1')}",
    "SOSOHAPPY_RELAY_KEYS": f"{generate_key_entry('r2')},{generate_key_entry('r1')}",
    "SOSOHAPPY_CODEC_SERVER_TOKEN": "c" * 48,
    "SOSOHAPPY_FCM_PROJECT_ID": "sosohappy-prod",
    "SOSOHAPPY_MONITORING_DATABASE_PASSWORD": "m" * 24,
}
#: The files of the Secrets mounted as volumes, by (Secret, key).
DUMMY_SECRET_FILES = {("sosohappy-fcm", "service-account.json"): json.dumps(service_account())}
#: The backend workloads of the production manifests and the process each runs.
EXPECTED = {
    "Deployment/sosohappy-api": Process.API,
    "Deployment/sosohappy-worker": Process.WORKER,
    "Deployment/sosohappy-codec": Process.CODEC_SERVER,
    "Job/sosohappy-migrate": Process.MIGRATE,
}


def production_docs(size: str) -> list[Doc]:
    """What the deploy applies for ``size``: the migration Job's kustomization, then the main one."""
    return [*render(OVERLAYS / size / "migrate"), *render(OVERLAYS / size)]


def backend_workloads(docs: list[Doc]) -> list[tuple[Doc, Doc, Doc]]:
    """(workload, pod spec, container) of every container running our image."""
    found = []
    for obj in docs:
        pod = pod_spec(obj)
        if pod is None:
            continue
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            if APP_IMAGE in container.get("image", ""):
                found.append((obj, pod, container))
    return found


def secret_value(secret: str, key: str) -> str:
    examples = secret_examples()
    assert key in examples.get(secret, {}), f"Secret {secret} has no documented key {key}"
    value = examples[secret][key] or DUMMY_SECRET_VALUES.get(key)
    assert value, f"no dummy value for {secret}/{key}: add one to DUMMY_SECRET_VALUES"
    return value


def container_environment(docs: list[Doc], pod: Doc, container: Doc, root: Path) -> dict[str, str]:
    """The container's ``SOSOHAPPY_*`` environment as the kubelet builds it (``envFrom`` in order, then
    ``env``), every secret file it mounts written under ``root`` and the paths into them moved there. An
    optional Secret key is left out: the process must start without it."""
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in of_kind(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "prefix" not in source, "a prefix would rename the settings"
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]])
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            env.update({key: secret_value(name, key) for key in secret_examples()[name]})
        else:
            pytest.fail(f"unknown envFrom source {source}")
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if ref.get("optional"):
                env.pop(var["name"], None)
            else:
                env[var["name"]] = secret_value(ref["name"], ref["key"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = config_maps[ref["name"]][ref["key"]]
        else:
            pytest.fail(f"unknown env source {var}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounted: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        local = root / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True)
        items = secret.get("items")
        assert items, f"secret volume {mount['name']} lists no items: its files are unknown here"
        for item in items:
            content = DUMMY_SECRET_FILES.get((secret["secretName"], item["key"]))
            assert content is not None, f"no dummy file for {secret['secretName']}/{item['key']}"
            (local / item["path"]).write_text(content)
        mounted[mount["mountPath"].rstrip("/")] = local
    for name, value in env.items():
        for path, local in mounted.items():
            if value == path or value.startswith(f"{path}/"):
                env[name] = f"{local}{value[len(path) :]}"
    return {k: v for k, v in env.items() if k.startswith("SOSOHAPPY_")}


def start_as(monkeypatch: pytest.MonkeyPatch, module_name: str, env: dict[str, str]) -> Settings:
    """``load_settings(PROCESS)`` of ``module_name`` under exactly ``env`` (no inherited SOSOHAPPY_*)."""
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "PROCESS", None), Process), f"{module_name} names no PROCESS"
    for key in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings(module.PROCESS)


def entry_module(container: Doc) -> str:
    """The module the image runs (``ENTRYPOINT ["python", "-m"]``, the container's args)."""
    assert "command" not in container and len(container.get("args", [])) >= 1, container.get("args")
    return str(container["args"][0])


@pytest.mark.parametrize("size", SIZES)
def test_each_backend_process_starts_with_the_environment_its_manifest_gives_it(
    size: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = production_docs(size)
    started: dict[str, Process] = {}
    for obj, pod, container in backend_workloads(docs):
        where = f"{size}: {ident(obj)} container {container['name']}"
        module_name = entry_module(container)
        env = container_environment(
            docs, pod, container, tmp_path / obj["metadata"]["name"] / container["name"]
        )
        try:
            settings = start_as(monkeypatch, module_name, env)
        except SettingsRefused as refused:
            pytest.fail(f"{where} ({module_name}) would not start:\n{refused}")
        assert settings.env == "production" and not settings.is_local, where
        started[ident(obj)] = importlib.import_module(module_name).PROCESS
    assert started == EXPECTED


def test_the_check_fails_a_manifest_that_leaves_out_what_its_process_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = production_docs("small")
    workloads = {ident(obj): (pod, container) for obj, pod, container in backend_workloads(docs)}

    # The codec server's manifest without its payload keys.
    pod, codec = workloads["Deployment/sosohappy-codec"]
    keyless = copy.deepcopy(codec)
    keyless["env"] = [e for e in keyless["env"] if e["name"] != "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS"]
    env = container_environment(docs, pod, keyless, tmp_path / "codec")
    with pytest.raises(SettingsRefused, match="SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS is not set"):
        start_as(monkeypatch, entry_module(codec), env)
    # What the codec server gets would not start the API (no JWT secret, no database): the check is the
    # process's own, not one for every process.
    env = container_environment(docs, pod, codec, tmp_path / "codec-as-api")
    with pytest.raises(SettingsRefused, match="SOSOHAPPY_JWT_SECRET is not set"):
        start_as(monkeypatch, "api.serve", env)

    # The worker without the FCM service account mounted.
    pod, worker = workloads["Deployment/sosohappy-worker"]
    unmounted = copy.deepcopy(worker)
    unmounted["volumeMounts"] = [m for m in unmounted["volumeMounts"] if m["name"] != "fcm"]
    env = container_environment(docs, pod, unmounted, tmp_path / "worker")
    with pytest.raises(SettingsRefused, match="SOSOHAPPY_FCM_CREDENTIALS_FILE names no file"):
        start_as(monkeypatch, entry_module(worker), env)


def test_the_codec_server_serves_with_exactly_its_deployment_environment(tmp_path: Path) -> None:
    """The crash this file exists for: ``python -m temporal.codec_server`` with the Deployment's env."""
    docs = production_docs("small")
    codec = named(docs, "Deployment", "sosohappy-codec")
    pod = codec["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = free_port()
    env = container_environment(docs, pod, container, tmp_path)
    env |= {"SOSOHAPPY_CODEC_SERVER_HOST": "127.0.0.1", "SOSOHAPPY_CODEC_SERVER_PORT": str(port)}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SOSOHAPPY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", entry_module(container)],
        cwd=ROOT,
        env=inherited | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert proc.poll() is None, f"the codec server exited:\n{proc.communicate()[0]}"
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
