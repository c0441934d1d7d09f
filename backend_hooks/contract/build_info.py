"""``audiosync_build_info{version="..."} 1``: which release a process runs, on every
audiosync metrics endpoint (the workers' ``AUDIOSYNC_METRICS_PORT``, the pusher's
collector, the fleet's exporter, the spool drainer).

A mixed-release fleet (a rolling upgrade) shows as several ``version`` values:
``count by (version) (audiosync_build_info)``. prometheus-client is imported when the
gauge is collected, so importing this module needs nothing beyond the base install.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import metadata
from typing import Any

try:
    #: The installed release (pyproject.toml's version): one number for every role.
    __version__ = metadata.version("audiosync")
except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

BUILD_INFO = "audiosync_build_info"


class BuildInfoCollector:
    """One gauge, always 1, labelled with the installed package's version."""

    def describe(self) -> list[Any]:
        return list(self.collect())  # its name, so a second registration is refused

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(
            BUILD_INFO, "Always 1; the audiosync release this process runs.", labels=["version"]
        )
        gauge.add_metric([__version__], 1)
        yield gauge


def register_build_info(registry: Any) -> None:
    """Add the gauge to ``registry`` (a prometheus-client ``CollectorRegistry``) unless it
    is there already: any number of callers may register it on one registry."""
    # "Duplicated timeseries": an earlier caller registered it
    with contextlib.suppress(ValueError):
        registry.register(BuildInfoCollector())
