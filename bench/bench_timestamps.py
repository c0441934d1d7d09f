"""What pushed-timestamp jitter and clock drift do to the audio (the pusher's timestamps).

Pure: the real ``Chunker`` and the reader's real ``merge_segments``, no servers. One session
at 16 kHz pushes 20 ms frames; frame ``i``'s true time is ``T0 + i * 20 ms`` and its pushed
timestamp is the true time, times ``1 + drift`` (a device clock running fast or slow
against the audio's sample clock), plus uniform jitter in ``±jitter`` (seeded). Reported per
case: chunks per minute, re-anchors (runs started after the first), the samples the reader
loses (overlaps it trims) and adds (gaps it fills with silence), and the largest distance
of a chunk's timestamp from its first sample's time on the device's clock without jitter
(with drift, the device clock is all a pusher knows).

    .venv/bin/python bench/bench_timestamps.py
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from backend_hooks.contract.container import Segment
from backend_hooks.contract.settings import ENV_DEFAULTS
from backend_hooks.pusher.chunker import Chunker, RawChunk
from backend_hooks.read.merge import merge_segments

RATE = 16000
FRAME = RATE // 50  # 20 ms
CHUNK_SECONDS = 5
T0_US = 1_700_000_000_000_000


class ChunkerLike(Protocol):
    def push(self, pcm: bytes, timestamp_us: int, *, now_us: int) -> list[RawChunk]: ...
    def flush(self) -> list[RawChunk]: ...


def new_chunker(tolerance_ms: float) -> ChunkerLike:
    return Chunker(
        RATE,
        CHUNK_SECONDS * RATE,
        tolerance_us=round(tolerance_ms * 1000),
        window_us=86_400_000_000,
    )


@dataclass(frozen=True)
class Result:
    label: str
    seconds: float
    chunks: int
    re_anchors: int
    pushed: int
    lost: int
    added: int
    worst_error_ms: float

    def row(self) -> str:
        per_minute = self.chunks * 60 / self.seconds
        return (
            f"| {self.label} | {self.seconds:g} | {per_minute:.1f} | {self.re_anchors} "
            f"| {self.lost} ({100 * self.lost / self.pushed:.2f} %) "
            f"| {self.added} ({100 * self.added / self.pushed:.2f} %) | {self.worst_error_ms:.1f} |"
        )


def run(
    label: str,
    *,
    seconds: float,
    jitter_ms: float,
    drift_ppm: float,
    tolerance_ms: float,
    seed: int = 7,
    make: Callable[[float], ChunkerLike] = new_chunker,
) -> Result:
    rng = random.Random(seed)
    chunker = make(tolerance_ms)
    frames = round(seconds * 50)
    frame_pcm = bytes(2 * FRAME)
    chunks: list[RawChunk] = []
    for i in range(frames):
        true_us = i * 20_000
        error_us = rng.uniform(-1, 1) * jitter_ms * 1000
        pushed = T0_US + round(true_us * (1 + drift_ppm * 1e-6) + error_us)
        chunks += chunker.push(frame_pcm, pushed, now_us=T0_US + true_us)
    chunks += chunker.flush()
    segments = [Segment(c.start_us, RATE, c.pcm, ("s", c.seq)) for c in chunks]
    pushed_samples = frames * FRAME
    kept = merge_segments(segments, fill_gaps=False).sample_count  # overlaps trimmed
    filled = merge_segments(segments, fill_gaps=True).sample_count  # and gaps filled
    re_anchors = 0
    worst = 0
    first_sample = 0
    for before, after in itertools.pairwise(chunks):
        if after.start_us != before.start_us + round(before.sample_count * 1_000_000 / RATE):
            re_anchors += 1
    for c in chunks:
        clean_us = T0_US + round(first_sample * 1_000_000 / RATE * (1 + drift_ppm * 1e-6))
        worst = max(worst, abs(c.start_us - clean_us))
        first_sample += c.sample_count
    return Result(
        label=label,
        seconds=seconds,
        chunks=len(chunks),
        re_anchors=re_anchors,
        pushed=pushed_samples,
        lost=pushed_samples - kept,
        added=filled - kept,
        worst_error_ms=worst / 1000,
    )


def cases(tolerance_ms: float, make: Callable[[float], ChunkerLike]) -> list[Result]:
    jitter = [("±15 ms jitter", 15), ("±19 ms jitter", 19), ("±50 ms jitter", 50)]
    jitter += [("±150 ms jitter", 150)]  # a spread (300 ms) wider than the default tolerance
    drift = [("+100 ppm drift, ±15 ms", 100), ("-100 ppm drift, ±15 ms", -100)]
    out = [
        run(label, seconds=600, jitter_ms=ms, drift_ppm=0, tolerance_ms=tolerance_ms, make=make)
        for label, ms in jitter
    ]
    out += [
        run(label, seconds=3600, jitter_ms=15, drift_ppm=ppm, tolerance_ms=tolerance_ms, make=make)
        for label, ppm in drift
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = float(ENV_DEFAULTS["AUDIOSYNC_TIMESTAMP_TOLERANCE_MS"] or 0)
    parser.add_argument("--tolerance-ms", type=float, default=default)
    args = parser.parse_args()
    print(f"tolerance {args.tolerance_ms:g} ms, {CHUNK_SECONDS} s chunks, 16 kHz, 20 ms pushes")
    print("| case | seconds | chunks / min | re-anchors | lost | added | worst stamp error ms |")
    print("|---|---|---|---|---|---|---|")
    for result in cases(args.tolerance_ms, new_chunker):
        print(result.row())


if __name__ == "__main__":
    main()
