"""The settings by role (backend_hooks/contract/settings.py ROLE_VARIABLES): the fleet accepts what
the pusher accepts, and a worker starts with the deployment's whole environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend_hooks.contract.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
# A valid deployment: 2 s chunks (a whole number of 20 ms frames), 4 s objects. The pusher
# accepts it; one environment is given to every role.
ENV = {"AUDIOSYNC_CHUNK_SECONDS": "2", "AUDIOSYNC_OBJECT_SECONDS": "4"}


def test_the_fleet_accepts_what_the_pusher_accepts() -> None:
    """The fleet does not read AUDIOSYNC_CHUNK_SECONDS, yet checks AUDIOSYNC_OBJECT_SECONDS
    against that variable's default (5): it refuses the deployment, naming a value the
    operator never set ("must be at least AUDIOSYNC_CHUNK_SECONDS (5.0)")."""
    pusher = Settings.from_env(ENV, role="pusher")
    assert pusher.chunk_seconds == 2 and pusher.object_seconds == 4  # valid
    settings = Settings.from_env(ENV, role="fleet")
    assert settings.object_seconds == 4


def test_a_worker_starts_with_the_deployment() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import workers.celeryconfig"],
        env={**os.environ, **ENV},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-400:]
