"""Rendering charts/audiosync offline (helm-python-sdk: the Helm v4 SDK, no helm binary, no
cluster) and walking the rendered objects."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "audiosync"
#: The Kubernetes version every rendered object is validated against: one GKE's stable
#: release channel runs (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.33.0"
RELEASE = "audiosync"
NAMESPACE = "audiosync"
#: The value sets the tests render: the defaults, the 20,000-session example, every
#: optional part on (with the PodMonitor), the ServiceMonitor way of scraping.
VALUE_FILES: dict[str, Path | None] = {
    "defaults": None,
    "production-example": CHART / "values-production.example.yaml",
    "everything-on": CHART / "ci" / "everything-values.yaml",
    "service-monitor": CHART / "ci" / "servicemonitor-values.yaml",
}
#: Custom resources (their operators' CRDs are not in kubernetes-validate's schemas).
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.googleapis.com/v1", "PodMonitoring"),
    ("monitoring.googleapis.com/v1", "Rules"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
#: Components whose pods are the flush fleet or serve it: never an encryption secret.
#: (The backfill queue's workers open and reseal old objects: they hold the key.)
KEY_HOLDING_COMPONENTS = {"backfill"}
ENCRYPTION_VARIABLES = {
    "ENCRYPTION_SECRET",
    "ENCRYPTION_SECRET_PREVIOUS",
    "ENCRYPTION_SECRET_PREVIOUS_JSON",
}


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def load_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def render(values: dict[str, Any] | None = None, name: str = RELEASE) -> list[dict[str, Any]]:
    """Every object the chart renders with these values (schema-checked by the SDK), as
    release ``name``."""
    manifests = chart().render(values or {}, name=name, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for _template, text in sorted(manifests.items()):
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


@functools.cache
def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(load_values(VALUE_FILES[name])))


def rendered(name: str) -> list[dict[str, Any]]:
    """The objects of one of VALUE_FILES, rendered once per test session."""
    return list(_rendered(name))


def component(obj: dict[str, Any]) -> str:
    labels: dict[str, str] = obj["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component", "")


def workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
    return (o for o in objects if o["kind"] in kinds)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def deployment(objects: list[dict[str, Any]], name_suffix: str) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{RELEASE}-{name_suffix}"
    ]
    assert len(found) == 1, f"{RELEASE}-{name_suffix}: {len(found)} Deployments"
    return found[0]


def container(objects: list[dict[str, Any]], name_suffix: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(deployment(objects, name_suffix))["containers"]
    assert len(containers) == 1
    return containers[0]


def env_names(container_spec: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container_spec.get("env", [])}
