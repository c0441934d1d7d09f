"""``python -m bench.proof --short``: both paths run on the local stack with a real worker,
the JSON holds every figure of the contract, the audit passes, and a lost object makes
the proof exit non-zero. No speed is asserted: the figures live in docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import proof

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def run_proof(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "proof.json"
    # The proof starts its own stack: nothing of the test session's environment leaks in.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUDIOSYNC_", "CELERY_", "ENCRYPTION_SECRET"))
        and k not in ("BUCKET_PRIVATE_CLOUD_SYNC", "STORAGE_EMULATOR_HOST")
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.proof",
            *args,
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return proc, out


def test_short_proof_counts_both_paths_and_passes_its_audit(tmp_path: Path) -> None:
    proc, out = run_proof(tmp_path, "--short")
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["schema"] == "audiosync-proof/1"
    assert result["audit"]["ok"] is True
    for path in ("baseline", "audiosync"):
        figures = result["paths"][path]
        for name in proof.RATED_FIGURES:
            assert isinstance(figures[name], int | float), (path, name)
            assert isinstance(figures[f"{name}_per_session_hour"], int | float), (path, name)
        for key in ("delay_seconds", "redis_memory_peak_bytes", "gcs_requests_by_kind"):
            assert key in figures, (path, key)
        assert figures["store_bytes_per_audio_second"] >= 0
        audit = result["audit"][path]
        assert audit["lost"] == audit["duplicated"] == 0
        assert audit["chunks"] == 4 * 6  # 4 sessions x 30 s in 5 s chunks
        assert audit["samples_read"] == audit["samples_expected"] > 0
    assert result["audit"]["baseline"]["exact"] is True
    assert result["audit"]["audiosync"]["min_correlation"] >= 0.9
    base, new = result["paths"]["baseline"], result["paths"]["audiosync"]
    assert base["objects_stored"] == 24  # one object per 5 s chunk
    assert base["gcs_requests_by_kind"]["insert"] == 24
    assert new["redis_commands_sent"] > 0 and new["redis_commands_in_scripts"] > 0
    assert new["fleet_cpu_seconds"] >= 0 and new["pusher_cpu_seconds"] > 0
    assert 0 < result["ratios"]["gcs_class_a"] < 1
    assert 0 < result["ratios"]["bytes_stored"] < 1
    assert "pusher_cpu_seconds" in result["ratios"]
    assert result["session_hours"] == pytest.approx(4 * 30 / 3600)
    assert set(result["object_bytes_per_audio_second"]["audiosync"]) == {"8000", "16000"}
    markdown = (tmp_path / "work" / "proof.md").read_text()
    assert "Audit: **passed**" in markdown


def test_a_lost_object_makes_the_proof_exit_non_zero(tmp_path: Path) -> None:
    proc, out = run_proof(
        tmp_path,
        "--sessions",
        "2",
        "--seconds",
        "10",
        "--workers",
        "1",
        "--drop-object",
        "audiosync",
    )
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "AUDIT FAILED" in proc.stderr and "lost" in proc.stderr
    result = json.loads(out.read_text())
    assert result["audit"]["ok"] is False
    assert result["audit"]["audiosync"]["lost"] == 2  # the object held both 5 s chunks
    assert result["audit"]["baseline"]["lost"] == 0
