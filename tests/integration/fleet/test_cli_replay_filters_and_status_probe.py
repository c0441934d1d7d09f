"""``celery -A workers audiosync status|replay`` (workers/cli/, workers/operations.py):
replay's filters move exactly what they match, a dry run reports what the real run moves,
and status probes what is held, needing only Redis and saying when it is down. Each test
states the behaviour an operator relies on.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import cast

import pytest
import redis

from audiosync_dev.localstack import StackInfo, free_port
from backend_hooks import AudioSyncClient
from backend_hooks.contract.settings import Settings
from tests.integration.commands import as_json, celery
from tests.integration.flushing import keys
from workers.store import WorkerStore

pytestmark = pytest.mark.integration


def pushed(settings: Settings, uid: str, seconds: int = 10) -> str:
    client = AudioSyncClient(settings)
    session = client.open_session(uid, "conv", 8000, "standard")
    session.push(bytes(2 * 8000 * seconds), time.time() - seconds)
    client.close()
    return session.session_id


def park(store: WorkerStore, sid: str, reason: str) -> int:
    """What a flush does at AUDIOSYNC_FLUSH_MAX_ATTEMPTS: every entry to quarantine."""
    token = uuid.uuid4().hex
    assert store.acquire_lease(sid, token, 30)
    up_to = store.last_entry_id(sid)
    assert up_to is not None
    moved, done = 0, False
    while not done:
        batch, done = store.park_batch(sid, token, reason, up_to, 200)
        moved += batch
    now = store.time()
    store.finish(sid, token, drop_ids=[], last_read_id=None, next_due=None, now=now)
    store.release_lease(sid, token)
    return moved


def test_replay_quarantined_for_one_user_touches_only_that_users_sessions(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """alice's session was parked (all its entries are in quarantine, its stream is gone);
    bob's too, for another reason. ``replay --quarantined --user alice`` must requeue
    alice's entries and leave bob's alone."""
    env = stack.env()
    settings = Settings.from_env(env)
    store = WorkerStore(
        redis.Redis.from_url(stack.redis_url), Settings.from_env(stack.env()).due_shards
    )
    alice = pushed(settings, "alice")
    bob = pushed(settings, "bob")
    assert park(store, alice, "parked after 16 failed flushes; last: X") == 3
    assert park(store, bob, "parked after 16 failed flushes; last: Y") == 3

    dry = as_json(
        celery(
            "audiosync",
            "replay",
            "--quarantined",
            "--user",
            "alice",
            "--dry-run",
            "--json",
            env=env,
        )
    )
    assert bob not in dry["sessions"], f"a dry run for alice would requeue bob: {dry}"
    assert dry["sessions"] == {alice: 3}, dry

    done = as_json(
        celery("audiosync", "replay", "--quarantined", "--user", "alice", "--json", env=env)
    )
    assert redis_client.xlen(keys(bob).quarantine) == 3, f"bob's quarantine was requeued: {done}"
    assert done["sessions"] == {alice: 3}, done


def test_replay_quarantined_with_reason_moves_every_matching_entry(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """1205 entries quarantined for the same reason in one session (e.g. a pusher bug that
    a deploy fixed): one ``replay --quarantined --reason`` run must put them all back (or
    at least not report that it is done while 205 stay in quarantine)."""
    env = stack.env()
    sid = "cli-many-" + uuid.uuid4().hex[:8]
    pipe = redis_client.pipeline()
    for i in range(1205):
        pipe.xadd(
            keys(sid).quarantine,
            {
                "reason": "rate 0 is not one of the Opus rates",
                "entry_id": f"{i + 1}-0",
                "at_ms": "1",
                "f:v": "1",
                "f:kind": "end",
                "f:n": str(i),
            },
        )
    pipe.zadd(keys(sid).quarantine_index, {sid: 1})
    pipe.execute()

    done = as_json(
        celery("audiosync", "replay", "--quarantined", "--reason", "rate 0", "--json", env=env)
    )
    left = redis_client.xlen(keys(sid).quarantine)
    assert left == 0, f"reported {done['sessions']} requeued, {left} matching entries left"
    again = as_json(
        celery("audiosync", "replay", "--quarantined", "--reason", "rate 0", "--json", env=env)
    )
    assert again["sessions"] == {}, "'a second run finds none' does not hold"


def test_dry_run_reports_what_the_real_run_moves(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    env = stack.env()
    sid = "cli-dry-" + uuid.uuid4().hex[:8]
    pipe = redis_client.pipeline()
    for i in range(1205):
        pipe.xadd(
            keys(sid).quarantine,
            {
                "reason": "parked after 16 failed flushes",
                "entry_id": f"{i + 1}-0",
                "at_ms": "1",
                "f:v": "1",
                "f:kind": "end",
                "f:n": str(i),
            },
        )
    pipe.zadd(keys(sid).quarantine_index, {sid: 1})
    pipe.execute()

    dry = as_json(celery("audiosync", "replay", "--quarantined", "--dry-run", "--json", env=env))
    real = as_json(celery("audiosync", "replay", "--quarantined", "--json", env=env))
    assert real["sessions"] == {sid: 1205}
    assert dry["sessions"] == real["sessions"], f"dry run said {dry}, the run did {real}"


def test_status_probe_sees_audio_held_by_a_failing_session(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """GCS is down: a session's flushes fail and back off (due time pushed into the future
    by the failure script). Its audio has waited in Redis for 10 minutes, but ``status``
    says lag 0.0 s, 0 due, and ``--max-lag 60`` passes: the probe cannot see an outage."""
    env = stack.env()
    store = WorkerStore(
        redis.Redis.from_url(stack.redis_url), Settings.from_env(stack.env()).due_shards
    )
    sid = "cli-failing-" + uuid.uuid4().hex[:8]
    now = store.time()
    old_ms = int((now - 600) * 1000)
    for i in range(3):  # appended 10 minutes ago (stream ids are append times)
        redis_client.xadd(
            keys(sid).chunks, {"v": "1", "kind": "end", "n": str(i)}, id=f"{old_ms + i}-0"
        )
    redis_client.zadd(keys(sid).due, {sid: now - 540})
    for _attempt in range(8):  # eight failed flushes so far, as a flush records them
        token = uuid.uuid4().hex
        assert store.acquire_lease(sid, token, 30)
        store.record_failure(
            sid,
            token,
            "ServiceUnavailable: 503 GCS is down",
            now=store.time(),
            base=1.0,
            cap=300.0,
            lease_seconds=30,
        )
        store.release_lease(sid, token)

    report = as_json(celery("audiosync", "status", "--json", env=env))
    probe = celery("audiosync", "status", "--max-lag", "60", env=env)
    assert report["lag_seconds"] >= 540 or probe.returncode == 2, (
        f"audio held 600 s by a failing session; status reports lag "
        f"{report['lag_seconds']} s, {report['shards'][0]['due']} due, probe rc "
        f"{probe.returncode}:\n{probe.stdout}"
    )


def test_status_needs_only_redis(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """An operator's shell with Redis access but no GCS credentials (a bastion, a probe
    sidecar): ``status`` reads only Redis, so it must work there."""
    env = {
        **stack.env(),
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "NO_GCE_CHECK": "True",
        "GCE_METADATA_HOST": f"127.0.0.1:{free_port()}",
        "GCE_METADATA_IP": f"127.0.0.1:{free_port()}",
    }
    done = celery(
        "audiosync",
        "status",
        "--json",
        env=env,
        drop=("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"),
    )
    assert done.returncode == 0, done.stderr[-600:]


def test_status_with_redis_down_says_so_in_one_line(stack: StackInfo) -> None:
    env = {**stack.env(), "AUDIOSYNC_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = celery("audiosync", "status", env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-400:]
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr[-400:]


def test_replay_user_conversation_finds_a_session_that_switched_to_it(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """A session that switched from conversation c1 to c2 (Session.switch_conversation)
    holds c2's audio in Redis, but ``replay --user U --conversation c2`` matches only the
    session's first entry (c1) and reports it not found."""
    env = stack.env()
    settings = Settings.from_env(env)
    client = AudioSyncClient(settings)
    session = client.open_session("cli-switcher", "c1", 8000, "standard")
    start = time.time() - 20
    session.push(bytes(2 * 8000 * 10), start)
    session.switch_conversation("c2")
    session.push(bytes(2 * 8000 * 10), start + 10)
    client.close()
    sid = session.session_id
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], redis_client.xrange(keys(sid).chunks))
    cids = {f.get(b"cid") for _, f in entries}
    assert cids == {b"c1", b"c2"}  # c2's chunks are in this session's stream

    done = celery(
        "audiosync",
        "replay",
        "--user",
        "cli-switcher",
        "--conversation",
        "c2",
        "--dry-run",
        "--json",
        env=env,
    )
    assert done.returncode == 0, f"c2's audio is in {sid}; replay says: {done.stderr[-300:]}"
    assert json.loads(done.stdout)["flush_now"] == [sid], done.stdout
