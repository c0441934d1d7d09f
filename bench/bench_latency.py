"""Enqueue -> durable delay of live sessions, paced in real time, drained by a real worker.

Run: ``.venv/bin/python bench/bench_latency.py [--sessions N] [--minutes M] [--quick]``.

N sessions (bench/load.py) each append one 5 s chunk every 5 s of wall time for M
minutes through the pusher's append script, then close (end entry, urgent); starts are
staggered over one flush period (min of AUDIOSYNC_OBJECT_SECONDS and the max age) so
appends and flushes spread evenly. One ``celery -A workers worker --concurrency=2 -B``
(two pool processes, the sweep embedded) drains them into fake-gcs-server.

Delay of a chunk = ``timeCreated`` of the object holding it (fake-gcs-server, listed with
google-cloud-storage after the drain) minus the time right before its append call (an
upper bound on its stream id's Redis time: same machine clock; bench/load.py). Objects
are mapped to chunks by their names' start/end times. Printed: p50/p90/p99/max, the chunk
count (every planned chunk must be found exactly once), whether p99 <= 65 s, and what
loaded the machine (CPU of each process over the run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from bench.bench_flush import group_cpu_seconds
from bench.load import (
    Plan,
    Pushers,
    PushResult,
    StoredObject,
    bench_client,
    clock_offset,
    coverage,
    list_objects,
    log_errors,
    machine_busy,
    percentile,
    pid_cpu_seconds,
    plan,
    pusher_client,
    pusher_settings,
    wait_drained,
    worker_log,
)

GOAL_P99_SECONDS = 65.0


@dataclass
class CpuSnapshot:
    at: float
    machine: tuple[float, float]
    worker: float
    servers: dict[str, float]
    bench: float


def cpu_snapshot(worker_pgid: int, servers: dict[str, int]) -> CpuSnapshot:
    t = os.times()
    return CpuSnapshot(
        at=time.monotonic(),
        machine=machine_busy(),
        worker=group_cpu_seconds(worker_pgid),
        servers={name: pid_cpu_seconds(pid) for name, pid in servers.items()},
        bench=t.user + t.system,
    )


def spread(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    v = sorted(x * scale for x in values if not math.isnan(x))
    if not v:
        return "(none)"
    return (
        f"p50 {percentile(v, 50):.2f} {unit}, p90 {percentile(v, 90):.2f}, "
        f"p99 {percentile(v, 99):.2f}, max {v[-1]:.2f} (n = {len(v):,})"
    )


def object_due(
    plan: Plan, pushed: PushResult, obj: StoredObject, max_age: float, object_seconds: float
) -> float:
    """When the flush policy would first write the object (time.time() scale): the earliest
    of its oldest chunk's append + the max age, its last chunk's append if it is a full
    object, and its session's close (end entry) if it holds the last chunk. A sweep, a
    shard task and a flush after that is the fleet's lag."""
    i, last = obj.session, obj.first_seq + obj.chunks - 1
    due = pushed.before[i][obj.first_seq] + max_age
    if obj.chunks * plan.chunk_seconds >= object_seconds:
        due = min(due, pushed.before[i][last])
    if last == plan.chunks - 1:
        due = min(due, pushed.closed[i])
    return due


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, help="live sessions (default 1000; quick 50)")
    parser.add_argument("--minutes", type=float, help="audio per session (default 4; quick 1.5)")
    parser.add_argument(
        "--max-age", type=float, help="AUDIOSYNC_BATCH_MAX_AGE_SECONDS (default 60; quick 20)"
    )
    parser.add_argument("--sweep", type=float, default=5.0, help="AUDIOSYNC_SWEEP_INTERVAL_SECONDS")
    parser.add_argument("--stagger", type=float, help="seconds the starts spread over")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument("--threads", type=int, default=4, help="pusher threads")
    parser.add_argument("--cluster", action="store_true", help="streams on a 3-master cluster")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true", help="50 sessions, 1.5 min, max age 20 s")
    parser.add_argument("--dump", type=Path, help="write every object and append time as JSON")
    args = parser.parse_args()
    sessions = args.sessions or (50 if args.quick else 1000)
    minutes = args.minutes or (1.5 if args.quick else 4.0)
    max_age = args.max_age or (20.0 if args.quick else 60.0)
    wall_started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="audiosync-bench-") as tmp:
        stack = LocalStack(workdir=Path(tmp) / "stack", cluster=args.cluster)
        with stack as info:
            env = {
                **info.env(),
                "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": repr(max_age),
                "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": repr(args.sweep),
            }
            settings = pusher_settings(env)
            chunks = round(minutes * 60 / settings.chunk_seconds)
            stagger = (
                args.stagger if args.stagger is not None else min(settings.object_seconds, max_age)
            )
            the_plan = plan(settings, sessions, chunks, stagger)
            client = pusher_client(settings)
            stats = bench_client(settings)
            offset = clock_offset(stats)
            worker = processes.worker(env, Path(tmp), name="bench", concurrency=args.concurrency)
            assert worker.pid is not None
            try:
                t0 = time.time() + 2.0
                cpu0 = cpu_snapshot(worker.pid, stack.pids)
                pushed = Pushers(the_plan, client, args.threads).run(t0)
                drained_at = wait_drained(stats, settings.due_shards, args.drain_timeout)
                cpu1 = cpu_snapshot(worker.pid, stack.pids)
                objects = list_objects(info.gcs_url, info.bucket, the_plan)
            finally:
                worker.stop()
            errors = log_errors(worker.log)
            did = worker_log(worker.log)
    wall = time.monotonic() - wall_started

    cover = coverage(the_plan, objects)
    if args.dump:
        args.dump.write_text(
            json.dumps(
                {
                    "t0": t0,
                    "objects": [dataclasses.asdict(o) for o in objects],
                    "before": pushed.before,
                    "after": pushed.after,
                    "urgent": pushed.urgent_chunk,
                    "closed": pushed.closed,
                }
            )
        )
    delays = [
        cover.durable[i][k] - pushed.before[i][k] for i in range(sessions) for k in range(chunks)
    ]
    bracket = [
        pushed.after[i][k] - pushed.before[i][k] for i in range(sessions) for k in range(chunks)
    ]
    lag = [
        o.created - object_due(the_plan, pushed, o, max_age, settings.object_seconds)
        for o in objects
    ]
    per_object = [o.chunks for o in objects]
    finite = sorted(d for d in delays if not math.isnan(d))
    p99 = percentile(finite, 99)
    last_append = max(pushed.appends)
    span = cpu1.at - cpu0.at
    busy = (cpu1.machine[0] - cpu0.machine[0]) / (cpu1.machine[1] - cpu0.machine[1])
    cores = os.cpu_count() or 1

    print(f"store                       {'3-master valkey cluster' if args.cluster else 'valkey'}")
    print(f"sessions x audio            {sessions:,} x {chunks} chunks of 5 s ({minutes:g} min)")
    print(
        f"settings                    max age {max_age:g} s, object {settings.object_seconds:g} s, "
        f"sweep {args.sweep:g} s, stagger {stagger:g} s, worker concurrency {args.concurrency}"
    )
    print(f"containers built in         {the_plan.built_in:.1f} s (before the run)")
    print(
        f"Redis TIME - time.time()    {1000 * offset[0]:+.2f} ms "
        f"(+- {500 * offset[1]:.2f} ms: the same clock)"
    )
    print(
        f"appends                     {len(pushed.appends):,} ({pushed.urgent:,} urgent, "
        f"{pushed.errors} failed)"
    )
    print(f"append lateness             {spread(pushed.lateness, 'ms', 1000)}")
    print(f"append round trip           {spread(bracket, 'ms', 1000)}")
    print(f"pushed for                  {pushed.finished_at - t0:.1f} s")
    if drained_at is None:
        print(f"drained                     NOT within {args.drain_timeout:.0f} s")
    else:
        print(f"drained                     {drained_at - last_append:.1f} s after the last append")
    print(
        f"objects                     {len(objects):,}, chunks each: mean "
        f"{sum(per_object) / max(1, len(per_object)):.2f}, min {min(per_object, default=0)}, "
        f"max {max(per_object, default=0)}; bytes each: mean "
        f"{sum(o.size for o in objects) / max(1, len(objects)):,.0f}"
    )
    print(
        f"chunks                      {sessions * chunks:,} planned, {len(finite):,} stored, "
        f"{cover.missing} missing, {cover.duplicated} stored twice"
    )
    print(f"delay (durable - append)    {spread(delays)}")
    print(f"object lag (durable - due)  {spread(lag)}")  # due: when the policy would cut it
    verdict = "yes" if p99 <= GOAL_P99_SECONDS and cover.missing == 0 else "NO"
    print(f"goal p99 <= {GOAL_P99_SECONDS:g} s             {verdict} (p99 {p99:.2f} s)")
    print(
        f"CPU, {span:.0f} s of run          machine {100 * busy:.0f} % busy of {cores} cores; "
        f"worker {100 * (cpu1.worker - cpu0.worker) / span:.0f} %, "
        + ", ".join(
            f"{name} {100 * (cpu1.servers[name] - cpu0.servers.get(name, 0.0)) / span:.0f} %"
            for name in sorted(cpu1.servers)
        )
        + f", bench (pushers) {100 * (cpu1.bench - cpu0.bench) / span:.0f} % of one core"
    )
    print(f"worker (from its log)       {did.summary()}")
    print(f"worker log errors           {errors}")
    print(f"run time                    {wall:.0f} s")


if __name__ == "__main__":
    main()
