"""How long one sweep (``workers.tasks.dispatch_due``) takes, by shard count.

Run: ``.venv/bin/python bench/bench_sweep.py [--shards 16,256,4096]``.

For each count, against a local valkey (store) and a second one (broker): one sweep with
no shard due (what every idle interval and the end of every shard task costs), then one
with every shard due (each gets its hold and a ``flush_shard`` message). Wall time of the
call, median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import redis

from audiosync_dev.localstack import LocalStack
from backend_hooks.contract import redis_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", default="16,256,4096")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="audiosync-sweep-") as tmp,
        LocalStack(workdir=Path(tmp) / "store") as store_info,
        LocalStack(workdir=Path(tmp) / "broker") as broker_info,
    ):
        os.environ.update(store_info.env())
        os.environ["CELERY_BROKER_URL"] = broker_info.redis_url
        from backend_hooks.contract.settings import Settings
        from workers import tasks  # the app reads the broker from the environment
        from workers.context import WorkerContext

        client = redis.Redis.from_url(store_info.redis_url)
        broker = redis.Redis.from_url(broker_info.redis_url)
        print("| shards | sweep, none due | sweep, all due (tasks sent) |")
        print("|---|---|---|")
        for count in (int(c) for c in args.shards.split(",")):
            os.environ["AUDIOSYNC_DUE_SHARDS"] = str(count)
            ctx = WorkerContext.from_settings(Settings.from_env(role="fleet"))
            idle, busy, sent = [], [], 0
            for _ in range(args.repeat):
                client.flushall()
                broker.flushall()
                started = time.perf_counter()
                tasks.dispatch_due(ctx)
                idle.append(time.perf_counter() - started)
                now = ctx.store.time()
                pipe = client.pipeline(transaction=False)
                for shard in range(count):
                    pipe.zadd(redis_keys.due_key(shard), {f"due-{shard}": now - 1})
                pipe.execute()
                started = time.perf_counter()
                sent = tasks.dispatch_due(ctx)
                busy.append(time.perf_counter() - started)
            print(
                f"| {count:,} | {1000 * statistics.median(idle):,.1f} ms "
                f"| {1000 * statistics.median(busy):,.0f} ms ({sent:,}) |"
            )


if __name__ == "__main__":
    main()
