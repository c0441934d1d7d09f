"""N live sessions on one asyncio event loop at real-time pace, with Redis stopped meanwhile.

Run: ``.venv/bin/python bench/bench_pusher_loop.py [--sessions N] [--rate R] [--level L]
[--normal S] [--outage S] [--after S] [--quick]``.

One ``AudioSyncClient`` (default settings, its pool of ``AUDIOSYNC_PUSHER_THREADS``,
``AUDIOSYNC_SPOOL_DIR`` in a temporary directory) against a valkey of its own
(``StandaloneValkey``). N sessions, one asyncio task each, push a 20 ms frame of
speech-like audio every 20 ms of wall time (``await session.apush(frame, timestamp)``),
each on its own schedule; their starts are spread over one chunk (5 s), so frame times and
chunk boundaries are staggered evenly, as in a fleet of sessions that began at random
times. A task that wakes late pushes what it owes at once (real audio keeps coming).

First ``idle``: the ticker alone, no session yet (what the machine itself costs the loop:
other processes share its cores). Phases after the ramp: ``normal`` (Redis up),
``outage`` (``StandaloneValkey.stop()`` at its start, ``start()`` at its end, both off
the loop: the breaker opens, chunks go to the spool), ``after`` (Redis back: the spool
drains while the sessions go on). Then every
session closes (``aclose``), the bench waits until the spool is empty and closes the
client.

Measured per phase, on the loop:

- **stall**: a ticker task sleeps 1 ms at a time; its lateness (wake-up - due time) is how
  long the loop could not run it: max, p99, and ticks later than 20 ms;
- **apush**: the duration of each ``await session.apush`` (it never suspends unless a
  session's unencoded audio exceeds ``AUDIOSYNC_SESSION_BUFFER_SECONDS``): p50, p99, max;
- **push lateness**: how late the session tasks pushed against their schedule (max);
- **backlog**: chunks handed over and neither in Redis nor in the spool (the sum of
  ``Session.unsent_chunks``, sampled every 0.5 s), max and at the phase's end; the pool
  kept real time if it was at most N / 5 at the end of ``normal`` (one second's worth of
  chunk arrivals) — otherwise it is marked NOT KEPT;
- CPU of this process (its threads) and of the whole machine, as % of one core.

Audit at the end (every session's stream read with ``XRANGE``, parsed with
``backend_hooks.contract.entries.parse_entry``; ``enhanced`` records opened, containers parsed):
each session has every chunk seq 0..k-1 exactly once, each with the samples pushed
(the last chunk the remainder), the container holding those samples, one end marker, and
the spool is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import redis

from audiosync_dev.localstack import StandaloneValkey
from audiosync_dev.speech import speech_like
from backend_hooks.contract import container, envelope
from backend_hooks.contract.entries import (
    ENHANCED,
    PROTECTION_LEVELS,
    ChunkEntry,
    EndEntry,
    parse_entry,
)
from backend_hooks.contract.errors import EnqueueError
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.client import AudioSyncClient
from backend_hooks.pusher.session import Session
from bench.bench_pusher_cpu import FRAME_SECONDS, SECRET, frames_of
from bench.load import machine_busy, percentile

TICK_SECONDS = 0.001
STALL_GOAL_MS = 20.0
SAMPLE_SECONDS = 0.5
AUDIO_BANK_SECONDS = 60
DRAIN_TIMEOUT_SECONDS = 300.0


@dataclass
class Phase:
    name: str
    start: float  # loop time
    end: float
    ticks: array[float] = field(default_factory=lambda: array("d"))  # lateness, s
    apush: array[float] = field(default_factory=lambda: array("d"))  # duration, s
    push_late_max: float = 0.0
    backlog_max: int = 0
    backlog_end: int = 0
    cpu: float = 0.0  # this process, CPU seconds
    loop_cpu: float = 0.0  # the event loop's thread, CPU seconds
    machine: float = 0.0  # whole machine, CPU seconds
    note: str = ""


class Recorder:
    def __init__(self, phases: list[Phase]) -> None:
        self.phases = phases

    def at(self, t: float) -> Phase | None:
        for phase in self.phases:
            if phase.start <= t < phase.end:
                return phase
        return None


async def ticker(loop: asyncio.AbstractEventLoop, rec: Recorder, stop_at: float) -> None:
    due = loop.time() + TICK_SECONDS
    while due < stop_at:
        await asyncio.sleep(due - loop.time())
        now = loop.time()
        phase = rec.at(due)
        if phase is not None:
            phase.ticks.append(now - due)
        due = max(due + TICK_SECONDS, now)  # no debt: one sample per stall


async def run_session(
    loop: asyncio.AbstractEventLoop,
    session: Session,
    frames: list[bytes],
    offset: int,
    start_at: float,
    stop_at: float,
    rec: Recorder,
) -> int:
    """Push one frame every 20 ms from ``start_at`` to ``stop_at``; returns frames pushed."""
    wall_start = time.time() + (start_at - loop.time())
    k = 0
    due = start_at
    while due < stop_at:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = loop.time() - due
        t0 = time.perf_counter()
        await session.apush(frames[(offset + k) % len(frames)], wall_start + k * FRAME_SECONDS)
        took = time.perf_counter() - t0
        phase = rec.at(due)
        if phase is not None:
            phase.apush.append(took)
            phase.push_late_max = max(phase.push_late_max, late)
        k += 1
        due = start_at + k * FRAME_SECONDS
    return k


def backlog(sessions: list[Session]) -> int:
    return sum(s.unsent_chunks for s in sessions)


async def sampler(
    loop: asyncio.AbstractEventLoop, sessions: list[Session], rec: Recorder, stop_at: float
) -> None:
    current: Phase | None = None
    cpu0, loop_cpu0 = time.process_time(), time.thread_time()
    busy0, _ = machine_busy()
    while True:
        now = loop.time()
        phase = rec.at(now) if now < stop_at else None
        if phase is not current:  # a phase boundary: close the last one
            cpu, loop_cpu, (busy, _) = time.process_time(), time.thread_time(), machine_busy()
            if current is not None:
                current.backlog_end = backlog(sessions)
                current.cpu, current.machine = cpu - cpu0, busy - busy0
                current.loop_cpu = loop_cpu - loop_cpu0
            cpu0, loop_cpu0, busy0, current = cpu, loop_cpu, busy, phase
        if now >= stop_at:
            return
        if phase is not None:
            phase.backlog_max = max(phase.backlog_max, backlog(sessions))
        next_boundary = min(
            [p.start for p in rec.phases if p.start > now] + [stop_at], default=stop_at
        )
        await asyncio.sleep(max(0.0, min(SAMPLE_SECONDS, next_boundary - now)))


async def outage(loop: asyncio.AbstractEventLoop, valkey: StandaloneValkey, phase: Phase) -> None:
    await asyncio.sleep(max(0.0, phase.start - loop.time()))
    t0 = loop.time()
    await loop.run_in_executor(None, valkey.stop)
    stopped = loop.time()
    await asyncio.sleep(max(0.0, phase.end - loop.time()))
    t1 = loop.time()
    await loop.run_in_executor(None, valkey.start)
    answered = loop.time()
    phase.note = (
        f"valkey stopped {stopped - t0:.2f} s after the phase began (stop() took that), "
        f"start() called {t1 - t0:.1f} s after stop(), answering {answered - t1:.2f} s later: "
        f"down {answered - stopped:.1f} s"
    )


@dataclass
class Audit:
    sessions: int = 0
    chunks_expected: int = 0
    chunks_found: int = 0
    missing: int = 0
    duplicates: int = 0
    wrong_samples: int = 0
    bad_containers: int = 0
    end_markers_wrong: int = 0
    samples_expected: int = 0
    samples_found: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.missing == self.duplicates == self.wrong_samples == 0
            and self.bad_containers == self.end_markers_wrong == 0
            and self.samples_found == self.samples_expected
            and self.chunks_found == self.chunks_expected
        )


def audit(
    r: redis.Redis,
    sessions: list[Session],
    pushed: list[int],
    keys: envelope.UserKeys,
    chunk_seconds: float,
) -> Audit:
    result = Audit(sessions=len(sessions))
    for session, frames in zip(sessions, pushed, strict=True):
        rate = session.sample_rate
        per_frame = round(FRAME_SECONDS * rate)
        per_chunk = round(chunk_seconds * rate)
        total = frames * per_frame
        expected = math.ceil(total / per_chunk)
        result.chunks_expected += expected
        result.samples_expected += total
        seen: dict[int, int] = {}
        ends = 0
        raw_entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]], r.xrange(session.redis_keys.chunks)
        )
        for entry_id, raw in raw_entries:
            entry = parse_entry(entry_id, raw)
            if isinstance(entry, EndEntry):
                ends += 1
                continue
            assert isinstance(entry, ChunkEntry)
            seen[entry.seq] = seen.get(entry.seq, 0) + 1
            result.chunks_found += 1
            result.samples_found += entry.samples
            want = per_chunk if entry.seq < expected - 1 else total - per_chunk * (expected - 1)
            if entry.samples != want:
                result.wrong_samples += 1
            if not _container_holds(entry, keys):
                result.bad_containers += 1
        result.missing += sum(1 for seq in range(expected) if seq not in seen)
        result.duplicates += sum(n - 1 for n in seen.values())
        result.end_markers_wrong += ends != 1
    return result


def _container_holds(entry: ChunkEntry, keys: envelope.UserKeys) -> bool:
    """The entry's container parses and holds the samples the entry says."""
    try:
        data = entry.data
        if entry.level == ENHANCED:
            (record,) = envelope.open_records(keys, entry.uid, data)
            data = record.plaintext
        (parsed,) = container.parse_chunks(data)
        return bool(
            parsed.info.sample_count == entry.samples
            and parsed.info.seq == entry.seq
            and parsed.held_samples() >= entry.samples
        )
    except Exception:
        return False


def report_phase(phase: Phase, wall: float) -> None:
    ticks = sorted(phase.ticks)
    pushes = sorted(phase.apush)
    seconds = phase.end - phase.start
    over = sum(1 for t in ticks if t * 1000 > STALL_GOAL_MS)
    stall = 1000 * ticks[-1] if ticks else math.nan
    print(
        f"{phase.name:>7} {seconds:>5.1f} s | stall max {stall:7.1f} ms "
        f"p99 {1000 * percentile(ticks, 99):6.2f} p99.9 {1000 * percentile(ticks, 99.9):6.2f} "
        f"> {STALL_GOAL_MS:g} ms: {over:>3} ({'ok' if stall <= STALL_GOAL_MS else 'NOT MET'}) | "
        f"apush p50 {1e6 * percentile(pushes, 50):6.1f} us p99 {1e6 * percentile(pushes, 99):7.1f}"
        f" us max {1000 * pushes[-1] if pushes else math.nan:6.2f} ms ({len(pushes)}) | "
        f"push late max {1000 * phase.push_late_max:6.1f} ms | backlog max "
        f"{phase.backlog_max:>4} end {phase.backlog_end:>4} chunks | CPU % of a core: "
        f"process {100 * phase.cpu / wall:3.0f} loop thread {100 * phase.loop_cpu / wall:3.0f} "
        f"machine {100 * phase.machine / wall:3.0f}"
    )
    if phase.note:
        print(f"        {phase.note}")


async def close_client(client: AudioSyncClient) -> None:
    """``client.aclose()``, again until it succeeds (the bench must not leave its pool)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while True:
        try:
            await client.aclose()
            return
        except EnqueueError:
            if time.monotonic() > deadline:
                raise


class CountingHandler(logging.Handler):
    """Counts the pusher's log records by level (printing each would flood the output)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        self.first.setdefault(record.levelname, record.getMessage()[:160])


async def run(args: argparse.Namespace, valkey: StandaloneValkey, spool_dir: Path) -> bool:
    env = {
        "AUDIOSYNC_REDIS_URL": valkey.url,
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_SPOOL_DIR": str(spool_dir),
        "AUDIOSYNC_CHUNK_SECONDS": str(args.chunk_seconds),
    }
    if args.threads is not None:
        env["AUDIOSYNC_PUSHER_THREADS"] = str(args.threads)
    settings = Settings.from_env(env, role="pusher")
    loop = asyncio.get_running_loop()
    client = AudioSyncClient(settings)
    try:
        return await _run(args, loop, client, settings, valkey, spool_dir)
    finally:
        if not client._stop.is_set():
            await close_client(client)


async def _run(
    args: argparse.Namespace,
    loop: asyncio.AbstractEventLoop,
    client: AudioSyncClient,
    settings: Settings,
    valkey: StandaloneValkey,
    spool_dir: Path,
) -> bool:
    frames = frames_of(speech_like(AUDIO_BANK_SECONDS, args.rate, seed=args.rate), args.rate)
    sessions = [
        client.open_session(f"bench-user-{i}", f"bench-conversation-{i}", args.rate, args.level)
        for i in range(args.sessions)
    ]
    ramp = settings.chunk_seconds
    base = loop.time() + 0.2
    t0 = base + args.baseline
    phases = [Phase("idle", base, t0)] if args.baseline > 0 else []
    phases.append(Phase("ramp", t0, t0 + ramp))
    for name, seconds in (("normal", args.normal), ("outage", args.outage), ("after", args.after)):
        if seconds > 0:
            phases.append(Phase(name, phases[-1].end, phases[-1].end + seconds))
    stop_at = phases[-1].end
    rec = Recorder(phases)
    print(
        f"{args.sessions} sessions, {args.rate} Hz {args.level}, chunks of "
        f"{settings.chunk_seconds:g} s, {settings.pusher_threads} pusher threads, spool on; "
        f"phases: " + ", ".join(f"{p.name} {p.end - p.start:g} s" for p in phases),
        flush=True,
    )
    tasks = [
        asyncio.create_task(
            run_session(
                loop,
                s,
                frames,
                (i * 1009) % len(frames),
                t0 + i * ramp / args.sessions,
                stop_at,
                rec,
            )
        )
        for i, s in enumerate(sessions)
    ]
    side = [
        asyncio.create_task(ticker(loop, rec, stop_at)),
        asyncio.create_task(sampler(loop, sessions, rec, stop_at)),
    ]
    outage_phase = next((p for p in phases if p.name == "outage"), None)
    if outage_phase is not None:
        side.append(asyncio.create_task(outage(loop, valkey, outage_phase)))
    pushed = await asyncio.gather(*tasks)
    await asyncio.gather(*side)
    for phase in phases:
        report_phase(phase, phase.end - phase.start)

    c0 = loop.time()
    pending, rounds = list(sessions), 0
    while pending and loop.time() - c0 < DRAIN_TIMEOUT_SECONDS:
        rounds += 1
        results = await asyncio.gather(*(s.aclose() for s in pending), return_exceptions=True)
        for outcome in results:
            if isinstance(outcome, BaseException) and not isinstance(outcome, EnqueueError):
                raise outcome
        pending = [s for s, r in zip(pending, results, strict=True) if r is not None]
    closed = loop.time() - c0
    while client.stats().spooled_entries and loop.time() - c0 < DRAIN_TIMEOUT_SECONDS:
        await asyncio.sleep(0.2)
    drained = loop.time() - c0
    stats = client.stats()
    await close_client(client)
    spool_left = sum(1 for p in spool_dir.rglob("*") if p.is_file() and p.suffix == ".ready")
    kept = next((p for p in phases if p.name == "normal"), phases[0])
    kept_up = kept.backlog_end <= args.sessions / 5
    print(
        f"closed {len(sessions) - len(pending)} of {len(sessions)} sessions in {closed:.1f} s "
        f"({rounds} rounds of aclose: AUDIOSYNC_CLOSE_SECONDS each); spool empty "
        f"{drained:.1f} s after the pushes ended; {stats.breaker}; {stats.spool}; "
        f".ready files left: {spool_left}"
    )
    print(
        f"pool kept real time: {'yes' if kept_up else 'NOT KEPT'} (backlog {kept.backlog_end} "
        f"chunks at the end of {kept.name}, limit {args.sessions / 5:g})"
    )
    keys = envelope.UserKeys(SECRET.encode())
    r = redis.Redis.from_url(valkey.url)
    result = audit(r, sessions, list(pushed), keys, settings.chunk_seconds)
    r.close()
    print(
        f"audit: {result.sessions} sessions, chunks {result.chunks_found} of "
        f"{result.chunks_expected}, missing {result.missing}, duplicates {result.duplicates}, "
        f"wrong sample counts {result.wrong_samples}, bad containers {result.bad_containers}, "
        f"sessions without exactly one end marker {result.end_markers_wrong}; samples "
        f"{result.samples_found} of {result.samples_expected}: "
        f"{'NO AUDIO LOST' if result.ok and not spool_left else 'AUDIO LOST OR DUPLICATED'}"
    )
    stalls = [
        max(p.ticks, default=math.nan) * 1000 for p in phases if p.name not in ("idle", "ramp")
    ]
    print(
        f"longest loop stall, normal to after: {max(stalls):.1f} ms (goal <= {STALL_GOAL_MS:g} ms)"
        f"; apush p99 all phases: "
        f"{1e6 * percentile(sorted(x for p in phases for x in p.apush), 99):.1f} us"
    )
    return result.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--level", choices=PROTECTION_LEVELS, default=ENHANCED)
    parser.add_argument(
        "--baseline", type=float, default=5.0, help="seconds of the ticker alone, first"
    )
    parser.add_argument("--normal", type=float, default=30.0, help="seconds, Redis up")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds, Redis stopped")
    parser.add_argument("--after", type=float, default=20.0, help="seconds, Redis back")
    parser.add_argument("--chunk-seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, help="AUDIOSYNC_PUSHER_THREADS (default: its)")
    parser.add_argument(
        "--quick", action="store_true", help="10 sessions, 1 s chunks, phases of 1-1.5 s (~7 s)"
    )
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.normal, args.outage, args.after = 10, 1.0, 1.5, 1.0
        args.baseline = 0.5
        args.chunk_seconds = 1.0
    handler = CountingHandler()
    logging.getLogger("backend_hooks").addHandler(handler)
    logging.getLogger("backend_hooks").propagate = False
    with tempfile.TemporaryDirectory() as tmp:
        spool_dir = Path(tmp) / "spool"
        with StandaloneValkey(Path(tmp) / "valkey") as valkey:
            ok = asyncio.run(run(args, valkey, spool_dir))
    print(
        "pusher log: "
        + (", ".join(f"{n} {lvl}" for lvl, n in handler.counts.items()) or "nothing")
        + "".join(f"\n  first {lvl}: {msg}" for lvl, msg in handler.first.items())
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
