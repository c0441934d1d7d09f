"""bench/proof.py's pure parts: request classes, per-session-hour arithmetic, ratios, the
audit's verdict, the plan's chunk bookkeeping and the looped speech."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import proof
from bench.proof import PlannedSession

BUCKET = "/storage/v1/b/audiosync-local"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/upload/storage/v1/b/bk/o?uploadType=multipart&ifGenerationMatch=0", "insert"),
        ("POST", "/upload/storage/v1/b/bk/o?uploadType=media&name=x", "insert"),
        ("POST", "/upload/storage/v1/b/bk/o?uploadType=resumable&name=x", "resumable_start"),
        ("PUT", "/upload/storage/v1/b/bk/o?uploadType=resumable&upload_id=abc", "insert"),
        ("GET", f"{BUCKET}/o?prefix=chunks%2Fu%2Fc%2F&prettyPrint=false", "list"),
        ("GET", f"{BUCKET}/o/chunks%2Fu%2Fc%2F1.000.bin?alt=media", "get"),
        ("GET", "/download/storage/v1/b/bk/o/chunks%2Fu%2F1.000.bin?alt=media", "get"),
        ("GET", f"{BUCKET}/o/chunks%2Fu%2Fc%2F1.000.bin?projection=noAcl", "get_metadata"),
        ("POST", f"{BUCKET}/o/chunks%2Fu%2Fc%2Fall.opus/compose", "compose"),
        ("POST", f"{BUCKET}/o/a.bin/copyTo/b/bk/o/b.bin", "copy"),
        ("POST", f"{BUCKET}/o/a.bin/rewriteTo/b/bk/o/b.bin?x=1", "rewrite"),
        ("PATCH", f"{BUCKET}/o/a.bin", "patch"),
        ("DELETE", f"{BUCKET}/o/a.bin", "delete"),
        ("GET", f"{BUCKET}?projection=noAcl&prettyPrint=false", "bucket_get"),
        ("POST", "/storage/v1/b?project=local", "bucket_insert"),
        ("GET", "/storage/v1/b", "bucket_list"),
        ("GET", "/_internal/healthcheck", "other"),
    ],
)
def test_each_request_is_classified_by_its_json_api_operation(
    method: str, path: str, kind: str
) -> None:
    assert proof.classify_request(method, path) == kind


def test_writes_and_listings_are_class_a_reads_class_b_deletes_free() -> None:
    counts = proof.count_requests(
        [
            ("POST", "/upload/storage/v1/b/bk/o?uploadType=multipart"),
            ("POST", "/upload/storage/v1/b/bk/o?uploadType=multipart"),
            ("GET", f"{BUCKET}/o?prefix=chunks%2F"),
            ("POST", f"{BUCKET}/o/x/compose"),
            ("GET", f"{BUCKET}/o/x?alt=media"),
            ("GET", f"{BUCKET}/o/x"),
            ("DELETE", f"{BUCKET}/o/x"),
        ]
    )
    assert (counts.class_a, counts.class_b) == (4, 2)
    assert counts.by_kind == {
        "compose": 1,
        "delete": 1,
        "get": 1,
        "get_metadata": 1,
        "insert": 2,
        "list": 1,
    }


def test_every_kind_has_a_class() -> None:
    assert set(proof.GCS_CLASS.values()) == {"A", "B", "free"}


def test_per_session_hour_figures_divide_by_the_audio_pushed() -> None:
    figures: dict[str, float] = dict.fromkeys(proof.RATED_FIGURES, 0.0)
    figures["gcs_class_a"] = 720
    figures["pusher_cpu_seconds"] = 1.5
    hours = proof.session_hours(40 * 90.0)  # 40 sessions x 90 s = 1 session-hour
    assert hours == 1.0
    out = proof.with_rates(figures, proof.session_hours(2 * 3600.0))
    assert out["gcs_class_a_per_session_hour"] == 360
    assert out["pusher_cpu_seconds_per_session_hour"] == 0.75
    assert out["gcs_class_a"] == 720  # totals kept
    assert all(f"{name}_per_session_hour" in out for name in proof.RATED_FIGURES)
    with pytest.raises(ValueError):
        proof.with_rates(figures, 0.0)


def test_ratios_are_audiosync_over_baseline_where_the_baseline_is_not_zero() -> None:
    base = {"gcs_class_a": 720, "redis_cpu_seconds": 0.0, "delay_seconds": {"p50": 0.5}, "ok": True}
    new = {"gcs_class_a": 60, "redis_cpu_seconds": 2.0, "delay_seconds": {"p50": 30.0}, "ok": True}
    assert proof.ratios(base, new) == {"gcs_class_a": 60 / 720, "delay_seconds.p50": 60.0}


def test_a_lost_chunk_fails_the_audit() -> None:
    expected = [(0, 0), (0, 1), (1, 0)]
    chunks = proof.audit_chunks(expected, [(0, 0), (1, 0)])
    assert (chunks.chunks, chunks.lost, chunks.duplicated, chunks.unexpected) == (3, 1, 0, 0)
    record = {**chunks.__dict__, "samples_expected": 10, "samples_read": 10, "exact": True}
    assert proof.verdict({"baseline": record}) == ["baseline: 1 chunk(s) lost"]


def test_a_duplicated_chunk_fails_the_audit() -> None:
    expected = [(0, 0), (0, 1)]
    chunks = proof.audit_chunks(expected, [(0, 0), (0, 1), (0, 1), (0, 1)])
    assert (chunks.lost, chunks.duplicated, chunks.unexpected) == (0, 2, 0)
    record = {
        **chunks.__dict__,
        "samples_expected": 10,
        "samples_read": 10,
        "min_correlation": 0.95,
        "correlation_threshold": 0.9,
    }
    assert proof.verdict({"audiosync": record}) == ["audiosync: 2 chunk(s) duplicated"]


def test_a_chunk_nobody_planned_fails_the_audit() -> None:
    chunks = proof.audit_chunks([(0, 0)], [(0, 0), (-1, 3)])
    assert (chunks.lost, chunks.duplicated, chunks.unexpected) == (0, 0, 1)


def test_short_audio_or_a_low_correlation_fails_the_audit() -> None:
    good = {"lost": 0, "duplicated": 0, "unexpected": 0, "samples_expected": 8, "samples_read": 8}
    assert proof.verdict({"baseline": {**good, "exact": True}}) == []
    assert proof.verdict({"baseline": {**good, "exact": False}}) != []
    assert proof.verdict({"baseline": {**good, "samples_read": 7, "exact": True}}) != []
    low = {**good, "min_correlation": 0.5, "correlation_threshold": 0.9}
    assert proof.verdict({"audiosync": low}) == ["audiosync: correlation 0.500 below 0.9"]


def test_the_delay_spread_is_nearest_rank() -> None:
    spread = proof.spread(float(v) for v in range(1, 101))
    assert spread == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert math.isnan(proof.spread([])["p50"])


def test_a_chunk_ends_on_the_frame_that_pushes_its_last_sample() -> None:
    s = PlannedSession(index=0, rate=8000, level="standard", offset_samples=0, samples=8000 * 12)
    assert (s.frame_samples, s.chunk_samples, s.chunks, s.frames) == (160, 40000, 3, 600)
    ends = {
        f: s.chunk_completed_by(f) for f in range(s.frames) if s.chunk_completed_by(f) is not None
    }
    assert ends == {249: 0, 499: 1}  # the last, partial chunk (2 s) goes with the close


def test_sessions_mix_every_rate_with_every_level() -> None:
    plan = proof.make_plan(8, 10.0, [8000, 16000], ["standard", "enhanced"], real_time=False)
    combos = {(s.rate, s.level) for s in plan.sessions}
    assert combos == {(r, lv) for r in (8000, 16000) for lv in ("standard", "enhanced")}
    assert len({s.offset_samples * 16000 // s.rate for s in plan.sessions}) == 8  # own offsets
    assert plan.audio_seconds == 80.0


def test_a_session_loops_the_speech_from_its_offset() -> None:
    speech = proof.Speech(proof.SPEECH)
    loop_samples = len(speech.at(16000)) // 4
    s = PlannedSession(0, 16000, "standard", loop_samples - 100, loop_samples + 1000)
    pcm = speech.pcm(s)
    source = speech.source
    assert len(pcm) == 2 * s.samples
    assert pcm[:200] == source[-200:]  # the tail of the sample, then it starts over
    assert pcm[200 : 200 + len(source)] == source


def test_correlation_finds_a_small_lag() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(4000) * 3000).astype(np.int16)
    shifted = np.concatenate([np.zeros(3, np.int16), x[:-3]])
    assert proof.best_correlation(x, shifted) > 0.99
    assert proof.best_correlation(x, -x) < 0.1  # inverted: no lag makes it alike


def test_rounds_alternate_which_path_goes_first() -> None:
    assert proof.phase_order(1) == [("baseline", 0), ("audiosync", 0)]
    assert proof.phase_order(3) == [
        ("baseline", 0),
        ("audiosync", 0),
        ("audiosync", 1),
        ("baseline", 1),
        ("baseline", 2),
        ("audiosync", 2),
    ]


def test_each_round_is_a_new_conversation_of_the_same_user() -> None:
    s = PlannedSession(3, 8000, "enhanced", 0, 8000)
    assert s.cid(0) != s.cid(1)
    assert s.uid("baseline") != s.uid("audiosync")


@pytest.mark.parametrize("how", [["-m", "bench.proof"], ["bench/proof.py"]])
def test_the_proof_runs_as_a_module_and_as_a_script(how: list[str]) -> None:
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, *how, "--help"], cwd=root, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--short" in proc.stdout and "--rounds" in proc.stdout
