"""The example pusher (examples/pusher.py) as a real uvicorn process, for the tests that
drive it (tests/integration/end_to_end/test_example_pusher.py) or start it wrong
(tests/integration/pusher/test_example_pusher_readiness.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from audiosync_dev.localstack import free_port
from tests.integration.commands import ROOT

STARTUP_TIMEOUT = 30.0


class Uvicorn:
    """``python -m uvicorn examples.pusher:app`` on a free loopback port, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "examples.pusher:app",
                    "--host=127.0.0.1",
                    f"--port={self.port}",
                ],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> Uvicorn:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "Application startup complete" not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"uvicorn did not start:\n{self.text()[-3000:]}")
            time.sleep(0.05)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, **query: str) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/audio?{urlencode(query)}"

    def terminate(self, timeout: float = 20.0) -> None:
        """SIGTERM, as Kubernetes sends it; asserts a graceful exit: uvicorn runs the lifespan
        shutdown, then exits by the signal it caught (-15) or, in older versions, with 0."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        text = self.text()
        assert code in (0, -signal.SIGTERM), text[-3000:]
        assert "Application shutdown complete." in text, text[-3000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
