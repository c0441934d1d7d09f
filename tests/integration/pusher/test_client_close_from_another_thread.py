"""``client.close()`` from another thread while the loop pushes.

``AudioSyncClient.close`` said only "do not call it on an event loop that drives
sessions"; a shutdown thread (a signal-handling thread, a supervisor) calling it while the
loop is inside ``apush`` races the loop on the session's chunker and hand-over: the loop's
``_check_open`` passed, the closer flushed the chunker, handed the tail over, closed the
session and shut the pool down, and the loop's hand-over then raised ``RuntimeError:
cannot schedule new futures after shutdown`` (with ``session.close()`` instead, the chunk
lands after the end marker). Now a session driven by a loop in another thread is closed on
that loop (``aclose`` scheduled there). The interleaving is forced at one exact line: the
closer starts while the loop's chunker has just cut its chunk. Real valkey."""

from __future__ import annotations

import asyncio
import threading

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient, SessionClosedError
from backend_hooks.pusher.chunker import RawChunk
from tests.integration.pusher.pusher_outage import (
    CHUNK,
    RATE,
    T0,
    noise,
    quick_client,
    settings_for,
    stream,
)

pytestmark = pytest.mark.integration


def test_client_close_from_another_thread_while_the_loop_pushes(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    settings = settings_for(stack.env(), own_redis.url, None)
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    session = client.open_session("u1", "c1", RATE, "standard")
    closed = threading.Event()
    real_push = session._chunker.push

    def close() -> None:
        client.close()
        closed.set()

    closers: list[threading.Thread] = []

    def push(pcm: bytes, timestamp_us: int, *, now_us: int) -> list[RawChunk]:
        chunks = real_push(pcm, timestamp_us, now_us=now_us)
        if chunks:  # the loop has passed _check_open and holds its chunk: the closer starts
            closer = threading.Thread(target=close)
            closer.start()
            closer.join(0.5)  # it runs meanwhile (it used to close the session right here)
            closers.append(closer)
        return chunks

    session._chunker.push = push  # type: ignore[method-assign]

    async def scenario() -> BaseException | None:
        try:
            await session.apush(noise(CHUNK), T0)
        except BaseException as exc:
            return exc
        for _ in range(1000):  # the close runs on this loop: keep it running
            if closed.is_set():
                break
            await asyncio.sleep(0.01)
        return None

    outcome = asyncio.run(scenario())
    closers[0].join(10)
    assert closed.is_set() and session.closed
    entries = stream(own_redis.url, session.redis_keys)
    if outcome is None:  # taken: then it is in the stream, before the end marker
        assert entries == [("chunk", 0, CHUNK), ("end", -1, 0)]
    else:  # refused: with the error that says so, and nothing of it in the stream
        assert isinstance(outcome, SessionClosedError), repr(outcome)
        assert entries == [("end", -1, 0)]


def test_a_blocking_close_on_the_loop_that_drives_the_session_is_refused(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    client = AudioSyncClient(settings_for(stack.env(), own_redis.url, None))

    async def scenario() -> None:
        session = client.open_session("u1", "c1", RATE, "standard")
        await session.apush(noise(CHUNK), T0)
        with pytest.raises(RuntimeError, match=r"await session\.aclose"):
            session.close()  # it would block the loop it runs on
        with pytest.raises(RuntimeError, match=r"client\.aclose"):
            client.close()
        await client.aclose()

    asyncio.run(scenario())
    assert client.stats().sessions == 0
