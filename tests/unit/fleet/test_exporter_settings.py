"""The exporter's two settings: documented defaults, refused when not a positive number."""

from __future__ import annotations

import pytest

from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import Settings


def test_the_exporter_reads_redis_at_most_every_10_s_within_5_s_by_default() -> None:
    settings = Settings.from_env({}, role="fleet")
    assert (settings.exporter_cache_seconds, settings.exporter_read_seconds) == (10.0, 5.0)


@pytest.mark.parametrize(
    "name", ["AUDIOSYNC_EXPORTER_CACHE_SECONDS", "AUDIOSYNC_EXPORTER_READ_SECONDS"]
)
@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_an_exporter_setting_that_is_not_a_positive_number_is_refused(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value}, role="fleet")
