"""The rendered objects fit together on a GKE cluster: every monitor selects objects that
exist and serve the port it names, every metrics-serving component is scraped, the
alerts and KEDA read only this release's series (two releases in one cluster never mix),
the network policies let Workload Identity reach the GKE metadata server, and Flower's
e-mail pattern lets in exactly the addresses it names."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flower.utils.authentication import authenticate

from tests.unit.deploy.rendering import (
    NAMESPACE,
    RELEASE,
    component,
    container,
    pod_spec,
    render,
    rendered,
    workloads,
)

SERVICE_MONITOR = {"monitoring": {"serviceMonitor": {"enabled": True}}}
POD_MONITOR = {"monitoring": {"podMonitor": {"enabled": True}}}
GMP = {"monitoring": {"podMonitor": {"enabled": True, "apiGroup": "monitoring.googleapis.com"}}}
EVERYTHING = {
    "backfill": {"replicas": 1},
    "spool": {"enabled": True, "drainer": {"enabled": True}},
    "flower": {"enabled": True},
}
#: Components that serve Prometheus metrics, and the port name they serve them on.
SCRAPED = {
    "worker": "metrics",
    "backfill": "metrics",
    "exporter": "metrics",
    "spool-drainer": "metrics",
    "flower": "http",
}


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def port_names_of_pods(workload: dict[str, Any]) -> set[str]:
    return {p["name"] for c in pod_spec(workload)["containers"] for p in c.get("ports", [])}


@pytest.mark.parametrize("monitor", ["ServiceMonitor", "PodMonitor", "PodMonitoring"])
def test_every_monitor_endpoint_selects_a_rendered_object_serving_its_port(monitor: str) -> None:
    values: dict[str, dict[str, Any]] = {
        "ServiceMonitor": SERVICE_MONITOR,
        "PodMonitor": POD_MONITOR,
        "PodMonitoring": GMP,
    }
    objects = render(merged(EVERYTHING, values[monitor]))
    (mon,) = [o for o in objects if o["kind"] == monitor]
    selector = mon["spec"]["selector"]["matchLabels"]
    endpoints = mon["spec"].get("endpoints") or mon["spec"]["podMetricsEndpoints"]
    scraped: set[tuple[str, str]] = set()  # (component, port name)
    if monitor == "ServiceMonitor":
        services = [
            o
            for o in objects
            if o["kind"] == "Service" and matches(selector, o["metadata"]["labels"])
        ]
        assert services
        for endpoint in endpoints:
            serving = [
                s for s in services if endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
            ]
            assert serving, f"no selected Service has a port named {endpoint['port']}"
            for service in serving:
                # the Service's own selector picks pods that serve that port
                pods = [
                    w
                    for w in workloads(objects)
                    if matches(
                        service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"]
                    )
                ]
                assert pods and all(endpoint["port"] in port_names_of_pods(w) for w in pods)
                scraped |= {(component(w), endpoint["port"]) for w in pods}
    else:
        pods = [
            w
            for w in workloads(objects)
            if matches(selector, w["spec"]["template"]["metadata"]["labels"])
        ]
        for endpoint in endpoints:
            serving = [w for w in pods if endpoint["port"] in port_names_of_pods(w)]
            assert serving, f"no selected pod has a port named {endpoint['port']}"
            scraped |= {(component(w), endpoint["port"]) for w in serving}
    assert set(SCRAPED.items()) <= scraped, set(SCRAPED.items()) - scraped


def test_the_metrics_services_are_headless() -> None:
    objects = render(merged(EVERYTHING, SERVICE_MONITOR))
    for name in ("worker", "backfill", "spool-drainer"):
        (service,) = [
            o
            for o in objects
            if o["kind"] == "Service" and o["metadata"]["name"] == f"{RELEASE}-{name}-metrics"
        ]
        assert service["spec"]["clusterIP"] == "None"


SELECTOR = f'namespace="{NAMESPACE}",audiosync_release="{RELEASE}"'
SERIES = re.compile(r"\b(audiosync_[a-z_]+)(\{[^}]*\})?")


def unscoped(expr: str) -> list[str]:
    return [m.group(0) for m in SERIES.finditer(expr) if SELECTOR not in (m.group(2) or "")]


def test_the_alerts_read_only_this_releases_series() -> None:
    (rule,) = [o for o in rendered("everything-on") if o["kind"] == "PrometheusRule"]
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            assert SERIES.search(alert["expr"]), alert["alert"]
            assert unscoped(alert["expr"]) == [], alert["alert"]


def test_a_drainer_stuck_in_the_volume_raises_the_spool_alert() -> None:
    (rule,) = [o for o in rendered("everything-on") if o["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    expr = alerts["AudiosyncSpoolNotDraining"]["expr"]
    assert "time() - max(audiosync_spool_drain_pass_timestamp_seconds{" in expr
    assert "audiosync_spool_skipped_entries_total{" in expr


def test_the_keda_query_reads_only_this_releases_series() -> None:
    (scaled,) = [o for o in rendered("everything-on") if o["kind"] == "ScaledObject"]
    (prometheus,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert unscoped(prometheus["metadata"]["query"]) == []


@pytest.mark.parametrize("values", [SERVICE_MONITOR, POD_MONITOR, GMP], ids=["sm", "pm", "gmp"])
def test_every_scraped_series_carries_the_release_label_the_alerts_select(
    values: dict[str, Any],
) -> None:
    objects = render(merged(EVERYTHING, values))
    (mon,) = [o for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor", "PodMonitoring")]
    if mon["kind"] == "PodMonitoring":  # GMP: a pod label copied to the series
        from_pod = mon["spec"]["targetLabels"]["fromPod"]
        assert {"from": "app.kubernetes.io/instance", "to": "audiosync_release"} in from_pod
        return
    endpoints = mon["spec"].get("endpoints") or mon["spec"]["podMetricsEndpoints"]
    for endpoint in endpoints:
        assert {
            "targetLabel": "audiosync_release",
            "replacement": RELEASE,
            "action": "replace",
        } in endpoint["relabelings"]


def test_the_alerts_are_evaluated_where_the_series_are_scraped() -> None:
    """GMP scrapes into Google Cloud Managed Service for Prometheus, whose rule evaluator
    reads Rules (monitoring.googleapis.com/v1, the same groups); a PrometheusRule there is
    refused by the API server (no such kind) or read by a Prometheus without the series."""
    production = rendered("production-example")
    (pod_monitoring,) = [o for o in production if o["kind"] == "PodMonitoring"]
    assert pod_monitoring["apiVersion"] == "monitoring.googleapis.com/v1"
    assert not [o for o in production if o["kind"] == "PrometheusRule"]
    (rules,) = [o for o in production if o["kind"] == "Rules"]
    assert rules["apiVersion"] == "monitoring.googleapis.com/v1"
    (operator,) = [o for o in rendered("everything-on") if o["kind"] == "PrometheusRule"]
    names = [[r["alert"] for r in g["rules"]] for g in rules["spec"]["groups"]]
    assert names == [[r["alert"] for r in g["rules"]] for g in operator["spec"]["groups"]]


def test_the_dashboard_shows_one_release_chosen_by_namespace_and_release() -> None:
    (dashboard,) = [
        o
        for o in rendered("everything-on")
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    board = json.loads(dashboard["data"]["audiosync.json"])
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "release"} <= set(variables)
    chosen = 'namespace="$namespace",audiosync_release="$release"'
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert [
                m.group(0) for m in SERIES.finditer(expr) if chosen not in (m.group(2) or "")
            ] == [], expr
            if "audiosync_spool_bytes" in expr or "audiosync_spool_files" in expr:
                # every drainer reports the whole volume: max(), never sum()
                assert expr.startswith("max("), expr


def test_two_releases_select_different_series() -> None:
    other = render({"prometheusRule": {"enabled": True}}, name="other")
    (rule,) = [o for o in other if o["kind"] == "PrometheusRule"]
    expr = rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert 'audiosync_release="other"' in expr and SELECTOR not in expr


# -- network policies on GKE ---------------------------------------------------------------


def policies(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in render(merged({"networkPolicy": {"enabled": True}}, values))
        if o["kind"] == "NetworkPolicy"
    }


def egress_peers(policy: dict[str, Any]) -> set[tuple[str, int]]:
    return {
        (peer["ipBlock"]["cidr"], port["port"])
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
        for port in rule.get("ports", [])
    }


def test_the_gcs_clients_reach_the_gke_metadata_server_for_workload_identity() -> None:
    found = policies(EVERYTHING)
    for name in ("worker", "backfill"):
        peers = egress_peers(found[f"{RELEASE}-{name}"])
        assert ("169.254.169.254/32", 80) in peers, name
        assert ("169.254.169.254/32", 988) in peers, name
        assert ("169.254.169.252/32", 988) in peers, name  # GKE Dataplane V2's
    for name in ("beat", "exporter", "flower", "spool-drainer"):  # no GCS client
        assert not {
            p for p in egress_peers(found[f"{RELEASE}-{name}"]) if p[0].startswith("169.254.")
        }


def test_flower_with_google_oauth_reaches_googles_token_endpoint() -> None:
    """The OAuth login exchanges its code with Google (accounts.google.com,
    www.googleapis.com, over HTTPS): without the egress every login fails."""
    values = {
        "flower": {
            "auth": {
                "oauth": {
                    "enabled": True,
                    "allowedEmails": ".*@example.com",
                    "redirectUri": "https://flower.example.com/login",
                    "existingSecret": "audiosync-flower-oauth",
                }
            }
        }
    }
    flower = policies(values)[f"{RELEASE}-flower"]
    assert ("0.0.0.0/0", 443) in egress_peers(flower)
    basic_only = policies({})[f"{RELEASE}-flower"]
    assert 443 not in {port for _, port in egress_peers(basic_only)}


def test_the_metadata_server_rule_is_a_value() -> None:
    found = policies({"networkPolicy": {"metadataServer": []}})
    assert not {p for p in egress_peers(found[f"{RELEASE}-worker"]) if p[0].startswith("169.254.")}


# -- Flower's e-mail pattern ---------------------------------------------------------------


def test_the_rendered_flower_pattern_lets_in_exactly_the_named_addresses() -> None:
    """Checked with Flower's own matcher on the value the chart renders."""
    env = {e["name"]: e for e in container(rendered("everything-on"), "flower")["env"]}
    pattern = env["FLOWER_AUTH"]["value"]
    assert authenticate(pattern, "ops@example.com")
    assert authenticate(pattern, "a.b@example.com")
    assert not authenticate(pattern, "ops@example.com.evil")
    assert not authenticate(pattern, "ops@exampleXcom")
    assert not authenticate(pattern, "ops@evil.example.com")


def test_an_exact_address_matches_only_itself() -> None:
    values = {
        "flower": {
            "auth": {
                "oauth": {
                    "enabled": True,
                    "allowedEmails": "a.b@example.com|c@example.com",
                    "redirectUri": "https://flower.example.com/login",
                    "existingSecret": "audiosync-flower-oauth",
                }
            }
        }
    }
    env = {e["name"]: e for e in container(render(values), "flower")["env"]}
    pattern = env["FLOWER_AUTH"]["value"]
    assert authenticate(pattern, "a.b@example.com") and authenticate(pattern, "c@example.com")
    for other in ("aXb@example.com", "a.b@example.com.evil", "xa.b@example.com"):
        assert not authenticate(pattern, other), other


def test_scraped_components_are_the_ones_serving_metrics() -> None:
    objects = render(EVERYTHING)
    serving = {
        component(w): port
        for w in workloads(objects)
        for c in pod_spec(w)["containers"]
        for port in [p["name"] for p in c.get("ports", [])]
    }
    assert serving == SCRAPED
