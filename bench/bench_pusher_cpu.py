"""CPU of the whole pusher path per session-minute vs bare libopus on the same audio.

Run: ``.venv/bin/python bench/bench_pusher_cpu.py [--rounds R] [--seconds S] [--quick]
[--profile]``.

Per configuration (16 and 8 kHz, ``enhanced`` and ``standard``), in the same process and
the same run, side by side:

- **pusher**: an ``AudioSyncClient`` (default settings, its thread pool, breaker and
  maintenance thread) against a real valkey of its own (``StandaloneValkey``); one
  session on an asyncio loop gets S seconds of ``audiosync_dev.speech.speech_like`` audio
  as 20 ms frames through ``await session.apush(frame, timestamp)``, then
  ``await session.aclose()``. Pushed faster than real time, but after each 5 s chunk's
  frames the loop waits (``asyncio.sleep(0.02)`` polls, counted for the pusher) until the
  chunk is in Redis, so every chunk is its own append as at real-time pace.
- **bare**: one ``opuslib.Encoder`` set up as the session's own (application, bitrate,
  complexity and VBR read from the session's encoder), encoding the same 20 ms frames,
  and nothing else.

CPU is ``time.process_time()`` of this process (every thread: the pool, the maintenance
thread, the loop); valkey's own CPU is not in it. The machine's load changes by the
second, so the two are measured side by side chunk by chunk: for each 5 s chunk, its 250
frames through the pusher (until the chunk is in Redis) and the same 250 frames through
the bare encoder, in alternating order (pusher first for even chunks, bare first for odd
ones, the other way round in odd rounds); the session's ``open_session`` and ``aclose``
count for the pusher. A round is one session of S seconds; the figures are medians over
the rounds, the overhead the median of each round's pusher / bare - 1. "apush us/frame"
is the loop thread's CPU in ``apush`` per 20 ms frame (``time.thread_time``; the encoding
runs on the pool, so this is what the event loop itself pays per frame).

The pusher encodes one 20 ms frame more per 5 s chunk than the bare encoder (each chunk is
its own Opus stream, padded to cover the 6.5 ms look-ahead: 251 frames instead of 250),
0.4 % of the encoding by construction.

``--profile``: one session-minute of 16 kHz ``enhanced`` under cProfile, with the pool
replaced by an inline executor (everything on the profiled thread), top functions by own
time; what is not libopus is where the overhead goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import opuslib

from audiosync_dev.localstack import StandaloneValkey
from audiosync_dev.speech import speech_like
from backend_hooks.contract.codec import frame_samples
from backend_hooks.contract.entries import ENHANCED, STANDARD
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.client import AudioSyncClient
from backend_hooks.pusher.session import Session

CONFIGS = ((16000, ENHANCED), (16000, STANDARD), (8000, ENHANCED), (8000, STANDARD))
FRAME_SECONDS = 0.02
SETTLE_SECONDS = 0.15
SECRET = "bench-secret-" + "s" * 32
T = TypeVar("T")


def frames_of(pcm: bytes, rate: int) -> list[bytes]:
    step = 2 * frame_samples(rate)
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def bare_encoder(session: Session) -> opuslib.Encoder:
    """An encoder set up exactly as ``session``'s own (application VOIP, its bitrate,
    complexity and VBR, read from it: whatever the settings made them)."""
    pusher = session._encoder._encoder
    encoder = opuslib.Encoder(session.sample_rate, 1, opuslib.APPLICATION_VOIP)
    encoder.bitrate = pusher.bitrate
    encoder.complexity = pusher.complexity
    encoder.vbr = pusher.vbr
    return encoder


@dataclass(frozen=True)
class Round:
    pusher: float  # CPU seconds, every thread
    bare: float
    waits: float  # the loop thread's CPU while it waited for chunks (in ``pusher``)
    apush_per_frame: float  # the loop thread's CPU in ``apush``, seconds per frame


async def _settled(session: Session) -> float:
    """Wait until the session's chunks are in Redis; returns this thread's CPU for it."""
    c0 = time.thread_time()
    await asyncio.sleep(SETTLE_SECONDS)  # a chunk takes ~50-100 ms: few wake-ups
    while session.unsent_chunks:
        await asyncio.sleep(0.01)
    return time.thread_time() - c0


async def push_session(
    client: AudioSyncClient, frames: list[bytes], rate: int, level: str, t0: float
) -> Session:
    """The whole session (for the profiler): open, every frame, close."""
    per_chunk = round(client.settings.chunk_seconds / FRAME_SECONDS)
    session = client.open_session("bench-user", "bench-conversation", rate, level)
    for i, frame in enumerate(frames):
        await session.apush(frame, t0 + i * FRAME_SECONDS)
        if (i + 1) % per_chunk == 0:
            await _settled(session)
    await session.aclose()
    return session


async def paired_round(
    client: AudioSyncClient, frames: list[bytes], rate: int, level: str, flip: bool
) -> Round:
    """CPU of one session over ``frames``, pusher and bare measured chunk by chunk in
    alternating order, so both see the same machine (its load changes by the second)."""
    per_chunk = round(client.settings.chunk_seconds / FRAME_SECONDS)
    samples = frame_samples(rate)
    t0 = time.time()
    pusher = bare = waits = apush = 0.0

    c0 = time.process_time()
    session = client.open_session("bench-user", "bench-conversation", rate, level)
    pusher += time.process_time() - c0
    encoder = bare_encoder(session)
    for k, start in enumerate(range(0, len(frames), per_chunk)):
        piece = frames[start : start + per_chunk]
        for side in ("pusher", "bare") if (k % 2 == 0) != flip else ("bare", "pusher"):
            c0 = time.process_time()
            if side == "pusher":
                l0 = time.thread_time()
                for i, frame in enumerate(piece, start):
                    await session.apush(frame, t0 + i * FRAME_SECONDS)
                apush += time.thread_time() - l0
                waits += await _settled(session)
                pusher += time.process_time() - c0
            else:
                for frame in piece:
                    encoder.encode(frame, samples)
                bare += time.process_time() - c0
    c0 = time.process_time()
    await session.aclose()
    pusher += time.process_time() - c0
    return Round(pusher, bare, waits, apush / len(frames))


def settings_for(url: str) -> Settings:
    return Settings.from_env(
        {"AUDIOSYNC_REDIS_URL": url, "ENCRYPTION_SECRET": SECRET}, role="pusher"
    )


def measure(url: str, rounds: int, seconds: float) -> None:
    minutes = seconds / 60
    print(f"{rounds} rounds x {seconds:g} s of audio per configuration, order alternating")
    print(
        f"{'rate':>6} {'level':>9} {'pusher ms/min':>14} {'bare ms/min':>12} "
        f"{'overhead':>9} {'min..max':>15} {'waits ms/min':>13} {'overhead w/o waits':>19} "
        f"{'apush us/frame':>14}"
    )
    loop = asyncio.new_event_loop()
    client = AudioSyncClient(settings_for(url))
    try:
        for rate, level in CONFIGS:
            frames = frames_of(speech_like(seconds, rate, seed=rate), rate)
            # a warm-up (first script load, first connections, caches)
            loop.run_until_complete(paired_round(client, frames[:500], rate, level, False))
            rounds_done = [
                loop.run_until_complete(paired_round(client, frames, rate, level, flip=r % 2 == 1))
                for r in range(rounds)
            ]
            pusher = [r.pusher for r in rounds_done]
            bare = [r.bare for r in rounds_done]
            waits = [r.waits for r in rounds_done]
            overheads = [100 * (r.pusher / r.bare - 1) for r in rounds_done]
            net = [100 * ((r.pusher - r.waits) / r.bare - 1) for r in rounds_done]
            apush_us = 1e6 * statistics.median(r.apush_per_frame for r in rounds_done)
            print(
                f"{rate:>6} {level:>9} {1000 * statistics.median(pusher) / minutes:>14.1f} "
                f"{1000 * statistics.median(bare) / minutes:>12.1f} "
                f"{statistics.median(overheads):>8.1f}% "
                f"{f'{min(overheads):.1f}..{max(overheads):.1f}%':>15} "
                f"{1000 * statistics.median(waits) / minutes:>13.1f} "
                f"{statistics.median(net):>18.1f}% {apush_us:>12.2f}",
                flush=True,
            )
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


class InlineExecutor(ThreadPoolExecutor):
    """Runs what is submitted at once, on the caller's thread (for the profiler only)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def profile(url: str, seconds: float) -> None:
    rate, level = 16000, ENHANCED
    frames = frames_of(speech_like(seconds, rate, seed=rate), rate)
    loop = asyncio.new_event_loop()
    client = AudioSyncClient(settings_for(url))
    pool = client.executor
    client.executor = InlineExecutor()
    try:
        loop.run_until_complete(push_session(client, frames[:500], rate, level, time.time()))
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(push_session(client, frames, rate, level, time.time()))
        profiler.disable()
    finally:
        client.executor = pool
        loop.run_until_complete(client.aclose())
        loop.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    print(f"cProfile, {seconds:g} s of {rate} Hz {level}, inline executor:")
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per round")
    parser.add_argument("--quick", action="store_true", help="1 round x 5 s (a few seconds)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rounds, seconds = (1, 5.0) if args.quick else (args.rounds, args.seconds)
    with tempfile.TemporaryDirectory() as tmp, StandaloneValkey(Path(tmp)) as valkey:
        if args.profile:
            profile(valkey.url, seconds)
        else:
            measure(valkey.url, rounds, seconds)


if __name__ == "__main__":
    main()
