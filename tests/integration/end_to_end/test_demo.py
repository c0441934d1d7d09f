"""``make demo`` (``python -m audiosync_dev.demo``), as a newcomer runs it: a real process
with its own servers and celery processes, here with 2 sessions instead of 20.

It passes and cleans up after itself; it takes its settings from the environment; when it
fails or is interrupted it says why and where its logs are, keeps them, and its pusher
has stopped before its servers (no errors of threads talking to servers that are gone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TIMEOUT = 600.0  # the whole demo, on a busy machine
SERVER_LOGS = ("stack/valkey.log", "stack/fake-gcs.log")
CELERY_LOGS = ("worker.log", "beat.log", "flower.log")
#: What a pusher thread prints when it talks to a server the demo has stopped.
NOISE = ("Traceback", "Connection refused", "Error 111", "Redis did not take")


def demo_argv(sessions: int) -> list[str]:
    return [sys.executable, "-m", "audiosync_dev.demo", "--sessions", str(sessions)]


def demo_env(cwd: Path, **env: str) -> dict[str, str]:
    """The test's environment, the demo's temp dir ``cwd/tmp``, and ``env``."""
    (cwd / "tmp").mkdir()
    return {**os.environ, "TMPDIR": str(cwd / "tmp"), "PYTHONUNBUFFERED": "1", **env}


def run_demo(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The demo with 2 sessions in ``cwd``."""
    return subprocess.run(
        demo_argv(2),
        cwd=cwd,
        env=demo_env(cwd, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def kept_workdir(cwd: Path, stderr: str, logs: tuple[str, ...]) -> Path:
    """The demo's one work dir under ``cwd/tmp``: named on stderr, with ``logs`` in it."""
    (workdir,) = (cwd / "tmp").iterdir()
    assert f"its logs are kept in {workdir} (" in stderr, stderr
    for log in logs:
        assert (workdir / log).is_file(), log
        assert log in stderr, stderr
    return workdir


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
    # A setting the demo must take from the environment, and refuse.
    done = run_demo(tmp_path, AUDIOSYNC_CLOSE_SECONDS="0")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "demo FAILED: ConfigError: AUDIOSYNC_CLOSE_SECONDS" in done.stderr, done.stderr
    kept_workdir(tmp_path, done.stderr, SERVER_LOGS)
    assert "Traceback" not in done.stderr  # the error says it all


def _sigint_as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_demo_stops_its_pusher_before_its_servers(tmp_path: Path) -> None:
    """Ctrl-C while the pusher encodes and appends 20 sessions: the pusher's threads end
    before the servers stop, and the demo says where its logs are."""
    demo = subprocess.Popen(
        demo_argv(20),
        cwd=tmp_path,
        env=demo_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a test run started in the background (no job control) has
        # SIGINT ignored, which its children inherit, and a demo started so ignores it.
        preexec_fn=_sigint_as_from_a_terminal,
    )
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        for line in demo.stdout:  # the pusher starts right after Flower answered
            assert time.monotonic() < deadline, "no Flower line"
            if line.startswith("Flower: "):
                break
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=TIMEOUT)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, stderr
    assert "interrupted" in stderr
    kept_workdir(tmp_path, stderr, SERVER_LOGS + CELERY_LOGS)
    assert not [noise for noise in NOISE if noise in stderr], stderr
