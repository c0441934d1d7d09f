"""Speed, memory and accuracy of the reader's resampling (``backend_hooks/read/resample.py``).

Run: ``.venv/bin/python bench/bench_resample.py [--seconds S] [--rounds R] [--quick]``.

Input: ``tests/data/speech_16k.wav`` (espeak-ng speech, 28 s) repeated to S seconds; its
8 kHz form is made once with ``resample_pcm16`` (outside the timing). For 8 -> 16 kHz and
16 -> 8 kHz (the rates the backend's devices streamed at), soxr qualities ``HQ`` (the
module's choice) and ``VHQ``, three forms: one ``resample_pcm16`` call on the whole run,
and a ``Resampler`` fed 5 s blocks (one legacy chunk) or 60 s blocks (one new object).
Each figure is the median over R rounds; every round times every case once, in a shuffled
order, so the machine's other load falls on all cases alike. "CPU / wall" is
``process_time`` over ``perf_counter`` (above 1.0: soxr used more than one thread).

"share of the merge budget" is what resampling one hour of audio takes of the reader's
goal of 1,000x real time for the whole merge (3.6 s per audio-hour): ``1000 / (x real
time)``.

Then peak memory (``tracemalloc``, numpy's buffers included) of the one-shot call against
the 5 s-block stream, for the S seconds at 8 -> 16 kHz, and accuracy: a full-band sine
(1 kHz at 8 -> 16 kHz, 3 kHz at 16 -> 8 kHz, amplitude 0.5 of full scale) against the same
sine computed at the target rate, as SNR in dB over the middle (edges excluded) per
quality; 16-bit rounding alone allows ~92 dB at this amplitude.

Last, two threads: two 5 s-block streams of the S seconds at 8 -> 16 kHz one after the
other against the same two on two threads at once (does soxr let go of the GIL?).
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import tracemalloc
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import soxr

from backend_hooks.read import resample

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech_16k.wav"
PAIRS = ((8000, 16000), (16000, 8000))
QUALITIES = ("HQ", "VHQ")
FORMS = ("resample_pcm16", "stream 1 s", "stream 5 s", "stream 60 s", "soxr one call")
T = TypeVar("T")


def load_speech(seconds: float) -> dict[int, bytes]:
    """The speech at 16 kHz repeated to ``seconds``, and the same at 8 kHz."""
    with wave.open(str(SPEECH)) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        one = w.readframes(w.getnframes())
    samples = round(seconds * 16000)
    pcm16 = (one * (samples * 2 // len(one) + 1))[: 2 * samples]
    return {16000: pcm16, 8000: resample.resample_pcm16(pcm16, 16000, 8000)}


def stream(pcm: bytes, from_rate: int, to_rate: int, block_seconds: int) -> int:
    resampler = resample.Resampler(from_rate, to_rate)
    block = 2 * from_rate * block_seconds
    out = 0
    for start in range(0, len(pcm), block):
        out += len(resampler.feed(pcm[start : start + block]))
    return out + len(resampler.flush())


def soxr_one_call(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """The whole buffer in one soxr call (float32, the module's rounding): the reference
    that ``resample_pcm16``'s blocks are measured against."""
    x = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    y = soxr.resample(x, from_rate, to_rate, quality=resample.QUALITY) * 32768
    return bytes(np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes())


def run_form(form: str, pcm: bytes, from_rate: int, to_rate: int) -> int:
    if form == "resample_pcm16":
        return len(resample.resample_pcm16(pcm, from_rate, to_rate))
    if form == "soxr one call":
        return len(soxr_one_call(pcm, from_rate, to_rate))
    return stream(pcm, from_rate, to_rate, int(form.split()[1]))


@dataclass
class Timing:
    wall: list[float]
    cpu: list[float]


def with_quality(quality: str, fn: Callable[[], T]) -> T:
    """``fn()`` with the module's soxr quality set to ``quality`` (the bench's only knob)."""
    saved = resample.QUALITY
    resample.QUALITY = quality  # type: ignore[misc]
    try:
        return fn()
    finally:
        resample.QUALITY = saved  # type: ignore[misc]


def time_cases(audio: dict[int, bytes], seconds: float, rounds: int) -> None:
    cases = [(pair, q, form) for pair in PAIRS for q in QUALITIES for form in FORMS]
    timings = {case: Timing([], []) for case in cases}
    rng = random.Random(1)
    for _ in range(rounds):
        rng.shuffle(cases)
        for case in cases:
            (from_rate, to_rate), quality, form = case
            pcm = audio[from_rate]
            expected = 2 * resample.resampled_length(len(pcm) // 2, from_rate, to_rate)
            wall, cpu = time.perf_counter(), time.process_time()
            out = with_quality(quality, lambda: run_form(form, pcm, from_rate, to_rate))  # noqa: B023
            timings[case].wall.append(time.perf_counter() - wall)
            timings[case].cpu.append(time.process_time() - cpu)
            if form != "soxr one call":  # soxr rounds a half-sample length up
                assert out == expected, (case, out, expected)
    print(
        "| from -> to | quality | form | M input samples/s | x real time "
        "| share of the merge budget | CPU / wall |"
    )
    print("|---|---|---|---|---|---|---|")
    for pair in PAIRS:
        for quality in QUALITIES:
            for form in FORMS:
                t = timings[(pair, quality, form)]
                wall = statistics.median(t.wall)
                cpu = statistics.median(t.cpu)
                xrt = seconds / wall
                print(
                    f"| {pair[0]} -> {pair[1]} | {quality} | {form} "
                    f"| {seconds * pair[0] / wall / 1e6:.1f} | {xrt:,.0f} "
                    f"| {100 * 1000 / xrt:.1f} % | {cpu / wall:.2f} |"
                )


def peak_memory(audio: dict[int, bytes], seconds: float) -> None:
    pcm = audio[8000]
    out_bytes = 2 * resample.resampled_length(len(pcm) // 2, 8000, 16000)
    print(
        f"Peak memory, {seconds:g} s at 8 -> 16 kHz ({len(pcm) / 1e6:.1f} MB in, "
        f"{out_bytes / 1e6:.1f} MB out), tracemalloc, the input not counted:\n"
    )
    for form in ("resample_pcm16", "stream 5 s", "soxr one call"):
        tracemalloc.start()
        run_form(form, pcm, 8000, 16000)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if form == "stream 5 s":  # each block's output counted and dropped
            print(f"- {form}: {peak / 1e6:.1f} MB (one block's worth, whatever the length)")
        else:
            print(f"- {form}: {peak / 1e6:.1f} MB = {peak / out_bytes:.2f}x the output")


def snr_db(from_rate: int, to_rate: int, freq: float, quality: str) -> tuple[float, int]:
    """The filter's own SNR (float64 in and out, no 16-bit rounding anywhere) against the
    ideal sine at the target rate, and the largest error of ``resample_pcm16``'s int16
    output (from the sine rounded to int16) against the ideal sine rounded, in LSB."""

    def sine(rate: int) -> npt.NDArray[np.float64]:
        t = np.arange(rate * 4) / rate
        return 16384 * np.sin(2 * np.pi * freq * t)

    y = soxr.resample(sine(from_rate) / 32768, from_rate, to_rate, quality=quality) * 32768
    ref = sine(to_rate)
    common = min(len(y), len(ref))
    middle = slice(to_rate // 10, common - to_rate // 10)
    error = y[middle] - ref[middle]
    snr = float(10 * np.log10(np.mean(ref[middle] ** 2) / np.mean(error**2)))
    pcm = np.round(sine(from_rate)).astype("<i2").tobytes()
    out = with_quality(quality, lambda: resample.resample_pcm16(pcm, from_rate, to_rate))
    got = np.frombuffer(out, "<i2").astype(np.float64)[middle]
    return snr, int(np.abs(got - np.round(ref[middle])).max())


def accuracy() -> None:
    print("Accuracy: full-band sine at half of full scale, 4 s, the middle 3.8 s:\n")
    for (from_rate, to_rate), freq in zip(PAIRS, (1000.0, 3000.0), strict=True):
        figures = []
        for quality in QUALITIES:
            snr, lsb = snr_db(from_rate, to_rate, freq, quality)
            figures.append(f"{quality} {snr:.1f} dB (int16 output within {lsb} LSB)")
        print(f"- {freq:g} Hz, {from_rate} -> {to_rate}: " + ", ".join(figures))


def threads(audio: dict[int, bytes], rounds: int) -> None:
    pcm = audio[8000]

    def job() -> None:
        stream(pcm, 8000, 16000, 5)

    sequential, parallel = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        job()
        job()
        sequential.append(time.perf_counter() - start)
        workers = [threading.Thread(target=job) for _ in range(2)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        parallel.append(time.perf_counter() - start)
    one, two = statistics.median(sequential), statistics.median(parallel)
    print(
        f"Two 5 s-block streams at 8 -> 16 kHz: one after the other {one:.3f} s, on two "
        f"threads {two:.3f} s: {one / two:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="audio per case")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="30 s, 2 rounds")
    args = parser.parse_args()
    seconds, rounds = (30.0, 2) if args.quick else (args.seconds, args.rounds)
    audio = load_speech(seconds)
    print(f"{seconds:g} s of speech per case, {rounds} rounds, median\n")
    time_cases(audio, seconds, rounds)
    print()
    peak_memory(audio, seconds)
    print()
    accuracy()
    print()
    threads(audio, rounds)


if __name__ == "__main__":
    main()
