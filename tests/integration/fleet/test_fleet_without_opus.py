"""The worker fleet needs no libopus: its processes import and flush without opuslib.

A directory holding an ``opuslib`` package that raises ImportError goes first on
PYTHONPATH, so in those processes ``import opuslib`` fails as it does on a host without
the library. The app, its tasks and beat schedule, Celery's own commands and a real
worker must not care; the worker flushes ``.opus`` and ``.opus.enc`` sessions that this
test's pusher (which has opuslib) wrote, and they read back sample-exact.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import envelope
from backend_hooks.contract.settings import Settings
from tests.integration.commands import run_python

pytestmark = pytest.mark.integration
SECRET = "fleet-without-opus-secret-0123456789"


@pytest.fixture
def no_opus(tmp_path: Path) -> dict[str, str]:
    """Environment in which ``import opuslib`` fails, for the processes started with it."""
    blocker = tmp_path / "no-opus" / "opuslib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        'raise ImportError("opuslib is not installed on this host (blocked by the test)")\n'
    )
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep)}


def test_the_fleet_imports_without_opuslib(stack: StackInfo, no_opus: dict[str, str]) -> None:
    env = {**stack.env(), **no_opus}
    blocked = run_python(["-c", "import opuslib"], env)
    assert blocked.returncode != 0 and "blocked by the test" in blocked.stderr  # it bites

    imports = run_python(
        [
            "-c",
            "import sys\n"
            "import workers, workers.tasks, workers.celeryconfig\n"
            "from workers import app\n"
            "app.loader.import_default_modules()\n"
            "assert 'audiosync-sweep' in app.conf.beat_schedule\n"
            "assert {'audiosync.sweep', 'audiosync.flush_session'} <= set(app.tasks)\n"
            "import flower.command\n"  # what `celery -A workers flower` loads
            "assert 'opuslib' not in sys.modules\n",
        ],
        env,
    )
    assert imports.returncode == 0, imports.stderr
    report = run_python(["-m", "celery", "-A", "workers", "report"], env)  # app, loader, settings
    assert report.returncode == 0, report.stderr
    assert "audiosync-sweep" in report.stdout


def test_a_worker_without_libopus_flushes_standard_and_enhanced_sessions(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path, no_opus: dict[str, str]
) -> None:
    env = {
        **stack.env(),
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2",
    }
    settings = Settings.from_env(env)
    client = AudioSyncClient(settings)
    pushed = {}
    for level, rate in (("standard", 16000), ("enhanced", 8000)):
        uid = f"no-opus-{level}"
        session = client.open_session(uid, "conv", rate, level)
        pcm = speech_like(70, rate, seed=rate)
        session.push(pcm, time.time() - 70)
        session.close()
        pushed[uid] = len(pcm) // 2
    client.close()

    with processes.worker({**env, **no_opus}, tmp_path, name="no-opus") as worker:
        deadline = time.monotonic() + 60
        while redis_client.keys("audiosync:{*:chunks"):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        log = worker.log.read_text(errors="replace")
    assert "Traceback" not in log and "ImportError" not in log, log[-3000:]

    ctx = storage.StorageContext.from_settings(settings)
    for uid, samples in pushed.items():
        items = storage.list_audio_chunks(uid, "conv", context=ctx)
        assert {i["path"].rsplit(".", 1)[-1] for i in items} == (
            {"enc"} if "enhanced" in uid else {"opus"}
        )
        merged = storage.download_merged_audio(uid, "conv", context=ctx)
        assert merged.sample_count == samples, uid
    assert isinstance(ctx.keys, envelope.UserKeys)


def test_the_fleet_extra_installs_no_codec() -> None:
    """What ``pip install '.[fleet]'`` asks for, from the installed metadata: no opuslib."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    wanted: dict[str, set[str]] = {}
    for text in requires("audiosync") or []:
        req = Requirement(text)
        for role in ("fleet", "pusher", "reader", "dev", None):
            env = {"extra": role or ""}
            if req.marker is None or req.marker.evaluate(env):
                wanted.setdefault(str(role), set()).add(req.name)
    fleet = wanted["None"] | wanted["fleet"]
    assert "opuslib" not in fleet and {"celery", "flower", "google-cloud-storage"} <= fleet
    assert "opuslib" in wanted["pusher"] and "celery" not in wanted["None"] | wanted["pusher"]
    assert "opuslib" in wanted["reader"]
