"""The command line: ``python -m audiosync_dev.chaos [options]`` (``parse_args``,
``main``)."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from audiosync_dev.chaos.config import ChaosConfig
from audiosync_dev.chaos.runner import run


def parse_args(argv: list[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(
        prog="python -m audiosync_dev.chaos",
        description="Fault-injection run of the whole pipeline: every chunk stored exactly once?",
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--short", action="store_true", help="~2 minutes (default)")
    preset.add_argument("--long", action="store_true", help="200+ sessions, 20+ kills")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the streams on a 3-master valkey Redis Cluster (the broker a plain valkey); "
        "each Redis restart restarts one cluster node",
    )
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--redis-restarts", type=int)
    parser.add_argument("--fault-rate", type=float, help="share of uploads faulted, 0..1")
    parser.add_argument("--poison", type=int, help="poison entries to inject")
    parser.add_argument("--pauses", type=int, help="flushes to SIGSTOP past their lease")
    parser.add_argument("--duplicates", type=int, help="chunk entries to append again")
    parser.add_argument("--seconds", type=float, help="how long the pushing lasts")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workdir", type=Path, help="keep servers' data and logs here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir after a pass")
    args = parser.parse_args(argv)
    if args.cluster:
        config = ChaosConfig.long_cluster() if args.long else ChaosConfig.short_cluster()
    else:
        config = ChaosConfig.long() if args.long else ChaosConfig.short()
    overrides: dict[str, Any] = {
        "sessions": args.sessions,
        "workers": args.workers,
        "kills": args.kills,
        "redis_restarts": args.redis_restarts,
        "fault_rate": args.fault_rate,
        "poison": args.poison,
        "pauses": args.pauses,
        "duplicates": args.duplicates,
        "seconds": args.seconds,
        "seed": args.seed,
        "workdir": args.workdir,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.keep:
        config = replace(config, keep_workdir=True)
    if config.sessions < 1 or config.workers < 1 or not 0 <= config.fault_rate <= 1:
        parser.error("need at least one session and one worker, and a fault rate in [0, 1]")
    return config


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        verdict = run(config)
    except KeyboardInterrupt:
        print("chaos run interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    print(verdict.render())
    return 0 if verdict.passed else 1
