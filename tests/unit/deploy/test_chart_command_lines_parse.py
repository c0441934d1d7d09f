"""Each rendered Celery command line is one the installed Celery app accepts: the app
loads, the subcommand exists, every option is known (``--help`` appended, so nothing
starts). Flower's own options are not checked by ``--help``:
tests/integration/deploy/test_chart_commands_run.py starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.deploy.rendering import container, rendered

COMPONENTS = ["worker", "backfill", "beat", "flower", "exporter"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_rendered_celery_command_line_parses(name: str, tmp_path: Path) -> None:
    command = container(rendered("everything-on"), name)["command"]
    assert command[0] == "celery"
    executable = str(Path(sys.executable).parent / "celery")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    done = subprocess.run(
        [executable, *command[1:], "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
