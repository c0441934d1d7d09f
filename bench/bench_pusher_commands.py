"""Pusher-side Redis commands per session-second, usage counters on.

Run: ``.venv/bin/python bench/bench_pusher_commands.py [--sessions N] [--seconds S]
[--rate R] [--quick]``.

N sessions (``AudioSyncClient`` + ``Session``, default settings, ``enhanced``) against a
valkey of their own (``StandaloneValkey``: nothing else talks to it), each with a usage
counter (``client.usage_counter``, enabled, a positive limit) that gets ``add(20)`` per
20 ms frame, as the backend counts speech-to-text time. Each session pushes S seconds of
speech-like audio as 20 ms frames with ``apush``, faster than real time: the sessions
advance in lockstep, and at each 5 s chunk boundary the loop waits until every session's
chunk is in Redis, so each chunk is its own append as at real-time pace. The client's
clock is injected (the audio time pushed so far), and every 60 s of audio time each
counter is flushed explicitly (``await counter.aflush()``: what ``usage.periodic`` does
every 60 s of wall time); at the end every session closes and its counter is flushed once
more (``periodic``'s final flush), then ``client.aclose()``.

Counting: ``CONFIG RESETSTAT`` before the client exists, ``INFO commandstats`` after it
closed, so the pusher's whole life is in it (its connections' ``CLIENT SETINFO``, the shard
count's ``SADD``, the first ``EVALSHA``'s ``NOSCRIPT`` and the ``EVAL`` that
sends the script once to that node). A
``MONITOR`` (bench/bench_commands.py's ``MonitorTap``) tells the commands the pusher sends
(a script call counts as one) from the ones the append script runs inside (``GET``,
``XADD``, ``SET``, ``TIME``, ``ZADD``); ``INFO commandstats`` counts both, and its total,
less the bench's own commands, must equal what MONITOR saw (printed as a check).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

from audiosync_dev.localstack import StandaloneValkey
from audiosync_dev.speech import speech_like
from backend_hooks.contract.entries import ENHANCED
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.client import AudioSyncClient
from backend_hooks.pusher.session import Session
from backend_hooks.pusher.usage import FLUSH_INTERVAL_SECONDS, UsageCounter
from bench.bench_commands import MonitorTap, script_names
from bench.bench_pusher_cpu import FRAME_SECONDS, SECRET, frames_of
from bench.load import BENCH_NAME, commandstats

AUDIO_BANK_SECONDS = 60  # the sessions cycle through one minute of audio (memory)
USAGE_LIMIT_MS = 3_600_000
BENCH_COMMANDS = {"CONFIG RESETSTAT", "INFO"}


class AudioClock:
    """The pusher's clock in this bench: the audio time pushed so far."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.seconds = 0.0

    def now(self) -> float:
        return self.start + self.seconds


async def _all_settled(sessions: list[Session]) -> None:
    while any(s.unsent_chunks for s in sessions):
        await asyncio.sleep(0.01)


async def drive(url: str, sessions: int, seconds: float, rate: int, clock: AudioClock) -> float:
    """Run the sessions; returns the wall seconds it took."""
    settings = Settings.from_env(
        {"AUDIOSYNC_REDIS_URL": url, "ENCRYPTION_SECRET": SECRET}, role="pusher"
    )
    client = AudioSyncClient(settings, clock=clock.now)
    frames = frames_of(speech_like(AUDIO_BANK_SECONDS, rate, seed=rate), rate)
    per_chunk = round(settings.chunk_seconds / FRAME_SECONDS)
    per_flush = round(FLUSH_INTERVAL_SECONDS / FRAME_SECONDS)
    frame_ms = round(FRAME_SECONDS * 1000)
    started = time.monotonic()
    opened: list[Session] = []
    counters: list[UsageCounter] = []
    for i in range(sessions):
        uid = f"bench-user-{i}"
        opened.append(client.open_session(uid, f"bench-conversation-{i}", rate, ENHANCED))
        counters.append(client.usage_counter(uid, enabled=True, limit_ms=USAGE_LIMIT_MS))
    steps = round(seconds / FRAME_SECONDS)
    for step in range(steps):
        clock.seconds = step * FRAME_SECONDS
        timestamp = clock.now()
        frame = frames[step % len(frames)]
        for session, counter in zip(opened, counters, strict=True):
            await session.apush(frame, timestamp)
            counter.add(frame_ms)
        if (step + 1) % per_chunk == 0:
            await _all_settled(opened)
        if (step + 1) % per_flush == 0:
            clock.seconds = (step + 1) * FRAME_SECONDS
            await asyncio.gather(*(c.aflush() for c in counters))
    clock.seconds = steps * FRAME_SECONDS
    for session in opened:
        await session.aclose()
    await asyncio.gather(*(c.aflush() for c in counters))
    await client.aclose()
    return time.monotonic() - started


def _stat_name(monitor_name: str) -> str:
    """``EVALSHA APPEND`` -> ``evalsha``, ``SCRIPT LOAD`` -> ``script|load``."""
    head, _, rest = monitor_name.partition(" ")
    if head == "EVALSHA" or not rest:
        return head.lower()
    return f"{head}|{rest}".lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=300.0, help="audio per session")
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--quick", action="store_true", help="2 sessions x 61 s, 8 kHz")
    args = parser.parse_args()
    sessions, seconds, rate = (
        (2, 61.0, 8000) if args.quick else (args.sessions, args.seconds, args.rate)
    )
    session_seconds = sessions * seconds
    with tempfile.TemporaryDirectory() as tmp, StandaloneValkey(Path(tmp)) as valkey:
        bench = redis.Redis.from_url(valkey.url, client_name=BENCH_NAME)
        bench.ping()
        tap = MonitorTap("127.0.0.1", valkey.port, script_names())
        tap.start()
        bench.config_resetstat()  # (MONITOR does not show CONFIG)
        wall = asyncio.run(drive(valkey.url, sessions, seconds, rate, AudioClock(time.time())))
        stats = commandstats(bench)
        tap.stop()
    window: list[tuple[str, bool]] = []
    for event in tap.events:
        if event.side == "bench":
            if event.command == "INFO":
                break
            continue
        window.append((event.command, event.in_script))  # every other connection: the pusher
    sent = Counter(c for c, inner in window if not inner)
    inner = Counter(c for c, inner in window if inner)
    seen: Counter[str] = Counter()
    for command, n in (sent + inner).items():
        seen[_stat_name(command)] += n
    stats.pop("config|resetstat", None)  # the bench's own, the only one before its INFO
    mismatches = {
        name: (stats.get(name, 0), seen.get(name, 0))
        for name in set(stats) | set(seen)
        if stats.get(name, 0) != seen.get(name, 0)
    }

    print(
        f"{sessions} sessions x {seconds:g} s of {rate} Hz audio = {session_seconds:g} "
        f"session-seconds, pushed in {wall:.1f} s of wall time"
    )
    print(f"{'sent by the pusher':<34} {'calls':>7} {'per session-s':>14}")
    for name, n in sorted(sent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<32} {n:>7} {n / session_seconds:>14.4f}")
    total_sent = sum(sent.values())
    usage = sent["INCRBY"] + sent["EXPIREAT"]
    print(f"  {'total sent':<32} {total_sent:>7} {total_sent / session_seconds:>14.4f}")
    print(f"  {'of which usage counters':<32} {usage:>7} {usage / session_seconds:>14.4f}")
    print(f"{'run inside scripts':<34}")
    for name, n in sorted(inner.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<32} {n:>7} {n / session_seconds:>14.4f}")
    total_inner = sum(inner.values())
    print(f"  {'total inside scripts':<32} {total_inner:>7} {total_inner / session_seconds:>14.4f}")
    both = total_sent + total_inner
    print(f"{'sent + inside scripts':<34} {both:>7} {both / session_seconds:>14.4f}")
    print(
        f"check: INFO commandstats counted {sum(stats.values())} (the bench's CONFIG RESETSTAT "
        f"left out), MONITOR saw {both}: "
        + ("equal, command by command" if not mismatches else f"DIFFERENT {mismatches}")
    )


if __name__ == "__main__":
    main()
