"""The fleet's Prometheus metrics (workers/metrics.py, the hooks in workers/celery_app.py,
the recording in workers/tasks.py): every worker's flushes counted, failed ones too, the
quarantine gauge agreeing with status, and no metrics directory left by a CLI run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY

from audiosync_dev.localstack import StackInfo, free_port
from backend_hooks import AudioSyncClient
from backend_hooks.contract.settings import Settings
from tests.integration.commands import ROOT, celery, scrape
from tests.integration.flushing import keys
from workers import exporter, operations, tasks
from workers.context import WorkerContext
from workers.store import LeaseLostError, WorkerStore

pytestmark = pytest.mark.integration


WORKER_MAIN = textwrap.dedent(
    """
    import sys, time
    from workers import celery_app, metrics
    celery_app._prepare_metrics()  # what worker_init runs before the pool forks
    metrics._metrics().flushes.labels(outcome="ok").inc(int(sys.argv[1]))  # its pool flushed
    celery_app._serve_metrics()  # what worker_ready runs in the worker's main process
    print("ready", flush=True)
    sys.stdin.read()  # until the test is done
    """
)


def start_worker_main(env: dict[str, str], flushes: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_MAIN, str(flushes)],
        env={**os.environ, **env},
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def test_two_workers_on_one_host_both_have_their_flushes_counted(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """Two ``celery worker`` processes on one host with the same AUDIOSYNC_METRICS_PORT
    (one environment for the fleet, e.g. two systemd units). The second cannot bind and
    logs "another worker on this host serves it already": then that one must serve the
    second's counters too. Each has its own temporary PROMETHEUS_MULTIPROC_DIR, so the
    second worker's flushes are counted nowhere."""
    port = free_port()
    env = {**stack.env(), "AUDIOSYNC_METRICS_PORT": str(port)}
    first = start_worker_main(env, 1)
    second = start_worker_main(env, 5)
    try:
        samples = scrape(port)
    finally:
        for proc in (first, second):
            proc.communicate(timeout=30)
    assert samples["audiosync_flushes_total{outcome=ok}"] == 6, (
        f"the host's workers flushed 6 times; /metrics says "
        f"{samples['audiosync_flushes_total{outcome=ok}']}"
    )


@pytest.fixture
def writes_refused(redis_client: redis.Redis) -> Iterator[None]:
    """Redis refuses every write, the fleet's allow-oom scripts too (NOREPLICAS: a primary
    that must see a replica to write, and sees none), reads work."""
    old = redis_client.config_get("min-replicas-to-write")["min-replicas-to-write"]
    redis_client.config_set("min-replicas-to-write", "1")
    try:
        yield
    finally:
        redis_client.config_set("min-replicas-to-write", str(old))


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_a_flush_that_fails_on_redis_is_counted(
    stack: StackInfo,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    writes_refused: None,
) -> None:
    """Redis refuses writes (a primary without the replicas it must write to; or demoted to
    a read-only replica by a failover). Every flush task fails, yet audiosync_redis_up
    stays 1 and neither audiosync_flushes_total nor audiosync_flush_failures_total moves:
    the dashboard shows a healthy, idle fleet."""
    ctx = WorkerContext.from_settings(Settings.from_env(stack.env()))
    monkeypatch.setattr(tasks, "get_context", lambda: ctx)
    before = sum(
        _value("audiosync_flushes_total", {"outcome": o})
        for o in ("ok", "skipped", "lease_lost", "handed_back", "failed")
    )
    failed_before = _value("audiosync_flushes_total", {"outcome": "failed"})

    with pytest.raises(redis.RedisError):
        tasks.flush_session("metrics-oom-session")  # what the pool process runs

    up = {
        m.name: m.samples[0].value
        for m in exporter.fleet_gauges(ctx.store)
        if m.name == "audiosync_redis_up"
    }
    assert up["audiosync_redis_up"] == 1  # reads work: the scrape sees Redis as up
    after = sum(
        _value("audiosync_flushes_total", {"outcome": o})
        for o in ("ok", "skipped", "lease_lost", "handed_back", "failed")
    )
    assert after == before + 1, "a failed flush task is not counted in audiosync_flushes_total"
    assert _value("audiosync_flushes_total", {"outcome": "failed"}) == failed_before + 1


def test_the_quarantined_sessions_gauge_agrees_with_status(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """A zombie flush (its lease taken over) tries to quarantine an entry: the script
    refuses, nothing moves, but the quarantine index was bumped first. ``status`` skips
    the empty quarantine (0 sessions); the gauge counts the index (1) for ever."""
    settings = Settings.from_env(stack.env())
    client = AudioSyncClient(settings)
    session = client.open_session("metrics-gauge", "conv", 8000, "standard")
    session.push(bytes(2 * 8000 * 5), time.time() - 5)
    client.close()
    sid = session.session_id
    store = WorkerStore(
        redis.Redis.from_url(stack.redis_url), Settings.from_env(stack.env()).due_shards
    )
    [(entry_id, _)] = store.read_raw(sid, 1)
    assert store.acquire_lease(sid, "successor", 30)
    with pytest.raises(LeaseLostError):
        store.quarantine(sid, "zombie", [(entry_id, "rate 0 is not one of the Opus rates")])

    status = operations.fleet_status(store)
    gauges = {
        m.name: m.samples[0].value
        for m in exporter.fleet_gauges(store)
        if m.name == "audiosync_quarantined_sessions"
    }
    assert status.quarantined_sessions == 0 and redis_client.xlen(keys(sid).quarantine) == 0
    assert gauges["audiosync_quarantined_sessions"] == status.quarantined_sessions, (
        f"gauge {gauges['audiosync_quarantined_sessions']} vs status "
        f"{status.quarantined_sessions}: an alert on the gauge never clears"
    )


def test_a_cli_run_leaves_no_metrics_directory_behind(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The fleet's environment carries AUDIOSYNC_METRICS_PORT; every process importing
    workers (``celery audiosync status`` as a probe every 10 s, beat, a worker restart)
    creates a fresh audiosync-metrics-* directory with its .db files, never removed."""
    env = {
        **stack.env(),
        "AUDIOSYNC_METRICS_PORT": str(free_port()),
        "TMPDIR": str(tmp_path),
    }
    for _ in range(2):
        done = celery("audiosync", "status", "--json", env=env, drop=("PROMETHEUS_MULTIPROC_DIR",))
        assert done.returncode == 0, done.stderr[-500:]
    left = sorted(p.name for p in tmp_path.glob("audiosync-metrics-*"))
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.db"))
    assert not left, f"left behind by two status runs: {left}, {files}"
