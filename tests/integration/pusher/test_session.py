"""The pusher API against a real Redis: bad input, closing, Redis outages, asyncio."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from audiosync_dev.localstack import StackInfo
from backend_hooks import (
    AudioSyncClient,
    ConfigError,
    EnqueueError,
    InvalidInputError,
    SessionClosedError,
)
from backend_hooks.adapters.redis_store import connect
from backend_hooks.contract.entries import KIND_CHUNK, KIND_END, ChunkEntry, parse_entry
from backend_hooks.contract.lua_scripts import SCRIPTS
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.appender import Appender
from workers.store import WorkerStore

pytestmark = pytest.mark.integration
SECRET = "session-test-secret-0123456789abcdef"
T0 = float(int(time.time()))  # synthetic pushes start now: the worker refuses far-off times


@pytest.fixture
def settings(stack: StackInfo, redis_client: redis.Redis) -> Settings:
    # A close that cannot reach Redis keeps trying for AUDIOSYNC_CLOSE_SECONDS: 1 s here,
    # waiting at most AUDIOSYNC_REDIS_STALL_SECONDS for each call.
    return Settings.from_env(
        {
            **stack.env(),
            "ENCRYPTION_SECRET": SECRET,
            "AUDIOSYNC_CLOSE_SECONDS": "1",
            "AUDIOSYNC_REDIS_STALL_SECONDS": "0.5",
        }
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[AudioSyncClient]:
    c = AudioSyncClient(settings)
    yield c
    c.executor.shutdown()


def one_chunk(rate: int = 16000) -> bytes:
    return bytes(2 * 5 * rate)


def entries(settings: Settings, session_id: str) -> list[tuple[str, int]]:
    raw = WorkerStore(connect(settings.redis_url), settings.due_shards).read_raw(session_id, 1000)
    parsed = [parse_entry(entry_id, fields) for entry_id, fields in raw]
    return [(KIND_CHUNK, e.samples) if isinstance(e, ChunkEntry) else (KIND_END, 0) for e in parsed]


@pytest.mark.parametrize(
    "rate", [pytest.param(r, id=repr(r)) for r in (44100, 0, 16001, "16000", 16000.0, True)]
)
def test_unsupported_sample_rate(client: AudioSyncClient, rate: object) -> None:
    with pytest.raises(InvalidInputError, match=r"sample rate|sample_rate"):
        client.open_session("u", "c", rate, "standard")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["", "a/b", "..", "../etc", "a..b", "a b", "{tag}", "x\n", "é" * 3, "a" * 300]
)
def test_bad_ids(client: AudioSyncClient, bad: str) -> None:
    with pytest.raises(InvalidInputError, match="uid"):
        client.open_session(bad, "c", 16000, "standard")
    with pytest.raises(InvalidInputError, match="conversation_id"):
        client.open_session("u", bad, 16000, "standard")
    session = client.open_session("u", "c", 16000, "standard")
    with pytest.raises(InvalidInputError, match="conversation_id"):
        session.switch_conversation(bad)


def test_bad_protection_level(client: AudioSyncClient) -> None:
    with pytest.raises(InvalidInputError, match="protection_level"):
        client.open_session("u", "c", 16000, "end-to-end")


def test_enhanced_needs_the_secret(stack: StackInfo) -> None:
    client = AudioSyncClient(Settings.from_env(stack.env()))
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET"):
        client.open_session("u", "c", 16000, "enhanced")
    client.open_session("u", "c", 16000, "standard")  # standard needs no secret


@pytest.mark.parametrize(
    ("pcm", "timestamp"),
    [
        pytest.param("text", T0, id="str-pcm"),
        pytest.param([1, 2], T0, id="list-pcm"),
        pytest.param(b"\0\0", math.nan, id="nan-timestamp"),
        pytest.param(b"\0\0", math.inf, id="inf-timestamp"),
        pytest.param(b"\0\0", -math.inf, id="minus-inf-timestamp"),
        pytest.param(b"\0\0", "now", id="str-timestamp"),
    ],
)
def test_bad_push(client: AudioSyncClient, pcm: object, timestamp: object) -> None:
    session = client.open_session("u", "c", 16000, "standard")
    with pytest.raises(InvalidInputError):
        session.push(pcm, timestamp)  # type: ignore[arg-type]


BAD_PUSHES_IN_A_RUN = [
    ("text", T0 + 0.02),
    ([0, 0], T0 + 0.02),
    (None, T0 + 0.02),
    (b"\0\0", math.nan),
    (b"\0\0", math.inf),
    (b"\0\0", "now"),
    (b"\0\0", None),
    (b"\0\0", True),  # a bool is no time, though an int
    (b"\0\0", Decimal("1700000000.02")),
]


def test_bad_pushes_during_a_run_are_refused_by_both_apis(
    client: AudioSyncClient, settings: Settings
) -> None:
    """Bad input pushed while a run goes on on time (where a push of bytes takes the
    chunker's short path, and apush converts a float timestamp inline): each API raises
    InvalidInputError, the audio is untouched, and the run goes on; after the close, both
    raise SessionClosedError."""
    sync = client.open_session("u", "c", 8000, "standard")
    sync.push(bytes(320), T0)
    for pcm, timestamp in BAD_PUSHES_IN_A_RUN:
        with pytest.raises(InvalidInputError):
            sync.push(pcm, timestamp)  # type: ignore[arg-type]
    sync.push(bytes(320), T0 + 0.02)
    sync.close()

    async def scenario() -> str:
        session = client.open_session("u", "c", 8000, "standard")
        await session.apush(bytes(320), T0)
        for pcm, timestamp in BAD_PUSHES_IN_A_RUN:
            with pytest.raises(InvalidInputError):
                await session.apush(pcm, timestamp)  # type: ignore[arg-type]
        await session.apush(bytes(320), T0 + 0.02)
        await session.aclose()
        with pytest.raises(SessionClosedError, match="open_session"):
            await session.apush(bytes(320), T0 + 0.04)
        with pytest.raises(SessionClosedError):
            await session.apush("text", math.nan)  # type: ignore[arg-type]
        return session.session_id

    async_id = asyncio.run(scenario())
    with pytest.raises(SessionClosedError):
        sync.push(bytes(320), T0 + 0.04)
    for session_id in (sync.session_id, async_id):
        assert entries(settings, session_id) == [(KIND_CHUNK, 320), (KIND_END, 0)]
        assert start_times(settings, session_id) == [round(T0 * 1_000_000)]


def start_times(settings: Settings, session_id: str) -> list[int]:
    raw = WorkerStore(connect(settings.redis_url), settings.due_shards).read_raw(session_id, 1000)
    parsed = [parse_entry(entry_id, fields) for entry_id, fields in raw]
    return [e.start_us for e in parsed if isinstance(e, ChunkEntry)]


def test_implausible_timestamps_are_kept_at_the_pushers_clock(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Implausible timestamps: 0.0, 1e12 (ms as s), 1e300, negative. Not refused (a websocket
    handler's exception would lose the frame or the session): the audio is placed at the
    pusher's clock, counted, and one WARNING a session names the first value."""
    now = T0 + 0.5
    client = AudioSyncClient(settings, clock=lambda: now)
    session = client.open_session("u", "c", 8000, "standard")
    with caplog.at_level(logging.WARNING, logger="backend_hooks.session"):
        for stray in (0.0, 1e12, 1e300, -1.0):
            session.push(bytes(2 * 8000 * 5), stray)  # 5 s each, arriving all at once
        session.close()
    client.executor.shutdown()
    assert session.implausible_timestamps == 4
    # One run from the pusher's clock: a backlog arriving at once is not a jump back.
    assert start_times(settings, session.session_id) == [
        round(now * 1_000_000) + k * 5_000_000 for k in range(4)
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert session.session_id in message and "timestamp 0.0 " in message
    assert "more than 86400 s from the pusher's clock" in message


def test_after_close(client: AudioSyncClient, settings: Settings) -> None:
    session = client.open_session("u", "c", 16000, "standard")
    session.push(bytes(3200), T0)
    session.close()
    session.close()  # idempotent: no second end marker
    with pytest.raises(SessionClosedError, match="open_session"):
        session.push(bytes(2), T0 + 1)
    with pytest.raises(SessionClosedError):
        session.switch_conversation("other")
    assert entries(settings, session.session_id) == [(KIND_CHUNK, 1600), (KIND_END, 0)]


def test_odd_pushes_lose_no_byte(client: AudioSyncClient, settings: Settings) -> None:
    session = client.open_session("u", "c", 8000, "standard")
    session.push(b"\1\0\2", T0)  # one sample and a half
    session.push(b"\0", T0 + 1 / 8000)  # completes the second sample
    session.push(b"\3\0\4\0\5", T0 + 2 / 8000)
    session.close()
    assert entries(settings, session.session_id) == [(KIND_CHUNK, 4), (KIND_END, 0)]


def test_chunks_wait_for_redis_and_nothing_is_dropped(settings: Settings) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    client = AudioSyncClient(settings, redis_client=connect(f"redis://127.0.0.1:{dead_port}/0"))
    session = client.open_session("u", "c", 16000, "enhanced")
    session.push(one_chunk(), T0)  # Redis refuses: kept, no exception on the push path
    session.push(one_chunk(), T0 + 5)
    assert session.unsent_chunks == 2
    with pytest.raises(EnqueueError, match="2 chunks wait") as refused:
        session.close()
    assert "call close() again" in str(refused.value)  # not "the next append": it closes
    assert not session.closed
    client.appender = Appender(connect(settings.redis_url))  # Redis is back
    session.close()
    assert session.closed and session.unsent_chunks == 0
    assert entries(settings, session.session_id) == [
        (KIND_CHUNK, 80000),
        (KIND_CHUNK, 80000),
        (KIND_END, 0),
    ]


def test_apush_does_not_block_the_event_loop(settings: Settings) -> None:
    """A Redis that accepts but never answers stalls a pool thread, never the loop: the
    push returns as soon as its chunk is handed over, and the chunk is kept."""
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(8)
        port = stalled.getsockname()[1]
        staller = redis.Redis(
            port=port, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        client = AudioSyncClient(settings, redis_client=staller)
        session = client.open_session("u", "c", 16000, "standard")

        async def scenario() -> tuple[bool, int]:
            push = asyncio.create_task(session.apush(one_chunk(), T0))
            await asyncio.sleep(0)  # one loop iteration: the push runs to its end
            done_at_once = push.done()
            await push
            ticks = 0
            while session.unsent_chunks and ticks < 500:  # the append times out after 2 s
                await asyncio.sleep(0.01)
                ticks += 1
            return done_at_once, ticks

        done_at_once, ticks = asyncio.run(scenario())
        assert done_at_once  # handed over: the stalled append is the pool's business
        assert ticks >= 10  # the loop ran on while the append stalled
        assert session.held_entries == 1  # and the chunk is kept in memory, not lost
        client.executor.shutdown()


def test_async_api_round_trip(client: AudioSyncClient, settings: Settings) -> None:
    async def scenario() -> str:
        session = client.open_session("u", "c1", 16000, "enhanced")
        await session.apush(one_chunk() + bytes(640), T0)
        await session.aswitch_conversation("c2")
        await session.apush(bytes(320), T0 + 5.02)
        await session.aclose()
        return session.session_id

    session_id = asyncio.run(scenario())
    assert entries(settings, session_id) == [
        (KIND_CHUNK, 80000),
        (KIND_CHUNK, 320),
        (KIND_END, 0),
        (KIND_CHUNK, 160),
        (KIND_END, 0),
    ]


def test_one_round_trip_per_chunk_and_nothing_per_frame(
    client: AudioSyncClient, redis_client: redis.Redis
) -> None:
    session = client.open_session("u", "c", 16000, "enhanced")
    frame = bytes(2 * 320)  # 20 ms
    # The script in the server's cache first, as after any earlier append: on a server
    # that never ran it, the first EVALSHA's NOSCRIPT is answered by one EVAL (the count
    # would then depend on which tests ran before on this server).
    redis_client.script_load(SCRIPTS["append"])
    redis_client.config_resetstat()
    for i in range(30 * 50):  # 30 s of 20 ms frames: 1500 pushes, 6 chunks
        session.push(frame, T0 + i * 0.02)
    session.close()
    stats = redis_client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    for connection_setup in ("info", "config|resetstat", "hello", "client|setinfo", "ping"):
        calls.pop(connection_setup, None)  # this test's own, and the pool's handshake
    # 6 chunk appends and 1 close, each one script call (EVALSHA); inside it: XADDs for 6
    # chunks + 1 end marker, and per call one SET ... GET of the append mark and one ZADD
    # of the due time (taken from the XADD's id; a TIME only when that id is not the
    # server's clock: two appends to the stream within one millisecond, which a push
    # faster than real time can make).
    # Once per pusher process, before its first append: the SADD of its shard count.
    assert calls.pop("time", 0) <= 7
    want = {"evalsha": 7, "xadd": 7, "set": 7, "zadd": 7, "sadd": 1}
    assert calls == want
