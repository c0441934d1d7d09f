"""The spool drainer as a real process (``python -m backend_hooks.spool_cli drain --watch``,
its log in a file, its metrics scraped) and the dead pushers whose spools it drains:
shared by the drainer's tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from audiosync_dev.localstack import free_port
from backend_hooks.contract.redis_keys import SessionKeys
from tests.integration.commands import ROOT, scrape
from tests.integration.pusher.pusher_outage import spooling_pusher, wait_for

CHUNK = 5 * 8000  # samples of one 5 s chunk of the spooling pusher


class DrainerProcess:
    """``python -m backend_hooks.spool_cli drain --watch`` with its log in a file."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *args: str,
        program: tuple[str, ...] = ("-m", "backend_hooks.spool_cli"),
    ) -> None:
        self.port = free_port()
        self.log = log
        command = [sys.executable, *program, "drain", "--watch"]
        # The drainer appends sealed files as they are: it needs no encryption key.
        full_env = {k: v for k, v in {**os.environ, **env}.items() if k != "ENCRYPTION_SECRET"}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--metrics-port", str(self.port), *args],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert wait_for(lambda: "watching" in self.text() or self.process.poll() is not None, 60)
        assert self.process.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        samples = scrape(self.port)
        return {name.split("{", 1)[0]: value for name, value in samples.items()}

    def scrape(self) -> dict[str, float]:
        """Every sample, labels included (``name{label=value}``)."""
        return scrape(self.port)

    def metric(self, name: str) -> float:
        return self.metrics()[name]

    def terminate(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def drainers(
    env: dict[str, str],
    tmp_path: Path,
    count: int,
    *args: str,
    program: tuple[str, ...] = ("-m", "backend_hooks.spool_cli"),
) -> Iterator[list[DrainerProcess]]:
    started: list[DrainerProcess] = []
    try:
        for k in range(count):
            log = tmp_path / f"drainer-{k}.log"
            started.append(DrainerProcess(env, log, *args, program=program))
        yield started
    finally:
        for drainer in started:
            drainer.kill()


def dead_pushers(env: dict[str, str], count: int, chunks: int) -> list[SessionKeys]:
    """``count`` pusher processes that spooled ``chunks`` chunks each (Redis is stopped),
    then were SIGKILLed: their spool is a dead pusher's."""
    keys = []
    for _ in range(count):
        proc, session = spooling_pusher("spool", chunks, env)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        keys.append(session)
    return keys


def chunks(count: int) -> list[tuple[str, int, int]]:
    """A killed pusher's session: its chunks, in order, and no end marker."""
    return [("chunk", seq, CHUNK) for seq in range(count)]
