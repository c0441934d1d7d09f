"""A session whose shard is not one the fleet drains.

``shard_of`` is computed once, by the pusher, with the pusher's AUDIOSYNC_DUE_SHARDS; the
fleet drains ``range(its own AUDIOSYNC_DUE_SHARDS)`` (``WorkerStore.all_shards``). Nothing
compares the two. So when the fleet's count is lower than a pusher's (the count lowered
from 32 to 16: every session opened before, and every pusher not yet restarted, writes to
shards 16..31; or pushers and fleet simply configured differently), a session in a shard
>= the fleet's count would be:

- never flushed: its audio sits in Redis until the stream's memory runs out;
- invisible to ``celery -A workers audiosync status``: no lag, no stream, no bytes, so the
  ``--max-lag`` probe stays green while audio is stranded;
- "not in Redis" for ``replay --session``, so an operator cannot even make it due.

Each test asserts what a deployment needs instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.commands import as_json, celery
from tests.integration.flushing import CHUNK, RATE
from workers import operations
from workers.store import WorkerStore

pytestmark = pytest.mark.integration

PUSHER_SHARDS = 32
FLEET_SHARDS = 16


def _env(stack: StackInfo, shards: int, **extra: str) -> dict[str, str]:
    return {**stack.env(), "AUDIOSYNC_DUE_SHARDS": str(shards), **extra}


def _push_beyond(stack: StackInfo, uid: str, *, closed: bool = True) -> tuple[str, str]:
    """A session opened by a pusher with 32 shards that lands in a shard >= 16, 10 s of
    audio pushed 10 s ago: (its session id, its user id)."""
    client = AudioSyncClient(Settings.from_env(_env(stack, PUSHER_SHARDS)))
    for i in range(200):
        session = client.open_session(f"{uid}-{i}", "conv", RATE, "standard")
        if session.redis_keys.shard >= FLEET_SHARDS:
            break
        session.close()  # nothing pushed: nothing in Redis
    else:
        raise AssertionError("no session id hashed to a shard >= 16")
    session.push(CHUNK * 2, time.time() - 10)
    if closed:
        session.close()
    client.close()
    return session.session_id, f"{uid}-{i}"


def _fleet_store(stack: StackInfo) -> WorkerStore:
    return WorkerStore(redis.Redis.from_url(stack.redis_url), FLEET_SHARDS)


def test_a_session_in_a_shard_beyond_the_fleets_count_is_flushed(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Audio reaches GCS from any shard. AUDIOSYNC_DUE_SHARDS lowered from 32 to
    16 (or the pushers' and the fleet's differ): a closed session in shard >= 16 must still
    be flushed by the fleet; a control session in a shard < 16 shows the worker runs."""
    sid, uid = _push_beyond(stack, "shard-stranded")
    control = AudioSyncClient(Settings.from_env(_env(stack, FLEET_SHARDS)))
    session = control.open_session("shard-control", "conv", RATE, "standard")
    session.push(CHUNK, time.time() - 5)
    session.close()
    control.close()

    env = _env(stack, FLEET_SHARDS, AUDIOSYNC_SWEEP_INTERVAL_SECONDS="0.5")
    shard = redis_keys.shard_of(sid, PUSHER_SHARDS)
    stream = redis_keys.SessionKeys(sid, shard).chunks
    control_stream = session.redis_keys.chunks
    with processes.worker(env, tmp_path, name="shard-shards", concurrency=2) as worker:
        deadline = time.monotonic() + 90  # a loaded machine's worker starts and flushes late
        while redis_client.exists(control_stream):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.3)
        deadline = time.monotonic() + 45  # many sweeps later
        while redis_client.exists(stream) and time.monotonic() < deadline:
            time.sleep(0.3)
    assert not redis_client.exists(stream), (
        f"session {sid} of shard {shard} (pusher: {PUSHER_SHARDS} shards) is still in Redis "
        f"with {redis_client.xlen(stream)} entries: a fleet of {FLEET_SHARDS} shards never "
        "sweeps it"
    )
    reader = storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))
    assert storage.list_audio_chunks(uid, "conv", context=reader), "no object in GCS"


def test_status_reports_audio_held_in_a_shard_beyond_the_fleets_count(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """The lag probe sees every shard. ``audiosync status`` of a 16-shard fleet
    must count the stream (and its age) of a session that a 32-shard pusher put in shard
    >= 16, not 0 streams and 0 s lag with ``--max-lag`` exiting 0."""
    sid, _ = _push_beyond(stack, "shard-blind")
    held = redis_client.xlen(redis_keys.SessionKeys(sid, redis_keys.shard_of(sid, 32)).chunks)
    streams = len(redis_client.keys(redis_keys.session_key_pattern("chunks")))  # with the
    report = operations.fleet_status(_fleet_store(stack))  # sessions that missed the shard
    assert report.streams == streams and report.entries >= 2, (
        f"status sees {report.streams} streams / {report.entries} entries although "
        f"{sid} holds {held}"
    )
    shown = as_json(celery("audiosync", "status", "--json", env=_env(stack, FLEET_SHARDS)))
    assert shown["streams"] == streams and len(shown["shards"]) == 32 + 1  # to 32, legacy


def test_replay_session_finds_a_session_in_a_shard_beyond_the_fleets_count(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """An operator's way out: ``replay --session S`` must find S's
    entries wherever they are, not only in the fleet's shards (answering that S is not in
    Redis)."""
    sid, _ = _push_beyond(stack, "shard-replay")
    assert operations.locate(_fleet_store(stack), sid), f"locate does not find {sid}"
    done = as_json(
        celery("audiosync", "replay", "--session", sid, "--json", env=_env(stack, FLEET_SHARDS))
    )
    assert done["flush_now"] == [sid] and done["not_in_redis"] == [], done
