"""``celery -A workers audiosync exporter``: one process serves the fleet-wide gauges (the
lag per shard, the audio held, the quarantine, Redis up), read from Redis at most once per
AUDIOSYNC_EXPORTER_CACHE_SECONDS, and stops cleanly on SIGTERM."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import cast

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo, free_port
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.adapters.redis_store import redis_time
from backend_hooks.contract.redis_keys import quarantine_index_key
from backend_hooks.contract.settings import Settings
from tests.integration.commands import scrape
from tests.integration.flushing import keys
from workers import exporter, operations
from workers.store import WorkerStore

pytestmark = pytest.mark.integration


def _by_name(samples: dict[str, float], name: str) -> dict[str, float]:
    return {key: value for key, value in samples.items() if key.startswith(name + "{")}


def test_the_exporter_serves_the_lag_of_pushed_sessions_no_worker_flushed(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Three sessions pushed, two closed (due at once), one still open (due in a batch
    window); no worker runs. The exporter reports them where they are, with their ages."""
    env = stack.env()
    client = AudioSyncClient(Settings.from_env(env))
    sessions = [client.open_session(f"exported-{i}", "conv", 16000, "standard") for i in range(3)]
    for i, session in enumerate(sessions):
        session.push(speech_like(10, 16000, seed=i), time.time() - 10)
    for session in sessions[:2]:
        session.close()
    pushed_by = redis_time(redis_client)
    shards = [keys(s.session_id).shard for s in sessions]
    held_bytes = {
        shard: sum(
            int(redis_client.memory_usage(keys(s.session_id).chunks) or 0)
            for s in sessions
            if keys(s.session_id).shard == shard
        )
        for shard in set(shards)
    }

    with processes.exporter(env, tmp_path) as process:
        assert process.url is not None
        samples = scrape(int(process.url.rsplit(":", 1)[1]))
        scraped_by = redis_time(redis_client)
    client.close()

    assert samples["audiosync_redis_up{}"] == 1
    assert sum(_by_name(samples, "audiosync_due_sessions").values()) == 2
    assert sum(_by_name(samples, "audiosync_sessions_held").values()) == 3
    for shard in set(shards):
        due_here = sum(1 for s, sh in zip(sessions[:2], shards, strict=False) if sh == shard)
        assert samples[f"audiosync_due_sessions{{shard={shard}}}"] == due_here
        assert samples[f"audiosync_bytes_held{{shard={shard}}}"] == held_bytes[shard] > 0
        assert samples[f"audiosync_held_sessions_sampled{{shard={shard}}}"] == shards.count(shard)
        oldest = samples[f"audiosync_oldest_audio_age_seconds{{shard={shard}}}"]
        assert 0 < oldest <= scraped_by - pushed_by + 60  # appended while pushing, 10 s or so
    waited = max(_by_name(samples, "audiosync_due_oldest_age_seconds").values())
    assert 0 < waited <= scraped_by - pushed_by + 60
    assert samples["audiosync_quarantined_sessions{}"] == 0
    policy = redis_client.info("memory")["maxmemory_policy"]
    assert samples["audiosync_redis_noeviction{}"] == int(policy == "noeviction")


def test_the_exporter_stops_cleanly_on_sigterm(stack: StackInfo, tmp_path: Path) -> None:
    process = processes.exporter(stack.env(), tmp_path)
    process.stop()  # SIGTERM, as Kubernetes sends it; SIGKILL only after 30 s
    assert "audiosync exporter: stopped" in process.log.read_text(), process.tail()


def test_the_exporter_takes_its_port_from_the_metrics_port_setting(
    stack: StackInfo, tmp_path: Path
) -> None:
    port = free_port()
    env = {**stack.env(), "AUDIOSYNC_METRICS_PORT": str(port)}
    process = processes.CeleryProcess(
        "exporter", ["audiosync", "exporter"], env, tmp_path / "exporter.log"
    )
    with process.start("audiosync exporter: the fleet-wide gauges on"):
        assert scrape(port)["audiosync_redis_up{}"] == 1


def _due_index_reads(client: redis.Redis) -> int:
    """ZCOUNT calls Redis served so far: only the lag per shard asks it."""
    stats = cast(dict[str, dict[str, int]], client.info("commandstats"))
    return int(stats.get("cmdstat_zcount", {}).get("calls", 0))


def test_scrapes_within_the_cache_period_read_redis_once(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """Several Prometheus replicas scraping: one read of Redis per cache period."""
    store = WorkerStore(redis_client, Settings.from_env(stack.env()).due_shards)
    shards = len(store.all_shards())
    collector = exporter.FleetCollector(lambda: store, cache_seconds=3600, read_seconds=30)
    try:
        before = _due_index_reads(redis_client)
        scrapes = [list(collector.collect()) for _ in range(5)]
        after = _due_index_reads(redis_client)
    finally:
        collector.close()
    assert after - before == shards  # one ZCOUNT a shard: one read for five scrapes
    assert all(len(s) == len(scrapes[0]) for s in scrapes)


def test_a_scrape_answers_redis_down_when_redis_is_away(tmp_path: Path) -> None:
    """Nothing listens at the URL: the scrape says so, within the read budget."""
    settings = Settings.from_env(
        {"AUDIOSYNC_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, role="fleet"
    )
    gauges = {m.name: m for m in exporter.FleetCollector.from_settings(settings).collect()}
    assert gauges["audiosync_redis_up"].samples[0].value == 0
    assert "audiosync_due_sessions" not in gauges


def test_the_quarantined_sessions_are_counted_across_shards_up_to_the_limit(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """Three quarantined sessions in three shards and an index entry whose quarantine is
    empty (a refused quarantine bumps the index): 3, or the limit when it is lower."""
    store = WorkerStore(redis_client, Settings.from_env(stack.env()).due_shards)
    sids: dict[int, str] = {}
    while len(sids) < 4:
        sid = "quarantined-" + uuid.uuid4().hex[:8]
        sids.setdefault(keys(sid).shard, sid)
    for i, (shard, sid) in enumerate(sorted(sids.items())):
        redis_client.zadd(quarantine_index_key(shard), {sid: 0})
        if i < 3:
            redis_client.xadd(keys(sid).quarantine, {"reason": "a test"})
    assert operations.quarantined_count(store, 100) == 3
    assert operations.quarantined_count(store, 2) == 2  # the first two index entries
    gauges = {m.name: m for m in exporter.fleet_gauges(store)}
    assert gauges["audiosync_quarantined_sessions"].samples[0].value == 3
