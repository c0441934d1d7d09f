"""A GCS outage shows on the fleet's monitoring: the shard tasks' results count the failed
flushes as errors, and the gauges read from Redis tell the age of the oldest audio held and
the bytes held (the exporter serves them), sessions backing off included (a backing-off
session is not due, so the due age says nothing of it). A worker's counters have every
known series from the start.

Real valkey, fake-gcs-server behind the GCS fault proxy, a real ``celery worker`` serving
its metrics and a real exporter (``celery -A workers audiosync exporter``).
"""

from __future__ import annotations

import ast
import re
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.faults import GcsFaultProxy
from audiosync_dev.localstack import StackInfo, free_port
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.adapters.redis_store import redis_time
from backend_hooks.contract.settings import Settings
from tests.integration.commands import scrape
from tests.integration.flushing import keys
from workers import exporter, metrics, operations
from workers.store import WorkerStore

pytestmark = pytest.mark.integration
SHARD_RESULT = re.compile(r"audiosync\.flush_shard\[[^\]]+\] succeeded in [0-9.]+s: (\{.*\})")


def shard_results(log: str) -> list[dict[str, Any]]:
    """The results of the shard tasks, as the worker logs them (what Flower shows)."""
    return [ast.literal_eval(found) for found in SHARD_RESULT.findall(log)]


def first_entry_age(client: redis.Redis, stream: str) -> float:
    """Seconds since the stream's first entry was appended (its id), by Redis time."""
    [(entry_id, _)] = cast(list[tuple[bytes, Any]], client.xrange(stream, count=1))
    return redis_time(client) - int(entry_id.split(b"-")[0]) / 1000


def metrics_env(stack: StackInfo, tmp_path: Path) -> tuple[int, dict[str, str]]:
    port = free_port()
    env = {
        **stack.env(),
        "AUDIOSYNC_METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),  # this test's counters only
    }
    return port, env


def test_a_gcs_outage_shows_in_the_shard_task_results_and_the_held_audio_gauges(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with GcsFaultProxy(stack.gcs_url, error_rate=1.0) as proxy:  # every upload: 503
        port, env = metrics_env(stack, tmp_path)
        env |= {
            "STORAGE_EMULATOR_HOST": proxy.url,
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2",
            "AUDIOSYNC_LEASE_SECONDS": "6",  # an upload's retries give up within 1.5 s
        }
        client = AudioSyncClient(Settings.from_env(env))
        session = client.open_session("outage-user", "outage-conv", 16000, "standard")
        session.push(speech_like(10, 16000, seed=1), time.time() - 10)
        session.close()  # due at once
        client.close()
        sid = session.session_id
        failures, stream = keys(sid).failures, keys(sid).chunks

        with (
            processes.worker(env, tmp_path, name="outage", concurrency=2) as worker,
            processes.exporter(env, tmp_path) as fleet,
        ):
            deadline = time.monotonic() + 120
            while not (
                int(redis_client.hget(failures, "count") or 0) >= 2  # backing off
                and sum(r["flushes"] + r["errors"] for r in shard_results(worker.log.read_text()))
                >= 2  # two shard tasks that flushed have reported
            ):
                assert time.monotonic() < deadline, worker.tail()
                time.sleep(0.2)
            before = first_entry_age(redis_client, stream)
            assert fleet.url is not None
            gauges = scrape(int(fleet.url.rsplit(":", 1)[1]))
            after = first_entry_age(redis_client, stream)
            samples = scrape(port)
            size = redis_client.memory_usage(stream)
            log = worker.log.read_text(errors="replace")
        assert proxy.stats.errors >= 2

    results = [r for r in shard_results(log) if r["flushes"] + r["errors"]]
    assert all(r["errors"] >= 1 and r["flushes"] == r["objects"] == 0 for r in results), results
    shard = f"shard={keys(sid).shard}"
    assert before <= gauges[f"audiosync_oldest_audio_age_seconds{{{shard}}}"] <= after
    assert gauges[f"audiosync_bytes_held{{{shard}}}"] == size
    assert gauges[f"audiosync_held_sessions_sampled{{{shard}}}"] == 1
    assert samples["audiosync_flushes_total{outcome=failed}"] >= 1
    assert redis_client.exists(stream)  # nothing was stored, nothing lost


def test_a_fresh_worker_serves_every_known_series_at_zero(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """An alert on ``rate(audiosync_flushes_total{outcome="failed"}[5m])`` needs a series
    before the first failure: one that appears at 1 has no rate."""
    port, env = metrics_env(stack, tmp_path)
    with processes.worker(env, tmp_path, name="fresh", beat=False):
        deadline = time.monotonic() + 60
        while True:  # the server starts when the worker is ready
            try:
                samples = scrape(port)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.2)
    for outcome in metrics.FLUSH_OUTCOMES:
        assert samples[f"audiosync_flushes_total{{outcome={outcome}}}"] == 0
    for outcome in metrics.OBJECT_OUTCOMES:
        assert samples[f"audiosync_objects_flushed_total{{outcome={outcome}}}"] == 0
    for reason in metrics.FAILURE_REASONS:
        assert samples[f"audiosync_flush_failures_total{{reason={reason}}}"] == 0
    assert samples["audiosync_object_conflicts_total{}"] == 0


def backing_off(store: WorkerStore, client: redis.Redis, sid: str, seconds_ago: float) -> None:
    """A session whose audio was appended ``seconds_ago`` and whose flushes failed 8 times
    (GCS down): its due time is pushed 128 s ahead, as the failure script does it."""
    now = store.time()
    first_ms = int((now - seconds_ago) * 1000)
    for i in range(3):  # stream ids are append times
        client.xadd(
            keys(sid).chunks, {"v": "1", "kind": "end", "n": str(i)}, id=f"{first_ms + i}-0"
        )
    for _attempt in range(8):
        token = uuid.uuid4().hex
        assert store.acquire_lease(sid, token, 30)
        store.record_failure(
            sid, token, "StorageError: 503", now=store.time(), base=1.0, cap=300.0, lease_seconds=30
        )
        store.release_lease(sid, token)


def gauge_values(store: WorkerStore) -> dict[str, float]:
    return {
        f"{sample.name}{{{','.join(f'{k}={v}' for k, v in sorted(sample.labels.items()))}}}": (
            sample.value
        )
        for family in exporter.fleet_gauges(store)
        for sample in family.samples
    }


def test_the_held_audio_gauges_count_a_session_backing_off(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    store = WorkerStore(redis_client, Settings.from_env(stack.env()).due_shards)
    sid = "failing-" + uuid.uuid4().hex[:8]
    backing_off(store, redis_client, sid, seconds_ago=600)

    gauges = gauge_values(store)
    status = operations.fleet_status(store)
    shard = f"shard={keys(sid).shard}"
    assert (redis_client.zscore(keys(sid).due, sid) or 0) > store.time()  # backing off
    assert gauges[f"audiosync_due_oldest_age_seconds{{{shard}}}"] == 0
    oldest = gauges[f"audiosync_oldest_audio_age_seconds{{{shard}}}"]
    assert 600 <= oldest <= status.oldest_entry_seconds  # status read it a moment later
    assert gauges[f"audiosync_bytes_held{{{shard}}}"] == status.bytes_held > 0


def test_a_scrape_reads_a_bounded_sample_from_both_ends_of_each_due_index(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """A shard of 10 sessions, a sample of 4 a shard: the session due first (waiting past
    its due time) and the one due last (backing off) are read, the healthy middle is not;
    the bytes of the shard are scaled up from the four read."""
    store = WorkerStore(redis_client, Settings.from_env(stack.env()).due_shards)
    budget = 4 * len(store.all_shards())
    now = store.time()
    sids: list[str] = []
    while len(sids) < 10:  # ten sessions of one shard
        sid = "sampled-" + uuid.uuid4().hex[:8]
        if keys(sid).shard == 0:
            sids.append(sid)
    overdue, *healthy, failing = sids
    for sid in healthy:
        redis_client.xadd(keys(sid).chunks, {"v": "1", "kind": "end"})
        redis_client.zadd(keys(sid).due, {sid: now + 50})
    redis_client.xadd(
        keys(overdue).chunks, {"v": "1", "kind": "end"}, id=f"{int(now * 1000) - 90_000}-0"
    )
    redis_client.zadd(keys(overdue).due, {overdue: now - 30})
    backing_off(store, redis_client, failing, seconds_ago=400)

    [shard0] = [h for h in operations.held_audio(store, store.time(), budget) if h.shard == 0]
    assert shard0.sessions == 10 and shard0.sampled == 4
    assert 400 <= shard0.oldest_seconds < 500  # the failing one's, read at the far end
    sizes = {sid: int(redis_client.memory_usage(keys(sid).chunks) or 0) for sid in sids}
    first, last = min(healthy), max(healthy)  # equal due times: ordered by id
    assert shard0.bytes_sampled == sizes[overdue] + sizes[first] + sizes[last] + sizes[failing]
    assert shard0.bytes_held == round(shard0.bytes_sampled * 10 / 4)
    everything = operations.held_audio(store, store.time())  # the default sample: all of it
    assert [h.sampled for h in everything if h.shard == 0] == [10]
