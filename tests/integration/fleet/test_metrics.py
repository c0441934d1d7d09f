"""A real worker with ``AUDIOSYNC_METRICS_PORT`` serves Prometheus text: the pool's flush
counters summed across its processes, and nothing read from Redis (the fleet-wide gauges
are the exporter's: test_fleet_gauges_exporter.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo, free_port
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.contract.settings import Settings
from tests.integration.commands import scrape
from tests.integration.flushing import keys

pytestmark = pytest.mark.integration


#: The gauges only the exporter serves (``celery -A workers audiosync exporter``).
FLEET_WIDE = (
    "audiosync_due_sessions",
    "audiosync_due_oldest_age_seconds",
    "audiosync_quarantined_sessions",
    "audiosync_redis_up",
    "audiosync_redis_noeviction",
    "audiosync_oldest_audio_age_seconds",
    "audiosync_bytes_held",
    "audiosync_held_sessions_sampled",
)


def test_a_worker_serves_its_flush_counters_and_no_fleet_wide_gauge(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **stack.env(),
        "AUDIOSYNC_METRICS_PORT": str(port),
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2",
    }
    settings = Settings.from_env(env)
    client = AudioSyncClient(settings)
    for i in range(3):
        session = client.open_session(f"metrics-{i}", "conv", 16000, "standard")
        session.push(speech_like(20, 16000, seed=i), time.time() - 20)
        session.close()
    client.close()

    with processes.worker(env, tmp_path, name="metrics", concurrency=2, beat=False) as worker:
        with processes.beat(env, tmp_path):
            deadline = time.monotonic() + 60
            while redis_client.keys("audiosync:{*:chunks"):
                assert time.monotonic() < deadline, worker.tail()
                time.sleep(0.2)
        # Beat is stopped; once no shard task is queued or running (no dispatch hold left),
        # every flush is counted and nothing is left to claim the session added below.
        deadline = time.monotonic() + 60
        while redis_client.keys("audiosync:*dispatch*"):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        redis_client.zadd(keys("lagging-session").due, {"lagging-session": time.time() - 42})
        # (a due session: a worker that read the due indexes would report it)
        samples = scrape(port)

    assert samples["audiosync_objects_flushed_total{outcome=created}"] == 3
    assert samples["audiosync_chunks_flushed_total{}"] == 12  # 3 sessions x 4 chunks of 5 s
    assert samples["audiosync_bytes_flushed_total{}"] > 0
    assert samples["audiosync_flushes_total{outcome=ok}"] >= 3
    assert samples["audiosync_upload_seconds_count{}"] == 3
    served = {name.split("{", 1)[0] for name in samples}
    assert served.isdisjoint(FLEET_WIDE), served & set(FLEET_WIDE)
