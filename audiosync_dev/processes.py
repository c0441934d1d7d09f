"""Real ``celery`` processes for the demo and the integration tests.

A worker is started exactly as in production (``celery -A workers worker``), with its own
environment and a log file; ``stop`` sends SIGTERM to the main process (Celery's warm
shutdown: running tasks finish) and SIGKILL only after a timeout; ``kill`` is the SIGKILL
of a crashed pod.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from audiosync_dev.localstack import free_port

STOP_TIMEOUT = 30.0


class ProcessError(RuntimeError):
    """A process did not start or stop as it should; the message has its log tail."""


class CeleryProcess:
    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log: Path,
        *,
        python: str = sys.executable,
        cwd: Path | None = None,
    ) -> None:
        """``python -m celery -A workers ARGS`` in ``cwd`` (default: this process's)."""
        self.name = name
        self.args = [python, "-m", "celery", "-A", "workers", *args]
        self.env = {**os.environ, **env}
        self.log = log
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None  # where it serves, for servers such as Flower

    def start(self, ready_text: str, timeout: float = 60.0) -> CeleryProcess:
        log = self.log.open("ab")
        self._process = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self._process.returncode}:\n{self.tail()}"
                )
            if ready_text in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.1)
        self.kill()
        raise ProcessError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Warm shutdown: SIGTERM to the main process, as Kubernetes sends it; SIGKILL to the
        group after ``timeout``.

        Only the main process is signalled: a SIGTERM to the whole group would kill Celery's
        pool children in the middle of a flush, which then never releases its lease.
        """
        if self._process is None:
            return
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._process = None

    def kill(self) -> None:
        """SIGKILL the whole process group, like a crashed pod."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._process = None

    def __enter__(self) -> CeleryProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def worker(
    env: dict[str, str],
    workdir: Path,
    *,
    beat: bool = True,
    concurrency: int = 2,
    name: str = "worker",
) -> CeleryProcess:
    """``celery -A workers worker`` (with the embedded beat ``-B`` for development)."""
    args = [
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--hostname={name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        args += ["-B", f"--schedule={workdir / (name + '-beat-schedule')}"]
    return CeleryProcess(name, args, env, workdir / f"{name}.log").start(" ready.")


def beat(env: dict[str, str], workdir: Path) -> CeleryProcess:
    """``celery -A workers beat``: the periodic sweep (one per deployment)."""
    args = ["beat", "--loglevel=INFO", f"--schedule={workdir / 'beat-schedule'}"]
    return CeleryProcess("beat", args, env, workdir / "beat.log").start("beat: Starting")


def flower(env: dict[str, str], workdir: Path, port: int | None = None) -> CeleryProcess:
    """``celery -A workers flower`` on loopback."""
    port = port or free_port()
    process = CeleryProcess(
        "flower",
        ["flower", "--address=127.0.0.1", f"--port={port}"],
        env,
        workdir / "flower.log",
    )
    process.url = f"http://127.0.0.1:{port}"
    return process.start("Visit me at")


def exporter(env: dict[str, str], workdir: Path, port: int | None = None) -> CeleryProcess:
    """``celery -A workers audiosync exporter`` on loopback: the fleet-wide gauges."""
    port = port or free_port()
    process = CeleryProcess(
        "exporter",
        ["audiosync", "exporter", "--address=127.0.0.1", f"--port={port}"],
        env,
        workdir / "exporter.log",
    )
    process.url = f"http://127.0.0.1:{port}"
    return process.start("audiosync exporter: the fleet-wide gauges on")
