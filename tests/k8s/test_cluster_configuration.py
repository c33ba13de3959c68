"""The configuration the cluster runs with: every setting is set (or deliberately local) and parses, the
Secrets are documented, Kafka matches the settings and the size, and Temporal's namespace, search
attributes and Helm values agree with what the application expects."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from config import Settings
from temporal import housekeeping, nudges, search_attributes
from temporal.codec import generate_key_entry
from tests.k8s import ROOT
from tests.k8s.manifests import (
    APP_IMAGE,
    K8S,
    OVERLAYS,
    SECRET_EXAMPLE,
    SIZES,
    STRIMZI_GROUPS,
    api_group,
    config_data,
    env_file_keys,
    named,
    of_kind,
    pod_templates,
    register_container,
    render,
    secret_examples,
)
from tests.k8s.tools import require_tool

HELM = ROOT / "temporal" / "helm"
#: Settings no production process needs, and why; they must not be set in the cluster either.
LOCAL_ONLY = {
    "data_dir": "holds only the SQLite fallback and dev-stack state; the cluster sets SOSOHAPPY_DATABASE_URL",
    "fcm_endpoint": "points firebase-admin at the local FCM emulator; production uses Google's endpoint",
}
#: Temporal CLI spelling of each search-attribute value type.
CLI_TYPES = {"KEYWORD": "Keyword", "TEXT": "Text", "INT": "Int", "FLOAT": "Double", "BOOL": "Bool"}
CLI_TYPES |= {"DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}


@pytest.mark.parametrize("size", SIZES)
def test_every_setting_is_configured_or_deliberately_local(
    size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(OVERLAYS / size)
    config = config_data(docs)
    secrets = env_file_keys(SECRET_EXAMPLE)
    # The migration Job sets some (the monitoring user's) from a Secret of its own.
    explicit = {
        e["name"]: e.get("value")
        for _, t in pod_templates([*docs, *render(OVERLAYS / size / "migrate")])
        for c in t["spec"]["containers"]
        if c["image"] == APP_IMAGE
        for e in c.get("env", [])
    }
    admin = {"SOSOHAPPY_DATABASE_ADMIN_URL", "SOSOHAPPY_MONITORING_DATABASE_PASSWORD"}
    assert not admin & set(secrets), "the API and the worker must not get the database admin's URL"
    assert not [e for _, t in pod_templates(docs) for c in t["spec"]["containers"] for e in c.get("env", [])
                if e["name"] == "SOSOHAPPY_DATABASE_ADMIN_URL"]  # fmt: skip
    fields = {f"SOSOHAPPY_{name.upper()}": name for name in Settings.model_fields}
    assert not set(config) & set(secrets), "a key in both the ConfigMap and the Secret: one silently wins"
    set_somewhere = set(config) | set(secrets) | set(explicit)
    assert set_somewhere <= set(fields), f"not a setting: {sorted(set_somewhere - set(fields))}"
    missing = {env for env, name in fields.items() if env not in set_somewhere and name not in LOCAL_ONLY}
    assert not missing, f"settings the cluster leaves at their local defaults: {sorted(missing)}"
    assert not {f"SOSOHAPPY_{n.upper()}" for n in LOCAL_ONLY} & set_somewhere

    # The values parse: the settings the processes would build from this ConfigMap and a filled Secret.
    for key in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        monkeypatch.delenv(key)
    filled = {key: value or "x" for key, value in secrets.items()} | {
        "SOSOHAPPY_JWT_SECRET": "s" * 48,
        "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS": f"{generate_key_entry('k2')},{generate_key_entry('k1')}",
        "SOSOHAPPY_RELAY_KEYS": f"{generate_key_entry('r2')},{generate_key_entry('r1')}",
        "SOSOHAPPY_CODEC_SERVER_TOKEN": "t" * 48,
    }
    for key, value in {**config, **filled, **{k: v for k, v in explicit.items() if v}}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.env == "production" and not settings.is_local
    assert settings.database_url and settings.database_url.startswith("mysql+pymysql://")
    assert settings.fcm_endpoint is None


@pytest.mark.parametrize("size", SIZES)
def test_referenced_secrets_are_documented_and_files_land_where_settings_look(size: str) -> None:
    docs = render(OVERLAYS / size)
    examples = secret_examples()
    assert examples["sosohappy-secrets"] == env_file_keys(SECRET_EXAMPLE)
    for _, template in pod_templates(docs):
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in examples
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in examples.get(ref["name"], {}), f"undocumented {ref}"
    worker = named(docs, "Deployment", "sosohappy-worker")["spec"]["template"]["spec"]
    (fcm,) = [v for v in worker["volumes"] if "secret" in v]
    mount = next(m for m in worker["containers"][0]["volumeMounts"] if m["name"] == fcm["name"])
    (item,) = fcm["secret"]["items"]
    assert f"{mount['mountPath']}/{item['path']}" == config_data(docs)["SOSOHAPPY_FCM_CREDENTIALS_FILE"]
    assert f"{fcm['secret']['secretName']} " in SECRET_EXAMPLE.read_text()
    assert f"--from-file={item['key']}=" in SECRET_EXAMPLE.read_text()


@pytest.mark.parametrize("size", SIZES)
def test_kafka_matches_the_settings_and_the_size(size: str) -> None:
    docs = render(OVERLAYS / size)
    config = config_data(docs)
    assert all(d["apiVersion"] == "kafka.strimzi.io/v1" for d in docs if api_group(d) in STRIMZI_GROUPS)
    (kafka,) = of_kind(docs, "Kafka")
    cluster = kafka["metadata"]["name"]
    port = next(lst["port"] for lst in kafka["spec"]["kafka"]["listeners"] if not lst["tls"])
    assert config["SOSOHAPPY_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:{port}"
    topics = of_kind(docs, "KafkaTopic")
    names = {t["spec"]["topicName"] for t in topics}
    assert names == {config["SOSOHAPPY_KAFKA_TOKEN_TOPIC"], config["SOSOHAPPY_KAFKA_DM_TOPIC"]}
    (dm_topic,) = [t for t in topics if t["spec"]["topicName"] == config["SOSOHAPPY_KAFKA_DM_TOPIC"]]
    assert dm_topic["spec"]["partitions"] == int(config["SOSOHAPPY_KAFKA_DM_PARTITIONS"])
    pools = of_kind(docs, "KafkaNodePool")
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == cluster for p in [*pools, *topics])
    nodes = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    replicas, min_isr = {"small": (1, 1), "large": (3, 2)}[size]
    assert nodes == replicas
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == min_isr
    for topic in topics:
        assert (
            topic["spec"]["replicas"] == replicas
            and topic["spec"]["config"]["min.insync.replicas"] == min_isr
        )
        assert int(topic["spec"]["config"]["retention.ms"]) <= 7 * 24 * 3600 * 1000


def test_register_job_registers_exactly_our_namespace_and_search_attributes() -> None:
    container = register_container()
    env = {e["name"]: e["value"] for e in container["env"]}
    registered = dict(spec.split("=") for spec in env["SOSO_SEARCH_ATTRIBUTES"].split())
    assert registered == {key.name: CLI_TYPES[key.indexed_value_type.name] for key in search_attributes.ALL}
    config = env_file_keys(K8S / "components" / "app-config" / "config.env")
    assert env["SOSO_NAMESPACE"] == config["SOSOHAPPY_TEMPORAL_NAMESPACE"]
    assert env["TEMPORAL_ADDRESS"] == config["SOSOHAPPY_TEMPORAL_ADDRESS"]
    assert env["SOSO_TASK_QUEUE_PREFIX"] == config["SOSOHAPPY_TEMPORAL_TASK_QUEUE_PREFIX"]
    assert env["SOSO_SCHEDULE_ID"] == housekeeping.SCHEDULE_ID
    assert env["SOSO_REMINDER_SCHEDULE_ID"] == nudges.REMINDER_SCHEDULE_ID
    assert env["SOSO_MONTHLY_SCHEDULE_ID"] == nudges.MONTHLY_SCHEDULE_ID
    assert env["SOSO_REMINDER_TIME"] == config["SOSOHAPPY_NUDGE_REMINDER_TIME"]
    assert env["SOSO_MONTHLY_TIME"] == config["SOSOHAPPY_NUDGE_MONTHLY_TIME"]
    script = container["args"][0]
    assert "$SOSO_SEARCH_ATTRIBUTES" in script and "search-attribute create" in script
    done = subprocess.run(
        [require_tool("shellcheck"), "--shell=sh", "-"], input=script, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_temporal_helm_values_use_external_mysql_and_size_the_services() -> None:
    base, small, large = (
        yaml.safe_load((HELM / f).read_text())
        for f in ("values.yaml", "values-small.yaml", "values-large.yaml")
    )
    # Keys the chart (>= 1.0) removed and refuses to render with.
    assert not {"cassandra", "elasticsearch", "prometheus", "grafana", "mysql", "postgresql"} & set(base)
    persistence = base["server"]["config"]["persistence"]
    assert {"default", "visibility"} == set(persistence["datastores"]) and persistence["numHistoryShards"] > 0
    assert (persistence["defaultStore"], persistence["visibilityStore"]) == ("default", "visibility")
    for store in persistence["datastores"].values():
        assert store["sql"]["pluginName"] == "mysql8" and store["sql"]["existingSecret"]
        assert "password" not in store["sql"]
    assert base["web"]["enabled"] is True and base["server"]["config"]["namespaces"]["create"] is False
    for values in (small, large):
        for store in values["server"]["config"]["persistence"]["datastores"].values():
            assert re.fullmatch(r"[\w.-]+:\d+", store["sql"]["connectAddr"])
    for service in ("frontend", "history", "matching"):
        assert large["server"][service]["replicaCount"] > small["server"]["replicaCount"]
    assert large["web"]["replicaCount"] > small["web"]["replicaCount"]
    config = env_file_keys(K8S / "components" / "app-config" / "config.env")
    assert config["SOSOHAPPY_TEMPORAL_ADDRESS"].startswith("temporal-frontend.temporal.svc")
    # The UI decodes through the codec server port-forwarded beside it (the browser calls it), and the
    # codec server admits exactly that UI's origin (the UI port-forwarded on 8080).
    web_env = {e["name"]: e["value"] for e in base["web"]["additionalEnv"]}
    assert web_env["TEMPORAL_CODEC_ENDPOINT"] == f"http://127.0.0.1:{config['SOSOHAPPY_CODEC_SERVER_PORT']}"
    assert config["SOSOHAPPY_CODEC_SERVER_UI_ORIGIN"] == "http://127.0.0.1:8080"


def test_the_temporal_chart_is_installed_at_one_pinned_version() -> None:
    """Every documented install or upgrade of the chart names the same exact version: an unpinned one
    takes whatever the chart repository serves that day (a new server, a new values layout)."""
    commands = []
    for path in (ROOT / "README.md", *sorted(HELM.glob("*.yaml"))):
        text = re.sub(r"\\\n#?\s*", " ", path.read_text())  # join continued lines, comments' too
        commands += re.findall(r"helm (?:upgrade|install|template)\b[^\n]*\btemporal/temporal\b[^\n]*", text)
    assert len(commands) >= 2, commands
    pins = [re.search(r"--version[ =](\S+)", c) for c in commands]
    assert all(pins), f"a chart install without --version: {commands}"
    (version,) = {pin.group(1) for pin in pins if pin}
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert int(version.split(".")[0]) >= 1, "the values use the layout of chart 1.x (datastores)"
