"""values.schema.json refuses a wrong value at install time, with a message that names the
key; the template refuses what a schema cannot say (both autoscalers at once)."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from backend_hooks.contract.settings import ROLE_VARIABLES
from tests.unit.deploy.rendering import chart, render

WRONG_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"beat": {"replicas": 2}}, "/beat/replicas"),
    ({"settings": {"ENCRYPTION_SECRET": "x" * 40}}, "ENCRYPTION_SECRET"),
    ({"settings": {"AUDIOSYNC_LEASE_SECONDS": 30}}, "/settings/AUDIOSYNC_LEASE_SECONDS"),
    ({"settings": {"AUDIOSYNC_SHUTDOWN_SECONDS": "twenty"}}, "AUDIOSYNC_SHUTDOWN_SECONDS"),
    ({"workers": {"shutdown": {"mode": "hot"}}}, "/workers/shutdown/mode"),
    ({"workers": {"concurrency": 0}}, "/workers/concurrency"),
    ({"workers": {"pool": "gevent"}}, "/workers/pool"),
    ({"flower": {"auth": {"basic": {"existingSecret": ""}}}}, "/flower/auth"),
    ({"redis": {"existingSecret": ""}}, "/redis/existingSecret"),
    ({"wokers": {"replicas": 3}}, "wokers"),
    ({"spool": {"volume": {"mode": "cloud"}}}, "/spool/volume/mode"),
    ({"spool": {"drainer": {"settings": {"ENCRYPTION_SECRET": "x" * 40}}}}, "ENCRYPTION_SECRET"),
    ({"serviceAccount": {"gcpServiceAccount": "not-an-account"}}, "gcpServiceAccount"),
]


@pytest.mark.parametrize(("values", "named"), WRONG_VALUES, ids=[n for _, n in WRONG_VALUES])
def test_a_wrong_value_is_refused_naming_its_key(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        render(values)
    assert named in str(refused.value)
    with pytest.raises(helm_python.HelmValuesError):
        chart().validate_schema(values)


def test_both_autoscalers_at_once_are_refused() -> None:
    with pytest.raises(helm_python.HelmError, match=r"keda\.enabled"):
        render({"keda": {"enabled": True}})


def test_the_settings_accepted_are_the_fleet_roles_own() -> None:
    schema = chart().schema
    assert schema is not None
    accepted = set(schema["properties"]["settings"]["properties"])
    from_secrets = {"AUDIOSYNC_REDIS_URL", "CELERY_BROKER_URL"}
    assert accepted == ROLE_VARIABLES["fleet"] - from_secrets
    drainer = set(
        schema["properties"]["spool"]["properties"]["drainer"]["properties"]["settings"][
            "properties"
        ]
    )
    assert drainer <= ROLE_VARIABLES["pusher"]
    assert not drainer & {"ENCRYPTION_SECRET", "ENCRYPTION_SECRET_PREVIOUS", "AUDIOSYNC_REDIS_URL"}
