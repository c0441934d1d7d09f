"""The encryption secrets and a Redis URL's password never show in a repr: Settings is a
dataclass, held by StorageContext (another one), and a repr is what tracebacks with
locals, debuggers and error trackers print of a ``settings`` or ``ctx`` variable. Error
messages show URLs through ``shown_url``
(tests/integration/read/test_redis_password_in_errors.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from backend_hooks.contract.settings import Settings, shown_url

CURRENT = "the-current-secret-0123456789abcdef"
PREVIOUS = "a-previous-secret-fedcba9876543210"
PASSWORD = "hunter2-not-for-logs"


def test_the_settings_repr_shows_no_secret() -> None:
    settings = Settings.from_env(
        {
            "ENCRYPTION_SECRET": CURRENT,
            "ENCRYPTION_SECRET_PREVIOUS_JSON": json.dumps([PREVIOUS]),
            "AUDIOSYNC_REDIS_URL": f"redis://:{PASSWORD}@redis.internal:6379/0",
        }
    )
    shown = repr(settings) + str(settings)
    for secret in ("0123456789abcdef", "fedcba9876543210", PASSWORD):
        assert secret not in shown
    assert "redis_url='redis://:***@redis.internal:6379/0'" in shown
    assert "broker_url='redis://:***@redis.internal:6379/0'" in shown
    assert "bucket=" in shown and "max_gap_fill_seconds=" in shown  # the rest is shown


def test_settings_with_other_secrets_still_differ() -> None:
    settings = Settings.from_env({"ENCRYPTION_SECRET": CURRENT})
    assert settings != replace(settings, encryption_secret=PREVIOUS.encode())
    assert settings != replace(settings, encryption_secret_previous=(PREVIOUS.encode(),))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"redis://:{PASSWORD}@host:6379/0", "redis://:***@host:6379/0"),
        (f"rediss://user:{PASSWORD}@host/2", "rediss://user:***@host/2"),
        (f"redis://host/0?password={PASSWORD}&db=1", "redis://host/0?password=***&db=1"),
        (f"unix:///run/redis.sock?password={PASSWORD}", "unix:///run/redis.sock?password=***"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown
