"""The example pusher (examples/pusher.py) started without ENCRYPTION_SECRET fails its
start-up with the reason (docs/INTEGRATION.md: a bad deployment fails its readiness),
instead of starting and closing every `enhanced` socket. A real uvicorn process."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo
from tests.integration.example_pusher import STARTUP_TIMEOUT, Uvicorn

pytestmark = pytest.mark.integration


def test_without_the_secret_the_example_pusher_fails_its_startup(
    stack: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENCRYPTION_SECRET", raising=False)
    server = Uvicorn({**stack.env(), "AUDIOSYNC_ROLLOUT_PERCENT": "100"}, tmp_path / "log")
    try:
        code = server.process.wait(STARTUP_TIMEOUT)
    finally:
        server.kill()
    text = server.text()
    assert code != 0, text[-3000:]
    assert "Application startup failed" in text, text[-3000:]
    assert "ConfigError: ENCRYPTION_SECRET is not set" in text, text[-3000:]
