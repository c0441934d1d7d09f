"""Value combinations that render valid objects but break a cluster are refused at render
time, with a message that names the values: the alerts or KEDA without the exporter whose
gauges they read, a disruption budget that allows no disruption, the GCS emulator with a
Workload Identity account, autoscaler bounds upside down, both Prometheus-operator
monitors at once (every series scraped twice), Flower e-mail patterns Flower does not
read as written."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.unit.deploy.rendering import chart, render

EMULATOR = {"STORAGE_EMULATOR_HOST": "http://fake-gcs:4443"}
ACCOUNT = "audiosync-fleet@my-project.iam.gserviceaccount.com"

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "alerts-without-exporter",
        {"exporter": {"enabled": False}, "prometheusRule": {"enabled": True}},
        r"exporter\.enabled",
    ),
    (
        "keda-without-exporter",
        {"exporter": {"enabled": False}, "hpa": {"enabled": False}, "keda": {"enabled": True}},
        r"exporter\.enabled",
    ),
    (
        "pdb-max-unavailable-0",
        {"workers": {"podDisruptionBudget": {"maxUnavailable": 0}}},
        r"maxUnavailable",
    ),
    (
        "pdb-max-unavailable-0-string",
        {"workers": {"podDisruptionBudget": {"maxUnavailable": "0"}}},
        r"maxUnavailable",
    ),
    (
        "pdb-max-unavailable-0-percent",
        {"workers": {"podDisruptionBudget": {"maxUnavailable": "0%"}}},
        r"maxUnavailable",
    ),
    (
        "pdb-max-unavailable-not-a-number",
        {"workers": {"podDisruptionBudget": {"maxUnavailable": "some"}}},
        r"maxUnavailable",
    ),
    (
        "emulator-with-workload-identity",
        {"settings": EMULATOR, "serviceAccount": {"gcpServiceAccount": ACCOUNT}},
        r"STORAGE_EMULATOR_HOST",
    ),
    (
        "emulator-with-workload-identity-annotation",
        {
            "settings": EMULATOR,
            "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": ACCOUNT}},
        },
        r"STORAGE_EMULATOR_HOST",
    ),
    (
        "hpa-min-above-max",
        {"hpa": {"minReplicas": 5, "maxReplicas": 3}},
        r"hpa\.minReplicas .*hpa\.maxReplicas",
    ),
    (
        "keda-min-above-max",
        {"hpa": {"enabled": False}, "keda": {"enabled": True, "minReplicas": 9, "maxReplicas": 4}},
        r"keda\.minReplicas .*keda\.maxReplicas",
    ),
    (
        "gmp-scraping-with-operator-alerts",
        {
            "monitoring": {
                "podMonitor": {"enabled": True, "apiGroup": "monitoring.googleapis.com"}
            },
            "prometheusRule": {"enabled": True},
        },
        r"prometheusRule\.apiGroup",
    ),
    (
        "operator-scraping-with-gmp-alerts",
        {
            "monitoring": {"serviceMonitor": {"enabled": True}},
            "prometheusRule": {"enabled": True, "apiGroup": "monitoring.googleapis.com"},
        },
        r"prometheusRule\.apiGroup",
    ),
    (
        "keda-on-gmp-series-querying-the-operators-prometheus",
        {
            "monitoring": {
                "podMonitor": {"enabled": True, "apiGroup": "monitoring.googleapis.com"}
            },
            "hpa": {"enabled": False},
            "keda": {"enabled": True},
        },
        r"keda\.prometheusServerAddress",
    ),
    (
        "both-monitors",
        {"monitoring": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True}}},
        r"podMonitor\.enabled.*serviceMonitor\.enabled",
    ),
]


@pytest.mark.parametrize(
    ("values", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_an_unsafe_combination_is_refused_with_a_readable_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)


def test_the_emulator_alone_and_workload_identity_alone_render() -> None:
    assert render({"settings": EMULATOR})
    assert render({"serviceAccount": {"gcpServiceAccount": ACCOUNT}})


@pytest.mark.parametrize("budget", [1, 3, "1", "25%", "100%"])
def test_a_budget_that_allows_a_disruption_renders(budget: int | str) -> None:
    objects = render({"workers": {"podDisruptionBudget": {"maxUnavailable": budget}}})
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert str(pdb["spec"]["maxUnavailable"]) == str(budget)


def test_keda_on_gmp_series_renders_with_gmps_frontend() -> None:
    values = {
        "monitoring": {"podMonitor": {"enabled": True, "apiGroup": "monitoring.googleapis.com"}},
        "hpa": {"enabled": False},
        "keda": {"enabled": True, "prometheusServerAddress": "http://frontend.gmp-public.svc:9090"},
    }
    assert [o for o in render(values) if o["kind"] == "ScaledObject"]


def test_equal_autoscaler_bounds_render() -> None:
    assert render({"hpa": {"minReplicas": 4, "maxReplicas": 4}})


# -- Flower's e-mail patterns (FLOWER_AUTH) ------------------------------------------------
#
# Flower 2 does not read FLOWER_AUTH as a regular expression: it is one address, addresses
# joined by `|` (each matched exactly), or one `.*` before the `@` (the rest matched
# literally, dots included, against the whole address). A regular expression written as
# one (`\.` escapes, anchors, classes) lets nobody in; the schema refuses it.


def oauth(allowed: str) -> dict[str, Any]:
    return {
        "flower": {
            "auth": {
                "oauth": {
                    "enabled": True,
                    "allowedEmails": allowed,
                    "redirectUri": "https://flower.example.com/login",
                    "existingSecret": "audiosync-flower-oauth",
                }
            }
        }
    }


@pytest.mark.parametrize(
    "allowed",
    [r".*@example\.com", r"^.*@example.com$", r"[a-z]+@example.com", ".*@example.com|a@b.com", ""],
)
def test_a_flower_pattern_flower_would_not_read_as_written_is_refused(allowed: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="allowedEmails"):
        chart().validate_schema(oauth(allowed))
    with pytest.raises(helm_python.HelmError):
        render(oauth(allowed))
