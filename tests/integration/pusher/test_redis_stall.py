"""A stalled Redis (SIGSTOP: the kernel accepts connections, nobody answers) against the
pusher: closes still reach the spool within AUDIOSYNC_CLOSE_SECONDS, and the breaker lets
one thread at a time into Redis once it has opened. A real valkey, a real spool directory;
every stream is audited by identity afterwards."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient, EnqueueError, Session
from tests.integration.pusher.pusher_outage import (
    noise,
    quick_client,
    settings_for,
    spool_files,
    stream,
    wait_for,
)

pytestmark = pytest.mark.integration
RATE = 8000
CHUNK = 5 * RATE
TAIL = RATE // 2  # the half second each session still holds when it closes
REDIS_PACKAGE = str(Path(redis.__file__).parent)


def test_closes_during_a_redis_stall_reach_the_spool_within_their_budget(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """200 sessions close while Redis is stalled. The Redis client's socket timeout is
    twice the close budget, so a close that waited for a stalled call (or for a thread
    stuck in one) could not make it: every close must reach the spool on its own time,
    at most AUDIOSYNC_REDIS_STALL_SECONDS per Redis call. Once Redis answers again, every
    entry is in its stream once (the calls that were left waiting land too)."""
    spool_dir = tmp_path / "spool"
    settings = settings_for(stack.env(), own_redis.url, spool_dir, AUDIOSYNC_CLOSE_SECONDS="20")
    slow = redis.Redis.from_url(
        own_redis.url,
        socket_timeout=2 * settings.close_seconds,
        socket_connect_timeout=2 * settings.close_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    client = AudioSyncClient(settings, redis_client=slow)
    t0 = float(int(time.time()))

    async def scenario() -> tuple[list[Session], list[BaseException | None]]:
        sessions = [client.open_session(f"u{i}", "c", RATE, "enhanced") for i in range(200)]
        for k, session in enumerate(sessions):
            await session.apush(noise(CHUNK + TAIL, seed=k), t0)
        # Chunk 0 of every session is in Redis; each still holds its tail.
        while any(s.unsent_chunks for s in sessions):
            await asyncio.sleep(0.05)
        own_redis.pause()
        results = await asyncio.gather(*(s.aclose() for s in sessions), return_exceptions=True)
        return sessions, list(results)

    try:
        sessions, results = asyncio.run(scenario())
        failed = [r for r in results if r is not None]
        assert not failed, f"{len(failed)} of 200 closes failed, the first: {failed[0]!r}"
        assert all(s.closed for s in sessions)
        # The tails and end markers are durable in the spool: none reached Redis.
        assert client.stats().spooled_entries == 400
        assert len(spool_files(spool_dir)) == 400
    finally:
        own_redis.resume()
    want = [("chunk", 0, CHUNK), ("chunk", 1, TAIL), ("end", -1, 0)]
    assert wait_for(lambda: not spool_files(spool_dir), 120), "the spool was not drained"
    client.close()
    for session in sessions:
        assert stream(own_redis.url, session.redis_keys) == want, session.session_id


def _threads_in_redis() -> int:
    """Threads whose stack is inside redis-py now (a call waiting for its answer)."""
    count = 0
    for top in sys._current_frames().values():
        frame: FrameType | None = top
        while frame is not None:
            if frame.f_code.co_filename.startswith(REDIS_PACKAGE):
                count += 1
                break
            frame = frame.f_back
    return count


def test_once_open_the_breaker_lets_one_thread_at_a_time_into_a_stalled_redis(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """AUDIOSYNC_BREAKER_SECONDS (0.3 s) far below the socket timeout (1 s) and 8 threads
    kept busy by 16 sessions: while Redis stays stalled, each half-open trial lasts a
    socket timeout, and no other thread may enter Redis before it returns. Threads inside
    redis-py are counted from their stacks, every 10 ms."""
    settings = settings_for(
        stack.env(),
        own_redis.url,
        tmp_path / "spool",
        AUDIOSYNC_PUSHER_THREADS="8",
        # The close encodes and seals the backlog the stall left (up to a session buffer
        # each): on a loaded machine that takes longer than the outage tests' 5 s. What
        # this test checks is the breaker, not how fast a close is.
        AUDIOSYNC_CLOSE_SECONDS="120",
    )
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    samples: list[tuple[float, int, int]] = []  # (time, threads in redis-py, trips)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            in_redis = _threads_in_redis()
            samples.append((time.monotonic(), in_redis, client.stats().breaker.trips))
            time.sleep(0.01)

    async def push(sessions: list[Session], seconds: float, t0: float) -> float:
        frame = noise(RATE // 2)
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            for session in sessions:
                await session.apush(frame, t0 + k * 0.5)
            k += 1
            await asyncio.sleep(0.02)
        return t0 + k * 0.5

    async def scenario() -> list[Session]:
        sessions = [client.open_session(f"u{i}", "c", RATE, "enhanced") for i in range(16)]
        t0 = float(int(time.time()))
        t = await push(sessions, 1.0, t0)
        own_redis.pause()
        sampler.start()
        # The calls that entered before the stall was seen (within
        # AUDIOSYNC_REDIS_STALL_SECONDS of each other) have all timed out one socket timeout
        # (1 s) later: from then on, trials only. The stall lasts until 2.5 s of trials
        # (two or more) were watched: on a loaded machine the breaker opens later.
        settled = math.inf
        try:
            t = await push(sessions, 6.0, t)
            give_up = time.monotonic() + 60.0
            while time.monotonic() < min(settled + 2.5, give_up):
                t = await push(sessions, 0.5, t)
                tripped = [at for at, _, trips in list(samples) if trips >= 1]
                if tripped:
                    settled = tripped[0] + settings.redis_stall_seconds + 1.0
        finally:
            stalled_until = time.monotonic()
            own_redis.resume()
            stop.set()
        assert settled < math.inf, "the breaker never opened"
        window = [(at, n) for at, n, _ in samples if settled <= at < stalled_until]
        assert window and window[-1][0] - window[0][0] >= 2.0, (
            "the stall was too short to see a trial or two"
        )
        window_counts = [n for _, n in window]
        assert max(window_counts) <= 1, f"{max(window_counts)} threads waited in Redis at once"
        await client.aclose()
        return sessions

    sampler = threading.Thread(target=sample)
    try:
        sessions = asyncio.run(scenario())
    finally:
        stop.set()
        own_redis.resume()
    # What the closes spooled waits for the next process, which appends it.
    successor = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    assert wait_for(lambda: not spool_files(tmp_path / "spool"), 60)
    successor.close()
    for session in sessions:
        kinds = [kind for kind, _, _ in stream(own_redis.url, session.redis_keys)]
        assert kinds.count("end") == 1 and kinds[-1] == "end"
        seqs = [seq for kind, seq, _ in stream(own_redis.url, session.redis_keys) if seq >= 0]
        assert seqs == list(range(len(seqs)))  # every chunk once, in order


def test_without_a_spool_a_close_fails_within_its_budget_and_its_retry_appends_once(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    """Without a spool a stalled Redis cannot take a close: ``EnqueueError`` within the
    budget, the tail kept; the next close after the stall appends it once."""
    settings = settings_for(stack.env(), own_redis.url, None, AUDIOSYNC_CLOSE_SECONDS="3")
    slow = redis.Redis.from_url(own_redis.url, socket_timeout=30, retry=Retry(NoBackoff(), 0))
    client = AudioSyncClient(settings, redis_client=slow)
    session = client.open_session("u1", "c1", RATE, "standard")
    session.push(noise(TAIL), float(int(time.time())))
    own_redis.pause()
    try:
        with pytest.raises(EnqueueError, match="AUDIOSYNC_CLOSE_SECONDS"):
            session.close()
    finally:
        own_redis.resume()
    session.close()
    assert stream(own_redis.url, session.redis_keys) == [("chunk", 0, TAIL), ("end", -1, 0)]
    client.close()
