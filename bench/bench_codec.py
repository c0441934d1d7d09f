"""Opus settings by cost: encode CPU, stored bytes and PESQ over bitrate x complexity.

Run (the ``bench`` extra: ``.venv/bin/pip install -e '.[bench]'``, part of ``dev``)::

    .venv/bin/python bench/bench_codec.py            # 8 and 16 kHz, 121 settings (~10 min)
    .venv/bin/python bench/bench_codec.py --quick    # 16 kHz, 2 settings, 10 s of speech

(also ``python -m bench.bench_codec`` from the repository's root).

Speech: ``tests/data/speech_16k.wav`` (espeak-ng, two voices, 28 s; ``tests/data/README.md``),
and the same resampled to 8 kHz here (scipy's polyphase ``resample_poly``, 1/2). For each
rate, bitrate and complexity 0-10 the sample goes through the pusher's own path: one
``backend_hooks.contract.codec.ChunkEncoder`` per session, 5 s chunks (the last one shorter, as at a
session's end), each chunk's packets into ``backend_hooks.contract.container.build_chunk``.

- **CPU**: process CPU time (``time.process_time``, the process pinned to one core) of the
  encode and of the container per chunk, for the whole sample, scaled to ms per 5 s of
  audio; ``--repeats`` rounds (default 7), each timing every setting once in a shuffled
  order so that other load on the machine falls on all settings alike; the median.
- **Bytes**: the stored container (Ogg pages with their headers and tags), per audio-hour.
  Sealing (``enhanced``) adds the same few dozen bytes to every chunk whatever the setting.
- **PESQ**: the chunks decoded with ``backend_hooks.contract.codec.decode_packets``, joined, against
  the input (``pesq``: wide-band at 16 kHz, narrow-band at 8 kHz; MOS-LQO).

Then the cheapest setting per rate that meets the quality floor (PESQ-WB >= 3.2 at 16 kHz,
PESQ-NB >= 3.5 at 8 kHz), by cost per audio-hour: pusher CPU + storage for the retention
+ storage operations, at the prices of ``Prices`` (list prices; see docs/BENCHMARKS.md).
The output is Markdown: the tables and the choice, as in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
import wave
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend_hooks.contract import codec, container
from backend_hooks.contract.codec import ChunkEncoder, decode_packets

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech_16k.wav"
CHUNK_SECONDS = 5
OBJECT_SECONDS = 60  # AUDIOSYNC_OBJECT_SECONDS: one storage write per 60 s of audio
GIB = 2**30  # Google bills storage per GiB ("GB" on its price pages)
HOURS_PER_MONTH = 730
SESSIONS = 2_000_000  # live sessions at the largest scale of docs/CAPACITY.md
LIBOPUS_COMPLEXITY = 9  # libopus's default, what ChunkEncoder used before the setting

BITRATES = {
    8000: (6000, 8000, 10000, 12000, 16000),
    16000: (10000, 12000, 14000, 16000, 20000, 24000),
}
COMPLEXITIES = tuple(range(11))
PESQ_MODE = {8000: "nb", 16000: "wb"}
PESQ_FLOOR = {8000: 3.5, 16000: 3.2}
QUICK = ((16000, 16000, 5), (16000, 16000, 10))  # (rate, bitrate, complexity)
QUICK_SECONDS = 10


@dataclass(frozen=True)
class Prices:
    """List prices (USD); docs/BENCHMARKS.md cites them."""

    vcpu_hour: float = 0.0445  # GKE Autopilot general-purpose Pod vCPU, us-central1
    gib_month: float = 0.020  # Cloud Storage Standard, us-central1
    class_a_per_1000: float = 0.005  # Cloud Storage Class A operations (object writes)
    retention_months: float = 12.0  # how long the audio is kept (an assumption)


@dataclass(frozen=True)
class Point:
    """One setting, as measured."""

    rate: int
    bitrate: int
    complexity: int
    encode_ms: float  # per 5 s of audio, median of the repeats
    container_ms: float  # per 5 s of audio, median of the repeats
    bytes_per_hour: float  # stored container bytes per audio-hour
    pesq: float
    cpu_runs_ms: tuple[float, ...] = ()  # encode + container per 5 s, each round


@dataclass(frozen=True)
class Cost:
    """USD per audio-hour."""

    cpu: float
    storage: float
    operations: float

    @property
    def total(self) -> float:
        return self.cpu + self.storage + self.operations


def cost_per_audio_hour(point: Point, prices: Prices) -> Cost:
    """Pusher CPU (encode + container), storage for the retention, one write per object.

    A session encoding ``ms`` of CPU per 5 s of audio holds ``ms / 5000`` of a core, so
    one audio-hour costs that many vCPU-hours.
    """
    cpu_share = (point.encode_ms + point.container_ms) / (CHUNK_SECONDS * 1000)
    return Cost(
        cpu=cpu_share * prices.vcpu_hour,
        storage=point.bytes_per_hour / GIB * prices.gib_month * prices.retention_months,
        operations=3600 / OBJECT_SECONDS * prices.class_a_per_1000 / 1000,
    )


def choose(points: Iterable[Point], floor: float, prices: Prices) -> Point | None:
    """The cheapest point with PESQ >= ``floor`` (ties: the better PESQ), None if none is."""
    good = [p for p in points if p.pesq >= floor]
    if not good:
        return None
    return min(good, key=lambda p: (cost_per_audio_hour(p, prices).total, -p.pesq))


def vcpus(point: Point, sessions: int) -> float:
    """vCPUs the pusher's encoding of ``sessions`` live sessions holds."""
    return sessions * (point.encode_ms + point.container_ms) / (CHUNK_SECONDS * 1000)


def halve_rate(pcm16k: np.ndarray) -> np.ndarray:
    """16 kHz int16 -> 8 kHz int16 by polyphase filtering (scipy)."""
    from scipy.signal import resample_poly

    out = np.asarray(resample_poly(pcm16k.astype(np.float64), 1, 2))
    return np.asarray(np.clip(np.round(out), -32768, 32767).astype("<i2"))


def load_speech(rate: int, seconds: float | None = None) -> np.ndarray:
    with wave.open(str(SPEECH)) as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 16000):
            raise SystemExit(f"{SPEECH} must be 16 kHz mono PCM16")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if seconds is not None:
        pcm = pcm[: round(seconds * 16000)]
    if rate == 16000:
        return pcm
    if rate == 8000:
        return halve_rate(pcm)
    raise ValueError(f"the bench measures 8000 and 16000 Hz, not {rate}")


def split_chunks(pcm: np.ndarray, rate: int) -> list[bytes]:
    size = CHUNK_SECONDS * rate
    data = pcm.astype("<i2").tobytes()
    return [data[i : i + 2 * size] for i in range(0, len(data), 2 * size)]


Built = list[tuple[list[bytes], int, bytes]]  # per chunk: packets, samples, container


def encode_once(
    rate: int, bitrate: int, complexity: int, chunks: Sequence[bytes]
) -> tuple[float, float, Built]:
    """One session's worth: CPU seconds of encoding and of the container, and the chunks."""
    encoder = ChunkEncoder(rate, bitrate=bitrate, complexity=complexity)
    built: Built = []
    t_encode = t_container = 0.0
    for seq, chunk in enumerate(chunks):
        samples = len(chunk) // 2
        t0 = time.process_time()
        packets = encoder.encode(chunk)
        t1 = time.process_time()
        info = container.ChunkInfo("0" * 32, seq, 1_700_000_000_000_000, rate, samples)
        data = container.build_chunk(info, packets, encoder.pre_skip)
        t2 = time.process_time()
        t_encode += t1 - t0
        t_container += t2 - t1
        built.append((packets, samples, data))
    return t_encode, t_container, built


def score(rate: int, pcm: np.ndarray, built: Built) -> float:
    """PESQ of the decoded chunks, joined, against ``pcm``."""
    from pesq import pesq

    pre_skip = ChunkEncoder(rate).pre_skip  # the look-ahead: the same at every setting
    decoded = b"".join(
        decode_packets(packets, rate, pre_skip=pre_skip, sample_count=samples)
        for packets, samples, _ in built
    )
    degraded = np.frombuffer(decoded, dtype="<i2").astype(np.float64)
    return float(pesq(rate, pcm.astype(np.float64), degraded, PESQ_MODE[rate]))


def measure(
    plan: Sequence[tuple[int, int, int]], speech: dict[int, np.ndarray], *, repeats: int
) -> list[Point]:
    """Every (rate, bitrate, complexity) of ``plan``. Bytes and PESQ from one encode each
    (the encoder is deterministic); CPU from ``repeats`` rounds, each round timing every
    setting once in a shuffled order, so that other load on the machine falls on all of
    them alike; the median of the rounds."""
    chunks = {rate: split_chunks(pcm, rate) for rate, pcm in speech.items()}
    quality: dict[tuple[int, int, int], tuple[float, float]] = {}
    for n, key in enumerate(plan):
        rate, bitrate, complexity = key
        _, _, built = encode_once(rate, bitrate, complexity, chunks[rate])
        seconds = len(speech[rate]) / rate
        quality[key] = (
            sum(len(data) for _, _, data in built) * 3600 / seconds,
            score(rate, speech[rate], built),
        )
        _progress(f"quality {n + 1}/{len(plan)}")
    runs: dict[tuple[int, int, int], list[tuple[float, float]]] = {key: [] for key in plan}
    for r in range(repeats):
        order = list(plan)
        random.Random(r).shuffle(order)
        for key in order:
            rate, bitrate, complexity = key
            t_encode, t_container, _ = encode_once(rate, bitrate, complexity, chunks[rate])
            scale = 1000 * CHUNK_SECONDS / (len(speech[rate]) / rate)  # ms per 5 s of audio
            runs[key].append((t_encode * scale, t_container * scale))
        _progress(f"CPU round {r + 1}/{repeats}")
    return [
        Point(
            rate=key[0],
            bitrate=key[1],
            complexity=key[2],
            encode_ms=statistics.median(e for e, _ in runs[key]),
            container_ms=statistics.median(c for _, c in runs[key]),
            bytes_per_hour=quality[key][0],
            pesq=quality[key][1],
            cpu_runs_ms=tuple(e + c for e, c in runs[key]),
        )
        for key in plan
    ]


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pin_to_one_core() -> str:
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        return "not pinned"
    return f"pinned to core {core}"


def matrix(points: Sequence[Point], rate: int, cell: str) -> list[str]:
    mine = [p for p in points if p.rate == rate]
    bitrates = sorted({p.bitrate for p in mine})
    by_key = {(p.bitrate, p.complexity): p for p in mine}
    head = "| complexity | " + " | ".join(f"{b // 1000} kbit/s" for b in bitrates) + " |"
    lines = [head, "|---" * (len(bitrates) + 1) + "|"]
    for c in sorted({p.complexity for p in mine}):
        cells = []
        for b in bitrates:
            p = by_key.get((b, c))
            if p is None:
                cells.append("")
            elif cell == "pesq":
                cells.append(f"{p.pesq:.2f}")
            elif cell == "ms":
                cells.append(f"{p.encode_ms:.1f} + {p.container_ms:.2f}")
            else:
                cells.append(f"{p.bytes_per_hour / 1e6:.2f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def report(points: Sequence[Point], prices: Prices, header: str) -> str:
    out = [header, ""]
    for rate in sorted({p.rate for p in points}):
        mode = PESQ_MODE[rate].upper()
        mine = [p for p in points if p.rate == rate]
        out += [f"### {rate} Hz", "", f"PESQ-{mode} (MOS-LQO):", ""]
        out += matrix(mine, rate, "pesq")
        out += ["", "CPU ms per 5 s of audio, encode + container (one core, median):", ""]
        out += matrix(mine, rate, "ms")
        out += ["", "Stored MB (10^6 bytes) per audio-hour (the Ogg container):", ""]
        out += matrix(mine, rate, "bytes")
        out += ["", *choice_lines(mine, rate, prices), ""]
    return "\n".join(out)


def choice_lines(points: Sequence[Point], rate: int, prices: Prices) -> list[str]:
    floor = PESQ_FLOOR[rate]
    mode = PESQ_MODE[rate].upper()
    by_key = {(p.bitrate, p.complexity): p for p in points}
    good = sorted(
        (p for p in points if p.pesq >= floor),
        key=lambda p: cost_per_audio_hour(p, prices).total,
    )
    notes: dict[Point, list[str]] = {}
    if good:
        notes.setdefault(good[0], []).append("cheapest")
    default = by_key.get((codec.BITRATES[rate], codec.COMPLEXITIES[rate]))
    before = by_key.get((codec.BITRATES[rate], LIBOPUS_COMPLEXITY))
    if default is not None:
        notes.setdefault(default, []).append("the default (codec.py)")
    if before is not None:
        notes.setdefault(before, []).append("libopus's complexity, the encoder's before")
    rows = good[:8] + [p for p in notes if p not in good[:8]]
    lines = [
        f"Settings with PESQ-{mode} >= {floor}, cheapest first, and the defaults (USD per "
        f"1,000 audio-hours: CPU at ${prices.vcpu_hour}/vCPU-hour + storage at "
        f"${prices.gib_month}/GiB-month for {prices.retention_months:g} months + "
        f"{3600 // OBJECT_SECONDS} object writes at ${prices.class_a_per_1000}/1,000):",
        "",
        "| bitrate | complexity | PESQ | CPU ms / 5 s | MB / h | CPU | storage | ops | total |"
        " vCPUs at 2,000,000 sessions | |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in rows:
        c = cost_per_audio_hour(p, prices)
        lines.append(
            f"| {p.bitrate // 1000} kbit/s | {p.complexity} | {p.pesq:.2f} | "
            f"{p.encode_ms + p.container_ms:.1f} | {p.bytes_per_hour / 1e6:.2f} | "
            f"{1000 * c.cpu:.3f} | {1000 * c.storage:.3f} | {1000 * c.operations:.3f} | "
            f"{1000 * c.total:.3f} | {vcpus(p, SESSIONS):,.0f} | {', '.join(notes.get(p, []))} |"
        )
    if not good:
        lines.append(f"(none of the {len(points)} settings measured reaches {floor})")
    lines.append("")
    for months in (1.0, 3.0, 6.0, 12.0, 24.0, 60.0):
        pick = choose(points, floor, Prices(**{**asdict(prices), "retention_months": months}))
        text = "none" if pick is None else f"{pick.bitrate} bit/s, complexity {pick.complexity}"
        unit = "month" if months == 1 else "months"
        lines.append(f"- cheapest at {months:g} {unit} of retention: {text}")
    cheapest = good[0] if good else None
    for name, at in (("the cheapest", cheapest), ("the default", default)):
        if at is None:
            continue
        cpu_month = vcpus(at, SESSIONS) * prices.vcpu_hour * HOURS_PER_MONTH
        bytes_month = at.bytes_per_hour * SESSIONS * HOURS_PER_MONTH
        storage_month = bytes_month / GIB * prices.gib_month
        lines.append(
            f"- {name} at {SESSIONS:,} live sessions: {vcpus(at, SESSIONS):,.0f} vCPUs = "
            f"${cpu_month:,.0f} a month; {bytes_month / 1e15:.2f} PB stored a month, "
            f"${storage_month:,.0f} a month for each month it is kept"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="16 kHz, 2 settings, 10 s")
    parser.add_argument("--repeats", type=int, default=7, help="runs per setting (median)")
    parser.add_argument("--rates", default="8000,16000", help="comma-separated: 8000,16000")
    parser.add_argument("--json", type=Path, help="also write every point to this file")
    parser.add_argument(
        "--retention-months", type=float, default=Prices.retention_months, help="for the cost"
    )
    args = parser.parse_args()
    try:
        import pesq  # noqa: F401
        import scipy.signal  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"bench_codec needs the bench extra ({exc.name} is missing): "
            ".venv/bin/pip install -e '.[bench]' (make venv installs it; pesq compiles C, "
            "so a C compiler such as gcc must be present)"
        ) from None
    prices = Prices(retention_months=args.retention_months)
    pinned = pin_to_one_core()
    started = datetime.datetime.now(datetime.UTC)
    if args.quick:
        plan = list(QUICK)
        repeats, seconds = 1, float(QUICK_SECONDS)
    else:
        rates = [int(r) for r in args.rates.split(",")]
        plan = [(r, b, c) for r in rates for b in BITRATES[r] for c in COMPLEXITIES]
        repeats, seconds = args.repeats, None
    speech = {r: load_speech(r, seconds) for r in sorted({r for r, _, _ in plan})}
    points = measure(plan, speech, repeats=repeats)
    took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    header = (
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"({_cpu_model()}, {os.cpu_count()} cores, {pinned}), Python "
        f"{platform.python_version()}, {_libopus_version()}; speech "
        f"{max(len(pcm) / rate for rate, pcm in speech.items()):.1f} s, "
        f"{repeats} repeat(s) per setting; {took:.0f} s."
    )
    print(report(points, prices, header))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "header": header,
                    "prices": asdict(prices),
                    "points": [asdict(p) for p in points],
                },
                indent=1,
            )
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _libopus_version() -> str:
    name = ctypes.util.find_library("opus")
    if name is None:
        return "unknown"
    version = ctypes.CDLL(name).opus_get_version_string
    version.restype = ctypes.c_char_p
    return bytes(version()).decode()


if __name__ == "__main__":
    main()
