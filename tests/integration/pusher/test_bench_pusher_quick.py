"""The pusher benches' ``--quick`` modes run and print their figures (no timing asserted:
speed goals live in the benches and docs/BENCHMARKS.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[3] / "bench"


def run_quick(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_cpu_quick_prints_a_row_per_configuration() -> None:
    out = run_quick("bench_pusher_cpu.py")
    rows = re.findall(r"^\s*(16000|8000)\s+(enhanced|standard)\s+([\d.]+)\s+([\d.]+)\s", out, re.M)
    assert {(rate, level) for rate, level, _, _ in rows} == {
        ("16000", "enhanced"),
        ("16000", "standard"),
        ("8000", "enhanced"),
        ("8000", "standard"),
    }, out
    assert all(float(pusher) > 0 and float(bare) > 0 for _, _, pusher, bare in rows), out


def test_cpu_against_another_checkout_prints_both_tables() -> None:
    """``--against``: the same bench on two checkouts in alternating processes (here the
    checkout against itself), a table of medians for each."""
    command = [sys.executable, str(BENCH / "bench_pusher_cpu.py"), "--quick", "--pairs", "1"]
    proc = subprocess.run(
        [*command, "--against", str(BENCH.parent)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    tables = re.split(r"^(?:this checkout|against): medians over 1 rounds$", out, flags=re.M)
    assert len(tables) == 3, out
    for table in tables[1:]:
        rows = re.findall(r"^\s*(16000|8000)\s+(enhanced|standard)\s+[\d.]+\s", table, re.M)
        assert len(set(rows)) == 4, out


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
    reason="needs valgrind's callgrind",
)
def test_cpu_callgrind_quick_counts_instructions_of_each_side() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_pusher_cpu.py"), "--quick", "--callgrind"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = re.search(
        r"^\s*this checkout\s+16000\s+enhanced\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s",
        proc.stdout,
        re.M,
    )
    assert row is not None, proc.stdout
    pusher, bare, direct = (float(x) for x in row.groups())
    assert pusher > 0 and bare > 0 and direct > 0, proc.stdout


def test_commands_quick_counts_match_commandstats() -> None:
    out = run_quick("bench_pusher_commands.py")
    # 2 sessions x 61 s: 13 appends each (12 chunks, then the tail with the end marker).
    # A first EVALSHA that finds no script is answered NOSCRIPT and sent again as one EVAL
    # on that node (once, or twice when both sessions' first appends meet the empty script
    # cache at once): the EVALSHAs, NOSCRIPT ones included, are always 26. Never a SCRIPT
    # LOAD (which redis-py would send to every primary). Two usage flushes each (60 s, end).
    evals = re.search(r"^\s*EVAL\s+(\d+)\s", out, re.M)
    assert evals is not None and int(evals[1]) in (1, 2), out
    assert "SCRIPT LOAD" not in out, out
    assert re.search(r"^\s*EVALSHA APPEND\s+26\s", out, re.M), out
    assert re.search(r"^\s*INCRBY\s+4\s", out, re.M), out
    assert re.search(r"^\s*XADD\s+28\s", out, re.M), out
    assert "equal, command by command" in out, out


def test_loop_quick_audits_every_chunk_after_the_outage() -> None:
    out = run_quick("bench_pusher_loop.py")
    for phase in ("idle", "ramp", "normal", "outage", "after"):
        assert re.search(rf"^\s*{phase}\s+[\d.]+ s \| stall max\s+[\d.]+ ms", out, re.M), out
    assert "NO AUDIO LOST" in out, out
    assert re.search(r"missing 0, duplicates 0", out), out


def test_append_quick_prints_every_path_at_every_rate() -> None:
    out = run_quick("bench_append.py")
    rows = re.findall(r"^\| (8000|16000) \| (\w+) \| ([\d.]+) \| ([\d.]+) ", out, re.M)
    assert {(rate, path) for rate, path, _, _ in rows} == {
        (rate, path)
        for rate in ("8000", "16000")
        for path in ("bare", "append", "previous", "floor")
    }, out
    assert all(float(cpu) > 0 for _, _, cpu, _ in rows), out
    assert all(float(ratio) == 1.0 for _, path, _, ratio in rows if path == "bare"), out
