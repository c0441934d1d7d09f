"""What the rendered objects promise, for every value set: one beat replaced with
Recreate, a worker grace period that covers the shutdown, cheap probes, pod security,
secrets referenced and never inlined, no encryption secret on a fleet pod, and commands
that are the Celery app's, its queues' and its CLI's."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest
import yaml

from backend_hooks.contract.settings import ROLE_VARIABLES
from tests.unit.deploy.rendering import (
    CHART,
    ENCRYPTION_VARIABLES,
    KEY_HOLDING_COMPONENTS,
    ROOT,
    VALUE_FILES,
    component,
    container,
    deployment,
    env_names,
    load_values,
    pod_spec,
    render,
    rendered,
    workloads,
)
from workers import celeryconfig

VALUE_SETS = sorted(VALUE_FILES)


def merged_settings(values: str) -> dict[str, str]:
    defaults: dict[str, str] = yaml.safe_load((CHART / "values.yaml").read_text())["settings"]
    return {**defaults, **load_values(VALUE_FILES[values]).get("settings", {})}


def test_the_charts_app_version_is_the_package_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart_yaml["apiVersion"] == "v2"
    assert chart_yaml["appVersion"] == project["version"]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_exactly_one_beat_replaced_with_recreate(values: str) -> None:
    beats = [o for o in rendered(values) if o["kind"] == "Deployment" and component(o) == "beat"]
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1
    assert beats[0]["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_the_worker_grace_period_covers_shutdown_and_one_upload(values: str) -> None:
    settings = merged_settings(values)
    budget = (
        float(settings["AUDIOSYNC_SHUTDOWN_SECONDS"])
        + float(settings["AUDIOSYNC_LEASE_SECONDS"]) / 2
    )
    for name in ("worker", "backfill"):
        grace = pod_spec(deployment(rendered(values), name))["terminationGracePeriodSeconds"]
        assert grace >= math.ceil(budget) + 5, name


def test_the_grace_period_follows_the_settings_not_a_literal() -> None:
    objects = render(
        {"settings": {"AUDIOSYNC_SHUTDOWN_SECONDS": "100", "AUDIOSYNC_LEASE_SECONDS": "61"}}
    )
    assert pod_spec(deployment(objects, "worker"))["terminationGracePeriodSeconds"] == (
        100 + 31 + 10
    )


def test_a_soft_shutdown_remaps_sigterm_and_a_warm_one_does_not() -> None:
    warm = container(rendered("defaults"), "worker")
    soft = container(render({"workers": {"shutdown": {"mode": "soft"}}}), "worker")
    assert "REMAP_SIGTERM" not in env_names(warm)
    assert {"name": "REMAP_SIGTERM", "value": "SIGQUIT"} in soft["env"]


def probes_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in spec]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_serving_containers_have_cheap_probes(values: str) -> None:
    """A TCP connect or an HTTP GET of a path answered by the process itself: never an
    exec (a `celery inspect ping` is a broker round trip per probe per pod)."""
    for workload in workloads(rendered(values)):
        for spec in pod_spec(workload)["containers"]:
            ports = {p["name"] for p in spec.get("ports", [])}
            probes = probes_of(spec)
            if not ports:  # beat serves nothing: its exit restarts it
                assert component(workload) == "beat"
                continue
            assert {"livenessProbe", "readinessProbe"} <= set(spec), spec["name"]
            for probe in probes:
                assert "exec" not in probe and "grpc" not in probe, spec["name"]
                handler = probe.get("tcpSocket") or probe.get("httpGet")
                assert handler is not None and handler["port"] in ports, spec["name"]
                if "httpGet" in probe:  # Flower's /healthcheck, answered without a login
                    assert probe["httpGet"]["path"] == "/healthcheck"
                assert probe["periodSeconds"] >= 5


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_pod_runs_locked_down(values: str) -> None:
    for workload in workloads(rendered(values)):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts_tmp = False
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts_tmp = any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])
            assert mounts_tmp, c["name"]
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        assert "tmp" in empty_dirs
        if component(workload) in ("worker", "backfill"):
            worker = spec["containers"][0]
            multiproc = {e["name"]: e.get("value") for e in worker["env"]}
            assert multiproc["PROMETHEUS_MULTIPROC_DIR"] == "/prometheus-multiproc"
            assert "prometheus-multiproc" in empty_dirs


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_secret_value_is_rendered(values: str) -> None:
    objects = rendered(values)
    assert not [o for o in objects if o["kind"] == "Secret"]
    secret_names = {
        "AUDIOSYNC_REDIS_URL",
        "CELERY_BROKER_URL",
        "FLOWER_BASIC_AUTH",
        "FLOWER_OAUTH2_SECRET",
        "FLOWER_OAUTH2_KEY",
        *ENCRYPTION_VARIABLES,
    }
    for workload in workloads(objects):
        for c in pod_spec(workload)["containers"]:
            for env in c.get("env", []):
                if env["name"] in secret_names:
                    assert "value" not in env, env["name"]
                    assert set(env["valueFrom"]) == {"secretKeyRef"}, env["name"]
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        assert not set(config_map.get("data", {})) & secret_names


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_fleet_pod_receives_an_encryption_secret(values: str) -> None:
    objects = rendered(values)
    config_maps = {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"
    }
    for workload in workloads(objects):
        if component(workload) in KEY_HOLDING_COMPONENTS:
            continue
        for c in pod_spec(workload)["containers"]:
            names = env_names(c)
            for source in c.get("envFrom", []):
                assert "secretRef" not in source, workload["metadata"]["name"]
                names |= set(config_maps[source["configMapRef"]["name"]])
            assert not names & ENCRYPTION_VARIABLES, workload["metadata"]["name"]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_each_config_map_holds_only_its_roles_variables(values: str) -> None:
    objects = rendered(values)
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        name = config_map["metadata"]["name"]
        if name.endswith("-fleet"):
            assert set(config_map["data"]) <= ROLE_VARIABLES["fleet"]
        elif name.endswith("-spool-drainer"):
            assert set(config_map["data"]) <= ROLE_VARIABLES["pusher"]


def test_the_production_example_talks_to_real_gcs_through_workload_identity() -> None:
    objects = rendered("production-example")
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        assert "STORAGE_EMULATOR_HOST" not in config_map.get("data", {})
    for workload in workloads(objects):
        for c in pod_spec(workload)["containers"]:
            assert "STORAGE_EMULATOR_HOST" not in env_names(c)
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
        ".iam.gserviceaccount.com"
    )


def test_flower_always_asks_for_credentials() -> None:
    for values in VALUE_SETS:
        flower = container(rendered(values), "flower")
        env = {e["name"]: e for e in flower["env"]}
        assert env["FLOWER_UNAUTHENTICATED_API"]["value"] == "false"
        assert "FLOWER_BASIC_AUTH" in env or "FLOWER_AUTH_PROVIDER" in env


def test_the_alerts_are_the_runbooks_and_link_to_it() -> None:
    (rule,) = [o for o in rendered("everything-on") if o["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "AudiosyncLagHigh",
        "AudiosyncQuarantineNotEmpty",
        "AudiosyncFlushFailures",
        "AudiosyncSessionsParked",
        "AudiosyncObjectNameConflict",
        "AudiosyncRedisDown",
        "AudiosyncSpoolGrowing",
        "AudiosyncSpoolNotDraining",
    }
    for name, alert in alerts.items():
        assert alert["annotations"]["runbook_url"].endswith(f"docs/OPERATIONS.md#{name.lower()}")
    assert "> 120" in alerts["AudiosyncLagHigh"]["expr"]  # two 60 s batch windows


def test_the_dashboard_shows_lag_throughput_failures_quarantine_and_spool() -> None:
    (dashboard,) = [
        o
        for o in rendered("everything-on")
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    text = dashboard["data"]["audiosync.json"]
    for metric in (
        "audiosync_oldest_audio_age_seconds",
        "audiosync_objects_flushed_total",
        "audiosync_flush_failures_total",
        "audiosync_quarantined_sessions",
        "audiosync_spool_bytes",
    ):
        assert metric in text


# -- the commands are the app's, its queues' and its CLI's ---------------------------------


def test_the_worker_consumes_the_flush_queue() -> None:
    command = container(rendered("defaults"), "worker")["command"]
    assert command[:4] == ["celery", "-A", "workers", "worker"]
    assert command[command.index("-Q") + 1] == celeryconfig.task_default_queue
    for option in ("--pool=prefork", "--concurrency=2"):
        assert option in command


def test_the_backfill_worker_consumes_the_backfill_queue() -> None:
    command = container(rendered("everything-on"), "backfill")["command"]
    routed = celeryconfig.task_routes["audiosync.backfill_conversation"]["queue"]
    assert command[command.index("-Q") + 1] == routed


def test_beat_exporter_and_flower_run_the_apps_commands() -> None:
    objects = rendered("defaults")
    assert container(objects, "beat")["command"][:4] == ["celery", "-A", "workers", "beat"]
    assert container(objects, "flower")["command"][:4] == ["celery", "-A", "workers", "flower"]
    exporter = container(objects, "exporter")["command"]
    assert exporter[:5] == ["celery", "-A", "workers", "audiosync", "exporter"]
    assert exporter[exporter.index("--port") + 1] == "9808"


def test_the_spool_drainer_runs_the_spool_cli_in_watch_mode() -> None:
    command = container(rendered("everything-on"), "spool-drainer")["command"]
    assert command[:5] == ["python", "-m", "backend_hooks.spool_cli", "drain", "--watch"]
    assert command[command.index("--metrics-port") + 1] == "9809"


def egress_ports(policy: dict[str, Any]) -> set[int]:
    return {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def test_network_policies_let_workers_reach_only_redis_the_broker_gcs_and_dns() -> None:
    policies = {
        o["metadata"]["name"]: o
        for o in rendered("production-example")
        if o["kind"] == "NetworkPolicy"
    }
    worker = policies["audiosync-worker"]
    assert egress_ports(worker) == {53, 6379, 443, 80, 988}  # 80, 988: the metadata server
    gcs = [r for r in worker["spec"]["egress"] if {p["port"] for p in r["ports"]} == {443}]
    assert [peer["ipBlock"]["cidr"] for peer in gcs[0]["to"]] == ["199.36.153.8/30"]
    flower = policies["audiosync-flower"]
    assert egress_ports(flower) == {53, 6379}
    (broker,) = [r for r in flower["spec"]["egress"] if {p["port"] for p in r["ports"]} == {6379}]
    assert [peer["ipBlock"]["cidr"] for peer in broker["to"]] == ["10.20.1.0/29"]
