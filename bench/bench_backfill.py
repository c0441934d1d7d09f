"""Backfill throughput: legacy 5 s objects compacted into 60 s objects, in-process.

Run: ``.venv/bin/python bench/bench_backfill.py [--minutes M] [--rate R] [--quick]``.

On a fresh local stack (valkey + fake-gcs-server), one conversation of M minutes of
speech-like audio at R Hz is written as legacy objects, alternating ``.bin`` and ``.enc``
5 s chunks (so both levels, two objects a minute each: a standard and an enhanced one).
Then, in one process, ``workers.backfill.backfill_conversation`` runs three times:

1. without ``delete``: read, encode (raw PCM -> Opus), seal, upload, read back, verify;
2. again: nothing new to write, every object verified again;
3. with ``delete``: verified once more, then every legacy object deleted.

Printed per run: wall time, this process's CPU time, audio seconds per wall second, GCS
operations (the counting bucket's), objects and bytes before and after. The emulator's
CPU is not counted; on a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import time

from audiosync_dev.localstack import LocalStack
from audiosync_dev.speech import speech_like
from backend_hooks.contract import envelope
from backend_hooks.contract.settings import Settings
from workers import backfill

SECRET = "bench-backfill-secret-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=16000, choices=(8000, 16000))
    parser.add_argument("--quick", action="store_true", help="1 minute: a smoke run")
    args = parser.parse_args()
    minutes = 1.0 if args.quick else args.minutes
    chunks = round(minutes * 12)
    start = float(int(time.time())) - 7200 - chunks * 5
    with LocalStack() as info:
        settings = Settings.from_env({**info.env(), "ENCRYPTION_SECRET": SECRET}, role="backfill")
        bf = backfill.Backfill.from_settings(settings)
        uid, cid = "bench-user", "conv"
        pcm = speech_like(chunks * 5, args.rate, seed=1)
        step = 2 * 5 * args.rate
        cipher = envelope.UserKeys(SECRET.encode()).cipher(uid)
        for i in range(chunks):  # LEGACY_FORMATS.md: {ts:.3f}.bin raw, .enc one v0 record
            piece = pcm[i * step : (i + 1) * step]
            sealed = i % 2 == 1
            data = envelope.seal_v0(cipher, piece) if sealed else piece
            path = f"chunks/{uid}/{cid}/{start + 5 * i:.3f}{'.enc' if sealed else '.bin'}"
            bf.bucket.create_only(path, data, content_type="application/octet-stream", metadata={})
        print(
            f"{chunks} legacy objects, {minutes:g} min at {args.rate} Hz "
            f"(alternating .bin / .enc); machine shared, figures noisy"
        )
        now_us = time.time_ns() // 1000
        for label, delete in (("first", False), ("again", False), ("delete", True)):
            cpu, wall = os.times(), time.perf_counter()
            report = backfill.backfill_conversation(bf, uid, cid, now_us=now_us, delete=delete)
            wall = time.perf_counter() - wall
            after = os.times()
            used = (after.user - cpu.user) + (after.system - cpu.system)
            ops = report.as_dict()["ops"]
            print(
                f"{label:>6}: {wall:6.2f} s wall, {used:6.2f} s CPU, "
                f"{minutes * 60 / wall:7.1f}x real time; written {len(report.written)}, "
                f"verified {len(report.verified)}, deleted {len(report.deleted)}; "
                f"ops {ops}; objects {report.objects_before} -> {report.objects_after}, "
                f"bytes {report.bytes_before:,} -> {report.bytes_after:,}"
            )
            assert not report.failed, report.lines()


if __name__ == "__main__":
    main()
