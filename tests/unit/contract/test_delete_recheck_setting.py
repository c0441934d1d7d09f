"""AUDIOSYNC_DELETE_RECHECK_SECONDS: an hour by default, bounded, read by the reader (whose
delete queues the re-check) and the fleet (whose flush queues one, and which runs them)."""

from __future__ import annotations

import pytest

from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import ROLE_VARIABLES, Settings

NAME = "AUDIOSYNC_DELETE_RECHECK_SECONDS"


def test_a_deleted_conversation_is_listed_again_an_hour_later_by_default() -> None:
    assert Settings.from_env({}).delete_recheck_seconds == 3600.0


@pytest.mark.parametrize("role", ["reader", "fleet", "backfill"])
def test_every_role_that_queues_or_runs_a_recheck_reads_it(role: str) -> None:
    assert NAME in ROLE_VARIABLES[role]
    assert Settings.from_env({NAME: "90"}, role=role).delete_recheck_seconds == 90.0


def test_the_reader_reads_the_shard_count_its_recheck_is_queued_in() -> None:
    assert "AUDIOSYNC_DUE_SHARDS" in ROLE_VARIABLES["reader"]


@pytest.mark.parametrize("value", ["0", "0.5", "-3", "nan", "inf", "soon"])
def test_a_delay_below_one_second_or_not_a_number_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=NAME):
        Settings.from_env({NAME: value})


def test_a_delay_the_deleted_mark_does_not_outlive_is_refused() -> None:
    with pytest.raises(ConfigError, match="AUDIOSYNC_DELETED_MARK_SECONDS"):
        Settings.from_env({NAME: "7200", "AUDIOSYNC_DELETED_MARK_SECONDS": "7200"})
    assert (
        Settings.from_env(
            {NAME: "7199", "AUDIOSYNC_DELETED_MARK_SECONDS": "7200"}
        ).delete_recheck_seconds
        == 7199.0
    )
