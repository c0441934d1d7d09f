"""``celery -A workers audiosync status|replay`` against the real servers.

The commands run as operators run them: ``python -m celery -A workers audiosync ...`` in
a subprocess, on the session's valkey and fake-gcs-server (their env is in os.environ).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from audiosync_dev.localstack import StackInfo
from backend_hooks import AudioSyncClient
from backend_hooks.contract.settings import Settings
from tests.integration.commands import as_json, celery
from tests.integration.flushing import keys

pytestmark = pytest.mark.integration


def session_with_chunks(settings: Settings, uid: str, seconds: int = 10) -> str:
    client = AudioSyncClient(settings)
    session = client.open_session(uid, "conv", 8000, "standard")
    session.push(bytes(2 * 8000 * seconds), time.time() - seconds)
    return session.session_id  # its chunks stay in Redis: no worker runs in these tests


def test_the_audiosync_commands_are_listed_by_celery(stack: StackInfo) -> None:
    done = celery("--help", env=stack.env())
    assert done.returncode == 0 and "audiosync" in done.stdout, done.stdout
    done = celery("audiosync", "--help", env=stack.env())
    assert "status" in done.stdout and "replay" in done.stdout


def test_status_reports_lag_holdings_and_quarantine(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    env = stack.env()
    settings = Settings.from_env(env)
    sid = session_with_chunks(settings, "cli-status")
    redis_client.zadd(keys(sid).due, {sid: time.time() - 30})  # due for 30 s: a lagging fleet
    redis_client.xadd(keys(sid).quarantine, {"reason": "parked after 16 failed flushes"})
    redis_client.zadd(keys(sid).quarantine_index, {sid: 1})

    report = as_json(celery("audiosync", "status", "--json", env=env))
    assert [s["shard"] for s in report["shards"]] == [*range(settings.due_shards), -1]
    [shard] = [s for s in report["shards"] if s["sessions"]]
    assert shard["shard"] == keys(sid).shard
    assert shard["sessions"] == 1 and shard["due"] == 1
    assert 25 < shard["oldest_due_seconds"] < 60 and report["lag_seconds"] > 25
    assert report["streams"] == 1 and report["entries"] == 2 and report["bytes_held"] > 0
    assert report["quarantined_entries"] == 1 and report["parked_sessions"] == 1

    probe_ok = celery("audiosync", "status", "--max-lag", "600", env=env)
    probe_late = celery("audiosync", "status", "--max-lag", "5", env=env)
    assert probe_ok.returncode == 0 and "1 due" in probe_ok.stdout
    assert probe_late.returncode == 2  # a lagging fleet fails the probe


def test_replay_flushes_now_and_requeues_quarantine_once(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    env = stack.env()
    settings = Settings.from_env(env)
    sid = session_with_chunks(settings, "cli-replay")
    redis_client.zadd(keys(sid).due, {sid: time.time() + 3600})
    fields: dict[Any, Any] = {
        "reason": "rate 0 is not one of the Opus rates",
        "entry_id": "1-0",
        "at_ms": "1",
    }
    redis_client.xadd(keys(sid).quarantine, {**fields, "f:v": "1", "f:kind": "end"})
    redis_client.xadd(keys(sid).quarantine, {**fields, "reason": "seq 3 repeats", "f:v": "1"})
    redis_client.zadd(keys(sid).quarantine_index, {sid: 2})

    dry = as_json(
        celery("audiosync", "replay", "--user", "cli-replay", "--dry-run", "--json", env=env)
    )
    assert dry["flush_now"] == [sid]
    assert (redis_client.zscore(keys(sid).due, sid) or 0) > time.time() + 3000  # dry: no change
    now = as_json(celery("audiosync", "replay", "--session", sid, "--json", env=env))
    assert now["flush_now"] == [sid]
    assert (redis_client.zscore(keys(sid).due, sid) or 0) <= time.time() + 1

    args = ("audiosync", "replay", "--quarantined", "--reason", "rate 0", "--json")
    assert as_json(celery(*args, "--dry-run", env=env))["sessions"] == {sid: 1}
    assert redis_client.xlen(keys(sid).quarantine) == 2
    assert as_json(celery(*args, env=env))["sessions"] == {sid: 1}
    assert redis_client.xlen(keys(sid).quarantine) == 1  # the other reason stays
    assert redis_client.xlen(keys(sid).chunks) == 3  # 2 chunks + the entry put back
    assert as_json(celery(*args, env=env))["sessions"] == {}  # twice: nothing new

    missing = celery("audiosync", "replay", env=env)
    assert missing.returncode != 0 and "--quarantined" in missing.stderr
