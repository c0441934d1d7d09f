"""A worker SIGKILLed while it drains: a new worker finishes, nothing lost, nothing twice.

The kill lands at a random point of the flushes (whenever the first object appears); the
test checks the invariants whatever that point was: every chunk of every session stored
exactly once, every conversation sample-exact, no stream entry left.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import keys

pytestmark = pytest.mark.integration
SECRET = "killed-worker-secret-0123456789abcdef"
T0 = float(int(time.time()))  # synthetic pushes start now: the worker refuses far-off times
SESSIONS = 6
SECONDS = 130.0


def test_sigkilled_worker_loses_and_duplicates_nothing(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {
        **stack.env(),
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.3",
        "AUDIOSYNC_LEASE_SECONDS": "3",
    }
    settings = Settings.from_env(env)
    ctx = storage.StorageContext.from_settings(settings)
    keys = envelope.UserKeys(SECRET.encode())
    pushed: dict[str, tuple[str, int]] = {}  # session id -> (uid, samples)

    client = AudioSyncClient(settings)
    for i in range(SESSIONS):  # all enqueued before any worker runs
        uid, rate = f"kill-user-{i}", 16000 if i % 2 else 8000
        level = "enhanced" if i % 3 else "standard"
        session = client.open_session(uid, "kill-conv", rate, level)
        pcm = speech_like(SECONDS, rate, seed=100 + i)
        session.push(pcm, T0 + i)
        session.close()
        pushed[session.session_id] = (uid, len(pcm) // 2)

    first = processes.worker(env, tmp_path, name="doomed")
    try:
        deadline = time.monotonic() + 90
        while not any(
            storage.list_audio_chunks(f"kill-user-{i}", "kill-conv", context=ctx)
            for i in range(SESSIONS)
        ):
            assert time.monotonic() < deadline, first.tail()
            time.sleep(0.01)
    finally:
        first.kill()  # SIGKILL to the whole process group: pool children and beat too

    with processes.worker(env, tmp_path, name="successor") as second:
        deadline = time.monotonic() + 60
        while redis_client.keys("audiosync:{s*}:due") or redis_client.keys("audiosync:{*:chunks"):
            assert time.monotonic() < deadline, second.tail()
            time.sleep(0.2)

    for session_id, (uid, samples) in pushed.items():
        seqs: list[int] = []
        for item in storage.list_audio_chunks(uid, "kill-conv", context=ctx):
            data = ctx.bucket.download(item["path"])
            if naming.parse_object_name(item["path"]).sealed:
                data = b"".join(
                    r.plaintext for r in envelope.open_records(keys, uid, data, name=item["path"])
                )
            seqs += [
                c.info.seq for c in container.parse_chunks(data) if c.info.session_id == session_id
            ]
        assert sorted(seqs) == list(range(len(seqs))), f"{uid}: {sorted(seqs)}"  # each once
        merged = storage.download_merged_audio(uid, "kill-conv", context=ctx)
        assert merged.sample_count == samples, uid


def test_sigterm_to_the_worker_lets_its_running_flush_end_cleanly(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Warm shutdown mid-flush: the flush ends (its upload times out, counted as a failure,
    or it hands back before uploading) and releases its lease, instead of dying with it
    held for the lease time."""
    with socket.socket() as blackhole:  # GCS that accepts connections and never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        env = {
            **stack.env(),
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2",
            "AUDIOSYNC_LEASE_SECONDS": "6",  # uploads get 3 s
        }
        settings = Settings.from_env(env)
        session = AudioSyncClient(settings).open_session("term-user", "term-conv", 8000, "standard")
        session.push(speech_like(5, 8000, seed=1), time.time())
        session.close()
        sid = session.session_id
        lease = keys(sid).lease

        worker = processes.worker(env, tmp_path, name="terminated")
        deadline = time.monotonic() + 90
        while not redis_client.exists(lease):  # the flush has begun its upload
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.02)
        started = time.monotonic()
        worker.stop(timeout=20)
        stopped = time.monotonic() - started

    assert stopped < 15, f"warm shutdown took {stopped:.1f} s"
    assert not redis_client.exists(lease)  # released by the flush itself, not by its TTL
    # Either the upload had begun (it times out: one failure counted) or the stop came
    # before it (the flush handed the session back): both end the flush cleanly.
    failures = redis_client.hget(keys(sid).failures, "count")
    assert failures == b"1" or "handed back" in worker.log.read_text(errors="replace")
    assert redis_client.xlen(keys(sid).chunks) == 2  # nothing lost
