"""``make demo`` (``python -m audiosync_dev.demo``), as a newcomer runs it: a real process
with its own servers and celery processes, here with 2 sessions instead of 20.

It passes and cleans up after itself; it honours the settings of the environment; when it
fails it says why and where its logs are, keeps them, and prints no errors of its own
threads talking to the servers it has stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TIMEOUT = 600.0  # the whole demo, on a busy machine


def run_demo(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The demo with 2 sessions in ``cwd``, its temp dir ``cwd/tmp``."""
    (cwd / "tmp").mkdir()
    return subprocess.run(
        [sys.executable, "-m", "audiosync_dev.demo", "--sessions", "2"],
        cwd=cwd,
        env={**os.environ, "TMPDIR": str(cwd / "tmp"), **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_demo_reads_every_conversation_back_and_removes_its_logs(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3/3 conversations sample-exact" in done.stdout, done.stdout
    assert done.stderr == ""
    assert sorted(p.name for p in (tmp_path / "demo-out").iterdir()) == [
        "demo-conv-00-b.wav",
        "demo-conv-00.wav",
        "demo-conv-01.wav",
    ]
    assert list((tmp_path / "tmp").iterdir()) == []  # its work dir is gone


def test_a_failed_demo_names_its_kept_logs_and_honours_the_environment(tmp_path: Path) -> None:
    # A close budget no close can meet: the demo must take it from the environment.
    done = run_demo(tmp_path, AUDIOSYNC_CLOSE_SECONDS="1e-9")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "demo FAILED: EnqueueError" in done.stderr
    assert "within 1e-09 s (AUDIOSYNC_CLOSE_SECONDS)" in done.stderr
    (workdir,) = (tmp_path / "tmp").iterdir()
    assert f"its logs are kept in {workdir} (" in done.stderr
    for log in ("worker.log", "beat.log", "flower.log", "stack/valkey.log", "stack/fake-gcs.log"):
        assert (workdir / log).is_file(), log
        assert log in done.stderr
    # The pusher's threads ended before the servers stopped: none of them met a stopped one.
    assert "Traceback" not in done.stderr
    assert "Connection refused" not in done.stderr
    assert "Redis did not take" not in done.stderr
