"""The disk spool and the breaker against a real Redis that is stopped, stalled and
restarted, and real pusher processes that are killed: never block the loop, never drop a chunk.

Every run audits the session's stream by identity afterwards: each chunk sequence once,
in order, with all its samples, and the end marker last."""

from __future__ import annotations

import asyncio
import signal
import time
from functools import partial
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import (
    AudioSyncClient,
    BufferFullError,
    ConfigError,
    EnqueueError,
    SpoolFullError,
)
from backend_hooks.contract.redis_keys import SessionKeys
from backend_hooks.pusher import pusher_metrics, spool
from tests.integration.commands import run_python
from tests.integration.pusher.pusher_outage import (
    CHUNK,
    RATE,
    T0,
    expected,
    noise,
    quick_client,
    settings_for,
    spool_env,
    spool_files,
    spooling_pusher,
    stream,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_redis_stopped_chunks_spool_then_drain_in_order_exactly_once(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    settings = settings_for(stack.env(), own_redis.url, spool_dir)
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    session = client.open_session("u1", "c1", RATE, "enhanced")
    session.push(noise(CHUNK), T0)  # Redis answers: appended directly
    own_redis.stop()
    for k in range(1, 6):
        session.push(noise(CHUNK, seed=k), T0 + 5 * k)  # refused: to the spool, no error
    session.push(noise(1000), T0 + 30)
    session.close()  # the tail and the end marker are durable in the spool: closed
    assert session.closed and session.unsent_chunks == 0
    assert session.spooled_entries == 7  # 5 chunks, the tail, the end marker
    assert len(spool_files(spool_dir)) == 7
    assert client.stats().breaker.trips >= 1
    own_redis.start()  # data back from its AOF, and the spool drains in the background
    assert wait_for(lambda: stream(own_redis.url, session.redis_keys) == expected(6, 1000))
    assert wait_for(lambda: not spool_files(spool_dir))
    client.close()
    assert stream(own_redis.url, session.redis_keys) == expected(6, 1000)  # nothing twice


def test_a_stalled_redis_never_stalls_the_loop_and_loses_nothing(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """SIGSTOP: the kernel accepts, nobody answers. 10 sessions keep pushing 20 ms frames
    (faster than real time) and the loop waits 2.5 s in the middle of the stall, so the
    appends time out (1 s), the breaker opens and the chunks go to the spool; a 5 ms
    ticker on the loop measures how late it ever fires."""
    spool_dir = tmp_path / "spool"
    settings = settings_for(stack.env(), own_redis.url, spool_dir, AUDIOSYNC_CLOSE_SECONDS="60")
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    frames = 1000  # 20 s of audio per session

    async def scenario() -> tuple[float, list[SessionKeys]]:
        sessions = [client.open_session(f"u{i}", "c", RATE, "enhanced") for i in range(10)]
        lateness = 0.0
        stop = False

        async def ticker() -> None:
            nonlocal lateness
            while not stop:
                before = time.monotonic()
                await asyncio.sleep(0.005)
                lateness = max(lateness, time.monotonic() - before - 0.005)

        tick = asyncio.create_task(ticker())
        pcm = noise(RATE // 50)
        for f in range(frames):
            if f == 260:  # chunk 0 is out: stall
                own_redis.pause()
            if f == 520:  # chunk 1 was handed over to a stalled Redis
                await asyncio.sleep(2.5)
            if f == 800:
                own_redis.resume()
            for s in sessions:
                await s.apush(pcm, T0 + f * 0.02)
            await asyncio.sleep(0)
        await client.aclose()
        stop = True
        await tick
        return lateness, [s.redis_keys for s in sessions]

    lateness, keys = asyncio.run(scenario())
    assert client.stats().breaker.trips >= 1  # the stall was felt, by the pool
    # A blocked loop would be late by a socket timeout (1 s) or more.
    assert lateness < 0.5, f"the loop was blocked for {lateness:.3f} s"
    for k in keys:
        assert wait_for(partial(_stream_is, own_redis.url, k, expected(4)), 30)


def _stream_is(url: str, keys: SessionKeys, want: list[tuple[str, int, int]]) -> bool:
    return stream(url, keys) == want


def test_spool_full_refuses_with_a_clear_error_and_keeps_what_it_took(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    settings = settings_for(
        stack.env(),
        own_redis.url,
        spool_dir,
        AUDIOSYNC_SPOOL_MAX_BYTES="25000",  # two chunks of noise
        AUDIOSYNC_SESSION_BUFFER_SECONDS="10",
    )
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    session = client.open_session("u1", "c1", RATE, "enhanced")
    own_redis.stop()
    accepted = 0
    with pytest.raises(SpoolFullError, match="AUDIOSYNC_SPOOL_MAX_BYTES") as refused:
        for k in range(10):
            session.push(noise(CHUNK, seed=k), T0 + 5 * k)
            accepted += 1
    assert "refused" in str(refused.value)
    stats = client.stats()
    assert stats.refused_pushes == 1 and stats.spool is not None
    assert stats.spool.full_refusals >= 1
    # What fitted is spooled; then 15 s (> 10 s) held in memory; the next push refused.
    assert stats.held_entries == 3 and accepted == stats.spooled_entries + 3
    registry = CollectorRegistry()
    pusher_metrics.register(client, registry)
    scraped = {
        sample.name: sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    assert scraped["audiosync_pusher_held_entries"] == 3
    assert scraped["audiosync_pusher_spooled_entries"] == stats.spooled_entries
    assert scraped["audiosync_pusher_refused_pushes_total"] == 1
    assert scraped["audiosync_pusher_spool_full_total"] >= 1
    assert scraped["audiosync_pusher_breaker_trips_total"] >= 1
    own_redis.start()
    session.close()
    assert wait_for(lambda: stream(own_redis.url, session.redis_keys) == expected(accepted))
    client.close()


def test_no_spool_buffer_full_then_a_failed_aclose_is_retried_from_the_loop(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    """The retry of a failed ``client.aclose()`` used to hit a shut-down pool."""
    settings = settings_for(stack.env(), own_redis.url, None, AUDIOSYNC_SESSION_BUFFER_SECONDS="10")
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))

    async def scenario() -> SessionKeys:
        session = client.open_session("u1", "c1", RATE, "enhanced")
        own_redis.stop()
        for k in range(3):
            await session.apush(noise(CHUNK, seed=k), T0 + 5 * k)
        await asyncio.sleep(0.5)  # let the sender hold them
        with pytest.raises(BufferFullError, match="AUDIOSYNC_SPOOL_DIR"):
            await session.apush(noise(CHUNK), T0 + 15)
        with pytest.raises(EnqueueError, match="call close"):
            await client.aclose()
        own_redis.start()
        await client.aclose()  # the retry works: the pool was kept
        assert session.closed
        return session.redis_keys

    keys = asyncio.run(scenario())
    assert stream(own_redis.url, keys) == expected(3)


def test_client_close_closes_sessions_concurrently_within_its_budget(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    """30 sessions whose closes fail, fail together, not one after another (they took
    18 s)."""
    settings = settings_for(stack.env(), own_redis.url, None, AUDIOSYNC_CLOSE_SECONDS="3")
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    sessions = [client.open_session(f"u{i}", "c", RATE, "standard") for i in range(30)]
    for s in sessions:
        s.push(noise(1000), T0)
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(EnqueueError, match="30 sessions"):
        client.close()
    assert time.monotonic() - started < 3 + 1  # the budget, not 30 times anything
    own_redis.start()
    client.close()
    for s in sessions:
        assert s.closed and stream(own_redis.url, s.redis_keys) == [
            ("chunk", 0, 1000),
            ("end", -1, 0),
        ]


def test_a_single_push_of_ten_minutes_is_taken_whole_and_a_cancelled_apush_loses_nothing(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    # One session's chunks are encoded one after another: 120 of them take seconds.
    settings = settings_for(stack.env(), own_redis.url, None, AUDIOSYNC_CLOSE_SECONDS="120")
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))

    async def scenario() -> tuple[SessionKeys, SessionKeys]:
        whole = client.open_session("u1", "c1", RATE, "standard")
        await whole.apush(bytes(2 * 600 * RATE), T0)  # waits for its encoders, never blocks
        await whole.aclose()
        cancelled = client.open_session("u2", "c1", RATE, "standard")
        task = asyncio.create_task(cancelled.apush(bytes(2 * 150 * RATE), T0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await cancelled.apush(bytes(2 * RATE), T0 + 150)  # the session is consistent
        await cancelled.aclose()
        return whole.redis_keys, cancelled.redis_keys

    whole, cancelled = asyncio.run(scenario())
    assert stream(own_redis.url, whole) == expected(120)
    assert stream(own_redis.url, cancelled) == [
        *expected(30)[:-1],
        ("chunk", 30, RATE),
        ("end", -1, 0),
    ]
    client.close()


# -- real processes ------------------------------------------------------------------------
def test_a_pusher_killed_with_a_full_spool_is_drained_by_the_next_one(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    proc, keys = spooling_pusher("spool", 8, env)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(spool_files(spool_dir)) == 8
    own_redis.start()
    # The next process: a pusher started on the same spool drains it in the background.
    client = AudioSyncClient(settings_for(stack.env(), own_redis.url, spool_dir))
    chunks = [("chunk", seq, CHUNK) for seq in range(8)]  # no end marker: it was killed
    assert wait_for(lambda: stream(own_redis.url, keys) == chunks)
    assert wait_for(lambda: not spool_files(spool_dir))
    assert client.stats().spool.adopted_owners == 1  # type: ignore[union-attr]
    client.close()


def test_a_kill_between_the_append_and_the_rename_duplicates_nothing(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """The child's maintenance thread appends its first 32 spooled entries and is SIGKILLed
    before renaming the first file; the command drains the rest, appending those 32 again."""
    spool_dir = tmp_path / "spool"
    env = spool_env(stack.env(), own_redis.url, spool_dir)
    own_redis.stop()
    proc, keys = spooling_pusher("crash-after-append", 40, env)
    own_redis.start()
    assert proc.wait(30) == -signal.SIGKILL
    assert len(stream(own_redis.url, keys)) == 32  # the append landed, the renames did not
    assert len(spool_files(spool_dir)) == 40
    time.sleep(1.1)  # its lease expires
    done = run_python(["-m", "backend_hooks.spool_cli", "drain"], env)
    assert done.returncode == 0, done.stderr
    assert "appended 40 entries; 0 still wait" in done.stdout
    assert "40/40" in done.stderr  # the progress bar
    assert stream(own_redis.url, keys) == [("chunk", seq, CHUNK) for seq in range(40)]
    assert not spool_files(spool_dir)


def test_cancelled_pushes_and_a_racing_aclose_never_hold_the_loop(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    """With Redis stalled, a cancelled apush followed by another held the loop
    4.6 s (a thread lock taken on the loop), and an apush racing client.aclose() fired a
    10 ms timer 15.3 s late. Here both happen while a 10 ms timer measures the loop."""
    settings = settings_for(stack.env(), own_redis.url, None, AUDIOSYNC_CLOSE_SECONDS="3")
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))

    session = client.open_session("u1", "c1", RATE, "standard")

    async def scenario() -> tuple[float, type[BaseException] | None]:
        await session.apush(noise(CHUNK), T0)
        own_redis.pause()
        late = 0.0
        stop = False

        async def timer() -> None:
            nonlocal late
            while not stop:
                before = time.monotonic()
                await asyncio.sleep(0.01)
                late = max(late, time.monotonic() - before - 0.01)

        tick = asyncio.create_task(timer())
        first = asyncio.create_task(session.apush(noise(CHUNK, 2), T0 + 5))
        await asyncio.sleep(0)
        first.cancel()
        await session.apush(noise(CHUNK, 3), T0 + 10)
        racing = asyncio.create_task(session.apush(noise(CHUNK, 4), T0 + 15))
        closing = asyncio.create_task(client.aclose())
        await asyncio.sleep(1.5)  # the appends are stuck in the pool meanwhile
        own_redis.resume()
        await asyncio.gather(racing, return_exceptions=True)
        outcome = (await asyncio.gather(closing, return_exceptions=True))[0]
        stop = True
        await tick
        return late, type(outcome) if isinstance(outcome, BaseException) else None

    late, outcome = asyncio.run(scenario())
    assert late < 0.5, f"a 10 ms timer fired {late:.3f} s late"
    if outcome is not None:  # the close may have run out of budget during the stall ...
        assert issubclass(outcome, EnqueueError)
        client.close()  # ... and is retried
    assert session.closed  # every push was taken: 4 chunks and the end, once each
    assert stream(own_redis.url, session.redis_keys) == expected(4)


def test_a_spool_directory_that_cannot_be_written_is_a_config_error(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(ConfigError, match="AUDIOSYNC_SPOOL_DIR"):
        AudioSyncClient(settings_for(stack.env(), own_redis.url, blocked / "spool"))


def test_the_spool_rollout_flag_keeps_a_denied_user_in_memory(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    settings = settings_for(
        stack.env(), own_redis.url, spool_dir, AUDIOSYNC_SPOOL_DENY_UIDS="u-denied"
    )
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    spooled = client.open_session("u-ok", "c", RATE, "enhanced")
    in_memory = client.open_session("u-denied", "c", RATE, "enhanced")
    own_redis.stop()
    spooled.push(noise(CHUNK), T0)
    in_memory.push(noise(CHUNK), T0)
    assert (spooled.spooled_entries, spooled.held_entries) == (1, 0)
    assert (in_memory.spooled_entries, in_memory.held_entries) == (0, 1)
    own_redis.start()
    client.close()
    assert stream(own_redis.url, spooled.redis_keys) == expected(1)
    assert stream(own_redis.url, in_memory.redis_keys) == expected(1)


def test_one_session_refused_by_redis_does_not_trip_the_breaker_for_the_others(
    stack: StackInfo, own_redis: StandaloneValkey, tmp_path: Path
) -> None:
    """A permanent refusal of one session's append (here WRONGTYPE: its stream key holds a
    string) keeps that session's entries in the spool; the others still append directly."""
    spool_dir = tmp_path / "spool"
    settings = settings_for(stack.env(), own_redis.url, spool_dir)
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    poisoned = client.open_session("u1", "c", RATE, "enhanced")
    healthy = client.open_session("u2", "c", RATE, "enhanced")
    raw = quick_client(own_redis.url)
    raw.set(poisoned.redis_keys.chunks, b"not a stream")
    poisoned.push(noise(CHUNK), T0)
    for k in range(3):
        healthy.push(noise(CHUNK, seed=k), T0 + 5 * k)
    assert poisoned.spooled_entries == 1  # kept, not lost
    assert healthy.spooled_entries == 0 and client.stats().breaker.trips == 0
    assert stream(own_redis.url, healthy.redis_keys)[:3] == expected(3)[:3]
    raw.delete(poisoned.redis_keys.chunks)  # the operator clears the collision
    healthy.close()
    poisoned.close()
    assert wait_for(lambda: stream(own_redis.url, poisoned.redis_keys) == expected(1))
    client.close()


def test_an_owner_directory_appears_only_locked_and_leased(tmp_path: Path) -> None:
    """A process still making its directory is never taken for a dead owner: the directory
    is made under a hidden name and renamed into place with its lock held and its lease
    touched (the start-up window)."""
    root = tmp_path / "spool"
    first = spool.Spool(root, max_bytes=1 << 20, lease_seconds=0.001)
    starting = root / ".host-1-deadbeef"  # as a second process would leave it mid-start
    starting.mkdir()
    time.sleep(0.01)  # every lease is stale now; only the flock and the names protect
    second = spool.Spool(root, max_bytes=1 << 20, lease_seconds=0.001)
    assert first.dead_directories() == [] and second.dead_directories() == []
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [starting.name]
    assert (first.directory / spool.LEASE_FILE).exists()
    first.close()
    second.close()
