"""``python -m backend_hooks.spool_cli status|drain [--watch]``: the pusher's disk spool.

``status`` counts what waits in ``AUDIOSYNC_SPOOL_DIR`` (per owner directory, live or
dead). ``drain`` appends what dead pusher processes left there to Redis, in order, with
a progress bar, exactly as a starting pusher does in the background; a live pusher's
files are never touched (its lock is held). ``drain --watch`` does it every
``--interval`` seconds until SIGTERM/SIGINT, logging instead of a progress bar, with its
metrics on ``--metrics-port`` (backend_hooks/pusher/spool_drainer.py): the spool drainer of a
spool directory shared by many pusher pods. Settings come from the environment
(``AUDIOSYNC_REDIS_URL``, ``AUDIOSYNC_SPOOL_DIR``, ...; README "Settings").
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher import spool, spool_drainer


def _bar(total: int) -> Callable[[int], None]:
    done = [0]

    def step(count: int) -> None:
        done[0] += count
        width = 30
        filled = width * done[0] // max(total, 1)
        sys.stderr.write(f"\rdraining [{'#' * filled}{'.' * (width - filled)}] {done[0]}/{total}")
        sys.stderr.flush()

    return step


def _seconds(flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return spool_drainer.checked_seconds(flag, float(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"a TCP port (1 to 65535), got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend_hooks.spool_cli")
    parser.add_argument("command", choices=("status", "drain"))
    parser.add_argument("--dir", help="the spool directory (default: AUDIOSYNC_SPOOL_DIR)")
    parser.add_argument(
        "--watch",
        action="store_true",
        help="drain: run until SIGTERM/SIGINT, a pass every --interval seconds",
    )
    parser.add_argument(
        "--interval",
        type=_seconds("--interval"),
        default=spool_drainer.DEFAULT_INTERVAL_SECONDS,
        help="--watch: seconds between passes (default: %(default)s)",
    )
    parser.add_argument(
        "--max-backoff",
        type=_seconds("--max-backoff"),
        default=spool_drainer.DEFAULT_MAX_BACKOFF_SECONDS,
        help="--watch: at most this many seconds between passes after failed ones "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        help="--watch: serve Prometheus metrics on this port (default: none)",
    )
    args = parser.parse_args(argv)
    if args.command != "drain" and args.watch:
        parser.error("--watch goes with drain")
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
            refused = spool.listing_error(Path(root) / name)
            if refused is not None:  # another user's, EIO: the drainer skips it too
                print(f"  {name}: cannot be listed ({refused.strerror})")
                continue
            print(f"  {name}: {spool.count_files_of(Path(root) / name)} entries")
        quarantined = sum(1 for p in (Path(root) / "quarantine").glob("*") if p.suffix != ".reason")
        print(f"  quarantine: {quarantined} files")
        return 0
    if args.watch:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return spool_drainer.watch(
            settings,
            root,
            interval=args.interval,
            max_backoff=args.max_backoff,
            metrics_port=args.metrics_port,
        )
    own = spool.Spool(
        root, max_bytes=settings.spool_max_bytes, lease_seconds=settings.spool_lease_seconds
    )
    append = spool_drainer.redis_append(settings)
    try:
        total = spool.count_files(root)
        drained = spool.drain_dead_owners(own, append, progress=_bar(total))
    finally:
        own.close()
    left = spool.count_files(root)
    unreadable = [p.name for p in spool.owner_directories(root) if spool.listing_error(p)]
    print(
        f"\nappended {drained} entries; {left} still wait (live owners or Redis errors)"
        + (f"; {len(unreadable)} owner directories cannot be listed" if unreadable else "")
    )
    return 0 if left == 0 and not unreadable else 2


if __name__ == "__main__":
    sys.exit(main())
