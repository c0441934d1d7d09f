"""Worker CPU per flushed object, and a burst of due sessions drained by one worker.

Run: ``.venv/bin/python bench/bench_flush.py [--sessions N] [--chunks C]``.

N closed sessions of C chunks (5 s, 16 kHz, standard) are appended straight into Redis
with the pusher's append script (the chunks are built once per session from one set of
Opus packets: encoding is the pusher's cost, measured by bench_pusher.py), all due at
once. Then one ``celery -A workers worker --concurrency=2 -B`` drains them. Measured in
this run: the wall time to drain, the CPU time (user + system) of every process of the
worker's group from /proc (the emulator's and Redis's CPU are not counted), and the Redis
commands of the store and broker (one server here) from ``INFO commandstats``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import redis

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from audiosync_dev.speech import speech_like
from backend_hooks import container, redis_store
from backend_hooks.codec import ChunkEncoder
from backend_hooks.entries import KIND_CHUNK, KIND_END, NewEntry
from backend_hooks.redis_store import Appender

RATE = 16000
CHUNK_SECONDS = 5


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getpgid(pid) != pgid:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def enqueue(client: redis.Redis, sessions: int, chunks: int, shards: int = 16) -> float:
    encoder = ChunkEncoder(RATE)
    packets = encoder.encode(speech_like(CHUNK_SECONDS, RATE, seed=1))
    appender = Appender(client)
    now_us = int(time.time() * 1_000_000) - sessions * chunks * CHUNK_SECONDS * 1_000_000 // 10
    samples = CHUNK_SECONDS * RATE
    data_bytes = 0
    for s in range(sessions):
        sid = f"{s:032x}"
        entries = []
        for c in range(chunks):
            start = now_us + c * CHUNK_SECONDS * 1_000_000
            info = container.ChunkInfo(sid, c, start, RATE, samples)
            data = container.build_chunk(info, packets, encoder.pre_skip)
            data_bytes += len(data)
            entries.append(
                NewEntry(
                    kind=KIND_CHUNK,
                    uid=f"bench-u{s % 1000}",
                    cid=f"bench-c{s}",
                    enq_us=start,
                    level="standard",
                    rate=RATE,
                    seq=c,
                    start_us=start,
                    samples=samples,
                    data=data,
                )
            )
        entries.append(
            NewEntry(kind=KIND_END, uid=f"bench-u{s % 1000}", cid=f"bench-c{s}", enq_us=now_us)
        )
        keys = redis_store.SessionKeys(sid, redis_store.shard_of(sid, shards))
        appender.append(keys, entries, first_n=0, urgent=True, max_age_seconds=60)
    return data_bytes / sessions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=1, help="5 s chunks per session (12: 60 s)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="audiosync-bench-") as tmp,
        LocalStack(workdir=Path(tmp) / "stack") as info,
    ):
        client = redis.Redis.from_url(info.redis_url)
        t0 = time.monotonic()
        per_session = enqueue(client, args.sessions, args.chunks)
        enqueue_s = time.monotonic() - t0
        env = {**info.env(), "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2"}
        worker = processes.worker(env, Path(tmp), name="bench", concurrency=2)
        assert worker.pid is not None
        try:
            idle_cpu = group_cpu_seconds(worker.pid)  # start-up, before any flush
            before = commands(client)
            started = time.monotonic()
            streams = redis_store.session_key_pattern("chunks")
            while client.keys(redis_store.DUE_KEY_PATTERN) or client.keys(streams):
                time.sleep(0.05)
            drained = time.monotonic() - started
            cpu = group_cpu_seconds(worker.pid) - idle_cpu
            calls = commands(client) - before
        finally:
            worker.stop()
        objects = args.sessions
        print(f"sessions / objects          {args.sessions:,} / {objects:,}")
        print(f"audio per object            {args.chunks} x 5 s")
        print(f"bytes per object            {per_session:,.0f}")
        print(f"enqueued in                 {enqueue_s:.1f} s")
        print(f"drained in                  {drained:.1f} s ({objects / drained:,.0f} objects/s)")
        print(f"worker CPU                  {cpu:.1f} s = {1000 * cpu / objects:.2f} ms per object")
        print(f"Redis commands (all)        {calls:,} = {calls / objects:.1f} per object")
        at_60s = 60 / (cpu / objects)  # sessions one CPU second per second serves
        print(f"sessions per worker vCPU    {at_60s:,.0f} at one object per 60 s each")


if __name__ == "__main__":
    main()
