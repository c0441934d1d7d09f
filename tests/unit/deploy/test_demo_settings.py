"""The demo's settings: the user's environment first, the demo's defaults where it has
none, and the addresses of the demo's own servers over both."""

from __future__ import annotations

from audiosync_dev.demo import DEMO_DEFAULTS, demo_env

SWEEP = "AUDIOSYNC_SWEEP_INTERVAL_SECONDS"
STACK = {"AUDIOSYNC_REDIS_URL": "redis://127.0.0.1:1234/0", "BUCKET_PRIVATE_CLOUD_SYNC": "demo"}


def test_the_environment_s_settings_apply() -> None:
    env = demo_env(
        STACK, {"AUDIOSYNC_CLOSE_SECONDS": "30", "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "2"}
    )
    assert env["AUDIOSYNC_CLOSE_SECONDS"] == "30"
    assert env["AUDIOSYNC_SWEEP_INTERVAL_SECONDS"] == "2"


def test_the_demo_s_defaults_apply_only_where_a_setting_is_unset_or_empty() -> None:
    env = demo_env(STACK, {"AUDIOSYNC_SWEEP_INTERVAL_SECONDS": ""})
    assert (
        env["AUDIOSYNC_SWEEP_INTERVAL_SECONDS"] == DEMO_DEFAULTS["AUDIOSYNC_SWEEP_INTERVAL_SECONDS"]
    )
    assert env["ENCRYPTION_SECRET"] == DEMO_DEFAULTS["ENCRYPTION_SECRET"]


def test_the_demo_talks_to_its_own_servers_only() -> None:
    environ = {
        "AUDIOSYNC_REDIS_URL": "redis://prod.example:6379/0",
        "BUCKET_PRIVATE_CLOUD_SYNC": "prod-bucket",
        "AUDIOSYNC_REDIS_CLUSTER": "1",
    }
    env = demo_env(STACK, environ)
    assert {k: env[k] for k in STACK} == STACK
    assert env["AUDIOSYNC_REDIS_CLUSTER"] == "0"
