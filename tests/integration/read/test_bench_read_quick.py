"""bench/bench_read.py end to end on tiny sizes (10 s of audio a conversation), on the
session's emulator: every row is printed and every merge has the audio's exact length
(the bench asserts it). No timing asserted: speed goals live in docs/BENCHMARKS.md."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from audiosync_dev.localstack import StackInfo
from backend_hooks.contract.settings import Settings

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "bench_read.py"


def test_bench_read_prints_a_row_per_conversation_and_form(stack: StackInfo) -> None:
    spec = importlib.util.spec_from_file_location("bench_read", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_read"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    said: list[str] = []
    rows = module.bench(Settings.from_env(stack.env()), 10, 1, said.append)
    seen = {(row[:13].strip(), re.findall(r"in memory|streaming", row)[0]) for row in rows}
    assert seen == {
        (conversation, form)
        for conversation in ("standard", "enhanced", "legacy .bin")
        for form in ("in memory", "streaming")
    }, said
    assert all(re.search(r"\s0\.3\s", row) for row in rows), said  # 10 s at 16 kHz: 0.32 MB
