"""An ``AUDIOSYNC_*`` variable that is no setting (a typo) is named in one WARNING, with
the closest setting, whichever role reads the settings; it is otherwise ignored."""

from __future__ import annotations

import logging

import pytest

from backend_hooks.contract import settings
from backend_hooks.contract.settings import ENV_DEFAULTS, OTHER_VARIABLES, Settings
from workers.logs import LOG_FORMAT_ENV
from workers.metrics import METRICS_PORT_ENV


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_warned_unknown", set())


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("role", ["pusher", "fleet", "reader", "backfill", None])
def test_a_misspelt_setting_is_named_with_the_closest_one_once(
    role: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"AUDIOSYNC_SPOOL_DIRR": "/var/spool/audiosync", "AUDIOSYNC_LEASE_SECOND": "9"}
    with caplog.at_level(logging.WARNING, logger="backend_hooks.settings"):
        read = Settings.from_env(env, role=role)
        Settings.from_env(env, role=role)  # read again: not warned again
    assert read == Settings.from_env({}, role=role)  # ignored
    assert warnings(caplog) == [
        "AUDIOSYNC_LEASE_SECOND is set but is not an audiosync setting: it is ignored (did "
        'you mean AUDIOSYNC_LEASE_SECONDS?; README, "Settings")',
        "AUDIOSYNC_SPOOL_DIRR is set but is not an audiosync setting: it is ignored (did "
        'you mean AUDIOSYNC_SPOOL_DIR?; README, "Settings")',
    ]


def test_a_name_like_no_setting_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="backend_hooks.settings"):
        Settings.from_env({"AUDIOSYNC_X": "1"}, role="pusher")
    assert warnings(caplog) == [
        "AUDIOSYNC_X is set but is not an audiosync setting: it is ignored (no setting is "
        'like it; README, "Settings")'
    ]


def test_every_known_variable_is_read_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Another role's settings and the workers' own variables are known, not typos."""
    assert {LOG_FORMAT_ENV, METRICS_PORT_ENV} <= OTHER_VARIABLES
    env = dict.fromkeys(ENV_DEFAULTS, "") | {LOG_FORMAT_ENV: "json", METRICS_PORT_ENV: "9"}
    env |= {"ENCRYPTION_SECRT": "x", "PATH": "/bin"}  # not audiosync's prefix: not ours
    with caplog.at_level(logging.WARNING, logger="backend_hooks.settings"):
        for role in ("pusher", "fleet", "reader", "backfill"):
            Settings.from_env(env, role=role)
    assert warnings(caplog) == []
