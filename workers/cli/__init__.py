"""``celery -A workers audiosync status|replay|backfill|exporter``: the fleet's operator
commands, and the exporter of the fleet-wide gauges.

Registered as a Celery command plugin (the ``celery.commands`` entry point in
pyproject.toml, ``workers.cli:audiosync``), so it shows in ``celery --help`` and takes
Celery's ``-A``. Laid out as Celery lays out celery/bin: this module is the group, one
module per command (status.py, replay.py, backfill.py, exporter.py), and base.py what they
share (the group's error handling, the ``--json`` output, option callbacks). The logic is
in workers/operations.py, workers/backfill.py and workers/exporter.py; the commands only
read options and print.
"""

from __future__ import annotations

import click

from backend_hooks.contract.build_info import __version__
from workers.cli.backfill import backfill_command
from workers.cli.base import AudiosyncGroup
from workers.cli.exporter import exporter_command
from workers.cli.replay import replay_command
from workers.cli.status import status_command


@click.group(name="audiosync", cls=AudiosyncGroup)
@click.version_option(__version__, prog_name="audiosync", message="%(prog)s %(version)s")
def audiosync() -> None:
    """audiosync fleet operations: lag and Redis holdings, flushing now, replays, backfill,
    the fleet-wide gauges' exporter."""


audiosync.add_command(status_command)
audiosync.add_command(replay_command)
audiosync.add_command(backfill_command)
audiosync.add_command(exporter_command)

__all__ = ["audiosync"]
