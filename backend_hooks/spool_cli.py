"""``python -m backend_hooks.spool_cli status|drain``: the pusher's disk spool by hand.

``status`` counts what waits in ``AUDIOSYNC_SPOOL_DIR`` (per owner directory, live or
dead). ``drain`` appends what dead pusher processes left there to Redis, in order, with
a progress bar, exactly as a starting pusher does in the background; a live pusher's
files are never touched (its lock is held). Settings come from the environment
(``AUDIOSYNC_REDIS_URL``, ``AUDIOSYNC_SPOOL_DIR``, ...; README "Settings").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from backend_hooks import redis_store, spool
from backend_hooks.errors import ConfigError
from backend_hooks.settings import Settings
from backend_hooks.spool_format import SpoolRecord, consecutive_runs


def _bar(total: int) -> Callable[[int], None]:
    done = [0]

    def step(count: int) -> None:
        done[0] += count
        width = 30
        filled = width * done[0] // max(total, 1)
        sys.stderr.write(f"\rdraining [{'#' * filled}{'.' * (width - filled)}] {done[0]}/{total}")
        sys.stderr.flush()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend_hooks.spool_cli")
    parser.add_argument("command", choices=("status", "drain"))
    parser.add_argument("--dir", help="the spool directory (default: AUDIOSYNC_SPOOL_DIR)")
    args = parser.parse_args(argv)
    settings = Settings.from_env(role="pusher")
    root = args.dir or settings.spool_dir
    if not root:
        raise ConfigError("no spool directory: set AUDIOSYNC_SPOOL_DIR or pass --dir")
    if not Path(root).is_dir():
        print(f"{root}: no such spool directory", file=sys.stderr)
        return 1
    if args.command == "status":
        total = spool.count_files(root)
        owners = [p.name for p in spool.owner_directories(root)]
        print(f"{total} entries wait in {root} ({len(owners)} owner directories)")
        for name in owners:
            print(f"  {name}: {spool.count_files_of(Path(root) / name)} entries")
        quarantined = sum(1 for p in (Path(root) / "quarantine").glob("*") if p.suffix != ".reason")
        print(f"  quarantine: {quarantined} files")
        return 0
    own = spool.Spool(
        root, max_bytes=settings.spool_max_bytes, lease_seconds=settings.spool_lease_seconds
    )
    appender = redis_store.Appender(
        redis_store.connect(settings.redis_url, cluster=settings.redis_cluster),
        settings.due_shards,
    )

    def append(records: list[SpoolRecord]) -> None:
        for run in consecutive_runs(records):
            appender.append(
                redis_store.SessionKeys(run[0].session_id, run[0].shard),
                [r.entry for r in run],
                first_n=run[0].n,
                urgent=True,  # late already: flush promptly
                max_age_seconds=settings.batch_max_age_seconds,
            )

    try:
        total = spool.count_files(root)
        drained = spool.drain_dead_owners(own, append, progress=_bar(total))
    finally:
        own.close()
    left = spool.count_files(root)
    print(f"\nappended {drained} entries; {left} still wait (live owners or Redis errors)")
    return 0 if left == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
