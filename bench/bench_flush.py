"""Worker CPU per flushed object and a burst drain: shard tasks and one task per session,
side by side in one run.

Run: ``.venv/bin/python bench/bench_flush.py [--sessions N] [--chunks C] [--paths shard,session]``.

For each path, N closed sessions of C chunks (5 s, 16 kHz, standard) are appended straight
into Redis with the pusher's append script (the chunks are built once per session from one
set of Opus packets: encoding is the pusher's cost, measured by bench_pusher.py), all due
at once. Then one ``celery -A workers worker --concurrency=2`` drains them:

- ``shard``: the fleet as it runs, with its embedded beat (``-B``): the sweep sends one
  ``audiosync.flush_shard`` per shard with due sessions; each flushes many sessions. The
  script sends the first sweep itself, as beat would within ``--sweep-interval``.
- ``session``: the path before shard tasks, for comparison: this script claims the due
  sessions as the old sweep did and sends one ``audiosync.flush_session`` task each.

Measured in the same run, per path: the wall time to drain, the CPU time (user + system) of
every process of the worker's group from /proc (the emulator's and Redis's CPU are not
counted in it; the shard path's includes its embedded beat), and apart from it the CPU of
the store's valkey (``INFO cpu``) and of fake-gcs-server (/proc), which share the machine
with the worker; and the commands of the stream store and of the broker, two separate
valkeys, from ``INFO commandstats``.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from audiosync_dev.speech import speech_like
from backend_hooks.contract import container, redis_keys
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.entries import KIND_CHUNK, KIND_END, NewEntry
from backend_hooks.pusher.appender import Appender
from workers.store import WorkerStore

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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


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
        keys = redis_keys.SessionKeys(sid, redis_keys.shard_of(sid, shards))
        appender.append(keys, entries, first_n=0, urgent=True, max_age_seconds=60)
    return data_bytes / sessions


@dataclass
class PathResult:
    path: str
    objects: int
    drained: float
    cpu: float
    store_commands: int
    broker_commands: int
    tasks: int
    memory_per_session: float  # Redis used_memory added per enqueued session, bytes
    store_cpu: float  # CPU seconds of the store's valkey while draining
    gcs_cpu: float  # CPU seconds of fake-gcs-server while draining


def _drive_one_task_per_session(app: Celery, store: WorkerStore, lease: float) -> int:
    """What the sweep did before shard tasks: claim due sessions, one task each."""
    sent = 0
    for shard in store.all_shards():
        while True:
            now = store.time()
            claimed = store.claim_due(now, 500, now + lease, shard)
            for session_id in claimed:
                app.send_task("audiosync.flush_session", (session_id, shard), queue="audiosync")
            sent += len(claimed)
            if len(claimed) < 500:
                break
    return sent


def run_path(path: str, args: argparse.Namespace, tmp: Path) -> PathResult:
    stack = LocalStack(workdir=tmp / f"{path}-stack")
    with stack as info, LocalStack(workdir=tmp / f"{path}-broker") as broker:
        emulator = stack.pids["fake-gcs-server"]
        env = {
            **info.env(),
            "CELERY_BROKER_URL": broker.redis_url,
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": str(args.sweep_interval),
            "AUDIOSYNC_DUE_SHARDS": str(args.shards),
        }
        client = redis.Redis.from_url(info.redis_url)
        broker_client = redis.Redis.from_url(broker.redis_url)
        empty = int(client.info("memory")["used_memory"])
        enqueue(client, args.sessions, args.chunks, args.shards)
        held = (int(client.info("memory")["used_memory"]) - empty) / args.sessions
        worker = processes.worker(
            env, tmp, name=f"bench-{path}", concurrency=2, beat=path == "shard"
        )
        assert worker.pid is not None
        try:
            idle_cpu = group_cpu_seconds(worker.pid)  # start-up, before any flush
            store_before, broker_before = commands(client), commands(broker_client)
            store_cpu_before = server_cpu(client)
            gcs_cpu_before = process_cpu_seconds(emulator)
            started = time.monotonic()
            tasks = 0
            if path == "shard":  # the sweep beat would send within an interval, sent now
                Celery(broker=broker.redis_url).send_task("audiosync.sweep", queue="audiosync")
            if path == "session":
                app = Celery(broker=broker.redis_url)
                store = WorkerStore(client, args.shards)
                tasks = _drive_one_task_per_session(app, store, lease=30.0)
            streams = redis_keys.session_key_pattern("chunks")
            while client.keys(redis_keys.DUE_KEY_PATTERN) or client.keys(streams):
                time.sleep(0.05)
            drained = time.monotonic() - started
            cpu = group_cpu_seconds(worker.pid) - idle_cpu
            store_calls = commands(client) - store_before
            store_cpu = server_cpu(client) - store_cpu_before
            gcs_cpu = process_cpu_seconds(emulator) - gcs_cpu_before
            broker_calls = commands(broker_client) - broker_before
        finally:
            worker.stop()
        if path == "shard":
            log = worker.log.read_text(errors="replace")
            tasks = len(re.findall(r"shard -?\d+: \d+ flushes", log))
        return PathResult(
            path,
            args.sessions,
            drained,
            cpu,
            store_calls,
            broker_calls,
            tasks,
            held,
            store_cpu,
            gcs_cpu,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=1, help="5 s chunks per session (12: 60 s)")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--paths", default="shard,session", help="comma-separated: shard,session")
    parser.add_argument(
        "--sweep-interval",
        type=float,
        default=0.2,
        help="AUDIOSYNC_SWEEP_INTERVAL_SECONDS of the worker (5 is the default of a fleet); "
        "an idle worker's beat and sweeps cost CPU per second, counted in the figures",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="audiosync-bench-") as tmp:
        for path in args.paths.split(","):
            results.append(run_path(path, args, Path(tmp)))
    print(
        f"{args.sessions:,} sessions of {args.chunks} x 5 s, {args.shards} shards, "
        f"one worker --concurrency=2, sweep every {args.sweep_interval:g} s"
    )
    print(
        "| path | tasks | drained in | objects/s | worker CPU / object | store cmds / object "
        "| broker cmds / object | sessions per worker vCPU at 60 s objects "
        "| Redis memory / session held | store valkey CPU / object | emulator CPU / object |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        per_object = r.cpu / r.objects
        print(
            f"| {r.path} | {r.tasks:,} | {r.drained:.1f} s | {r.objects / r.drained:,.0f} "
            f"| {1000 * per_object:.2f} ms | {r.store_commands / r.objects:.1f} "
            f"| {r.broker_commands / r.objects:.2f} | {60 / per_object:,.0f} "
            f"| {r.memory_per_session:,.0f} B | {1e6 * r.store_cpu / r.objects:,.0f} µs "
            f"| {1e3 * r.gcs_cpu / r.objects:.2f} ms |"
        )


if __name__ == "__main__":
    main()
