"""bench/bench_codec.py: its cost arithmetic and choice (pure), and its quick mode end to end.

The bench is a script (run as ``python bench/bench_codec.py``), loaded from its path here
as the module ``bench_codec``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "bench_codec.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return importlib.import_module("bench.bench_codec")


def point(bench: ModuleType, **fields: float) -> object:
    base = {
        "rate": 16000,
        "bitrate": 16000,
        "complexity": 5,
        "encode_ms": 50.0,
        "container_ms": 0.0,
        "bytes_per_hour": 2**30 / 1000,  # 1/1000 GiB per audio-hour
        "pesq": 3.3,
    }
    return bench.Point(**{**base, **fields})


def test_cost_per_audio_hour(bench: ModuleType) -> None:
    prices = bench.Prices(
        vcpu_hour=0.05, gib_month=0.02, class_a_per_1000=0.005, retention_months=12
    )
    cost = bench.cost_per_audio_hour(point(bench, encode_ms=49.0, container_ms=1.0), prices)
    # 50 ms of CPU per 5 s of audio: 1 % of a core, so 0.01 vCPU-hours per audio-hour.
    assert cost.cpu == pytest.approx(0.01 * 0.05)
    # 1/1000 GiB kept 12 months at $0.02 per GiB-month.
    assert cost.storage == pytest.approx(0.001 * 0.02 * 12)
    # One object per 60 s: 60 writes an hour at $0.005 per 1,000.
    assert cost.operations == pytest.approx(60 * 0.005 / 1000)
    assert cost.total == pytest.approx(0.0005 + 0.00024 + 0.0003)
    # At 2,000,000 sessions, 1 % of a core each is 20,000 vCPUs.
    assert bench.vcpus(point(bench, encode_ms=50.0), 2_000_000) == pytest.approx(20_000)


def test_choose_the_cheapest_that_meets_the_floor(bench: ModuleType) -> None:
    prices = bench.Prices(retention_months=12)
    fast_bad = point(bench, complexity=0, encode_ms=10.0, pesq=3.1)  # cheapest, below the floor
    slow_good = point(bench, complexity=10, encode_ms=60.0, pesq=3.5)
    fast_good = point(bench, complexity=4, bitrate=20000, encode_ms=30.0, pesq=3.25)
    assert bench.choose([fast_bad, slow_good, fast_good], 3.2, prices) == fast_good
    assert bench.choose([fast_bad], 3.2, prices) is None
    # Storage for long enough outweighs CPU: fewer bytes win then.
    big = point(bench, encode_ms=20.0, bytes_per_hour=10e6)
    small = point(bench, encode_ms=40.0, bytes_per_hour=5e6)
    short, long = bench.Prices(retention_months=1), bench.Prices(retention_months=60)
    assert bench.choose([big, small], 3.2, short) == big
    assert bench.choose([big, small], 3.2, long) == small


def test_halving_the_rate_keeps_speech_and_drops_what_8_khz_cannot_hold(
    bench: ModuleType,
) -> None:
    t = np.arange(16000) / 16000
    low = (8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
    high = (8000 * np.sin(2 * np.pi * 6000 * t)).astype("<i2")  # above 4 kHz
    out_low, out_high = bench.halve_rate(low), bench.halve_rate(high)
    assert len(out_low) == 8000 and out_low.dtype == np.dtype("<i2")
    middle = slice(1000, 7000)  # away from the filter's edges
    assert np.abs(out_low[middle]).max() > 7000
    assert np.abs(out_high[middle]).max() < 100


def test_quick_mode_runs_and_its_figures_add_up(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "PESQ-WB" in done.stdout and "cheapest at 12 months of retention" in done.stdout
    result = json.loads(out.read_text())
    points = result["points"]
    assert [(p["rate"], p["bitrate"], p["complexity"]) for p in points] == [
        (16000, 16000, 5),
        (16000, 16000, 10),
    ]
    for p in points:
        assert 1.0 <= p["pesq"] <= 4.7  # the MOS-LQO scale
        assert p["encode_ms"] > 0 and p["container_ms"] > 0
        # VBR near 16 kbit/s: 7.2 MB an hour of payload, plus the Ogg framing.
        assert 3e6 < p["bytes_per_hour"] < 12e6
    # Higher complexity: better speech at the same bitrate (measured: 3.04 vs 3.50).
    assert points[1]["pesq"] > points[0]["pesq"]
