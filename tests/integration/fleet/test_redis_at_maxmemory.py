"""The stream store at its memory limit: flushes free memory, so they must run there.

With ``maxmemory-policy noeviction`` (what the docs require) Redis refuses every command
that may grow memory once ``used_memory`` is above ``maxmemory``: the pusher's appends,
and also a lease's ``SET``, a claim's ``ZADD``, a dispatch hold. The fleet's scripts run
with ``allow-oom`` (workers/store.py), so a real worker drains a full store and appends
are taken again. A store that may evict is reported: ``status``, the
``audiosync_redis_noeviction`` gauge and a WARNING in the worker's log.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo, StandaloneValkey
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, Session
from backend_hooks.contract import redis_keys
from backend_hooks.contract.entries import KIND_END, NewEntry
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.appender import Appender
from tests.integration.commands import as_json, celery
from tests.integration.flushing import stored_seqs
from workers import exporter
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
RATE = 16000
SESSIONS = 6
FIRST_CHUNKS = 12  # 60 s each, pushed before the limit is set
HEADROOM = 300_000  # bytes of maxmemory above what the store uses when the limit is set
SLACK = 64_000  # bytes used above the limit once the store is full


def _memory(client: redis.Redis) -> tuple[int, int]:
    info = client.info("memory")
    return int(info["used_memory"]), int(info["maxmemory"])


def _store_env(stack: StackInfo, store: StandaloneValkey) -> dict[str, str]:
    """The stream store on ``store``; Celery's broker stays the stack's valkey, apart from
    the store as docs/ARCHITECTURE.md ("Redis memory") asks."""
    return {
        **stack.env(),
        "AUDIOSYNC_REDIS_URL": store.url,
        "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": "1",
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.5",
    }


def _gauges(ctx: WorkerContext) -> dict[str, float]:
    """The gauges a scrape reads from Redis (the first sample of each)."""
    collected = exporter.fleet_gauges(ctx.store)
    return {m.name: m.samples[0].value for m in collected if m.samples}


def _refused_append(client: redis.Redis) -> BaseException | None:
    """What Redis answers to the pusher's append of an end marker for a new session."""
    keys = redis_keys.SessionKeys("probe-session", 0)
    entry = NewEntry(kind=KIND_END, uid="probe", cid="probe", enq_us=0)
    try:
        Appender(client).append(keys, [entry], first_n=0, urgent=False, max_age_seconds=1)
    except redis.RedisError as exc:
        return exc
    client.delete(keys.chunks, keys.appended)  # taken: leave nothing behind
    client.zrem(redis_keys.due_key(0), "probe-session")
    return None


def _fill_until_refused(client: redis.Redis, sessions: list[Session], chunk_at: list[float]) -> int:
    """Push 5 s chunks, session by session, until Redis refuses one (held by the pusher);
    returns how many were pushed."""
    audio = speech_like(5, RATE, seed=7)
    for pushed in range(2000):
        i = pushed % len(sessions)
        sessions[i].push(audio, chunk_at[i])
        chunk_at[i] += 5
        if sessions[i].unsent_chunks:
            return pushed + 1
    used, limit = _memory(client)
    raise AssertionError(f"2000 chunks pushed and none refused: used {used} of {limit}")


def test_a_full_store_drains_and_takes_appends_again(
    stack: StackInfo, redis_client: redis.Redis, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """(``redis_client``: the stack's valkey, the broker here, emptied of older tasks.)"""
    env = _store_env(stack, own_redis)
    store = redis.Redis.from_url(own_redis.url)
    store.config_set("maxmemory-policy", "noeviction")
    pusher = AudioSyncClient(Settings.from_env(env))
    start = time.time()
    sessions = [pusher.open_session(f"full-{i}", "conv", RATE, "standard") for i in range(SESSIONS)]
    first = speech_like(5 * FIRST_CHUNKS, RATE, seed=3)
    for session in sessions:
        session.push(first, start)
    used, _ = _memory(store)
    store.config_set("maxmemory", str(used + HEADROOM))
    chunk_at = [start + 5 * FIRST_CHUNKS] * SESSIONS
    pushed = _fill_until_refused(store, sessions, chunk_at)
    # Full: used_memory breathes by a few KB (client buffers), so the limit goes just under
    # what is used now and stays there, and no append slips in before the worker runs.
    used, _ = _memory(store)
    store.config_set("maxmemory", str(used - SLACK))
    used, limit = _memory(store)
    assert used > limit, f"used {used}, maxmemory {limit}"
    refused = _refused_append(store)
    assert isinstance(refused, redis.exceptions.OutOfMemoryError), refused

    with processes.worker(env, tmp_path, name="at-the-limit") as worker:
        deadline = time.monotonic() + 120
        while any(s.unsent_chunks for s in sessions):  # appends are taken again
            assert time.monotonic() < deadline, f"{_memory(store)}\n{worker.tail()}"
            time.sleep(0.2)
        for session in sessions:
            session.close()
        pusher.close()
        streams = redis_keys.session_key_pattern("chunks")
        while store.keys(streams) or store.keys(redis_keys.DUE_KEY_PATTERN):
            assert time.monotonic() < deadline, f"{_memory(store)}\n{worker.tail()}"
            time.sleep(0.2)

    assert _refused_append(store) is None  # below the limit again
    ctx = WorkerContext.from_settings(Settings.from_env(env))
    total = SESSIONS * FIRST_CHUNKS + pushed
    for i in range(SESSIONS):
        chunks = FIRST_CHUNKS + pushed // SESSIONS + (i < pushed % SESSIONS)
        assert stored_seqs(ctx, f"full-{i}", "conv") == list(range(chunks)), f"session {i}"
    assert sum(len(stored_seqs(ctx, f"full-{i}", "conv")) for i in range(SESSIONS)) == total


def test_a_store_that_may_evict_is_reported(
    stack: StackInfo, redis_client: redis.Redis, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    env = _store_env(stack, own_redis)
    store = redis.Redis.from_url(own_redis.url)
    store.config_set("maxmemory-policy", "allkeys-lru")
    node = f"127.0.0.1:{own_redis.port}"

    report = as_json(celery("audiosync", "status", "--json", env=env))
    assert report["maxmemory_policy"] == {node: "allkeys-lru"}
    assert len(report["warnings"]) == 1 and "not noeviction" in report["warnings"][0]
    text = celery("audiosync", "status", env=env).stdout
    assert f"WARNING: the stream store at {node} has maxmemory-policy allkeys-lru" in text

    ctx = WorkerContext.from_settings(Settings.from_env(env))
    assert _gauges(ctx)["audiosync_redis_noeviction"] == 0

    with processes.worker(env, tmp_path, name="evicting", beat=False) as worker:
        deadline = time.monotonic() + 90
        while "has maxmemory-policy allkeys-lru" not in worker.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
    assert "WARNING" in next(
        line
        for line in worker.log.read_text(errors="replace").splitlines()
        if "has maxmemory-policy allkeys-lru" in line
    )

    store.config_set("maxmemory-policy", "noeviction")
    report = as_json(celery("audiosync", "status", "--json", env=env))
    assert report["warnings"] == []
    assert _gauges(ctx)["audiosync_redis_noeviction"] == 1
