"""The chart renders, lints and yields only objects a Kubernetes API server of the pinned
version accepts, for the defaults, the production example and every optional part on.
Offline: helm-python-sdk (the Helm v4 SDK) renders; kubernetes-validate --strict checks."""

from __future__ import annotations

from typing import Any

import helm_python
import kubernetes_validate
import pytest

from tests.unit.deploy.rendering import (
    CHART,
    CUSTOM_KINDS,
    KUBERNETES_VERSION,
    VALUE_FILES,
    load_values,
    rendered,
)

VALUE_SETS = sorted(VALUE_FILES)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_the_chart_lints_clean(values: str) -> None:
    report = helm_python.lint(
        CHART,
        load_values(VALUE_FILES[values]),
        strict=True,
        kube_version=f"v{KUBERNETES_VERSION}",
    )
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert problems == []


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_rendered_object_validates_strictly(values: str) -> None:
    objects = rendered(values)
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            assert obj["metadata"]["name"] and obj["spec"], obj["kind"]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects}


def test_the_optional_parts_render_only_when_asked() -> None:
    defaults = kinds(rendered("defaults"))
    everything = kinds(rendered("everything-on")) | kinds(rendered("service-monitor"))
    optional = {
        "PodMonitor",
        "ServiceMonitor",
        "ScaledObject",
        "PrometheusRule",
        "NetworkPolicy",
        "Ingress",
        "PersistentVolume",
        "PersistentVolumeClaim",
    }
    assert not (optional & defaults)
    assert optional <= everything
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
    } <= defaults
    assert "PodDisruptionBudget" in defaults
