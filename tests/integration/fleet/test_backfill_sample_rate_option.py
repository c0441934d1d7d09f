"""``backfill --sample-rate`` against what a conversation's objects tell.

An operator who runs ``backfill --uid U --sample-rate 16000 --delete`` over a user whose
older conversations were recorded at 8 kHz (the old default, pcm8) had those re-encoded
as 16 kHz: played at twice the speed, half as long, and the 8 kHz sources deleted, so
nothing is left to read them right. The reader trusts a caller's rate because it changes
nothing; the backfill with ``delete`` cannot be undone, so when the objects themselves
tell a rate (legacy_pcm.infer_sample_rate) another ``--sample-rate`` must skip the
conversation. Real GCS emulator and Redis.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from backend_hooks.contract import naming
from tests.legacy_objects import write_legacy
from workers import backfill

pytestmark = pytest.mark.integration
NOW_US = time.time_ns() // 1000
T0 = float(NOW_US // 1_000_000 - 3 * 3600)


def _at_8k(bf: backfill.Backfill, uid: str, cid: str) -> list[str]:
    """Four 2 s chunks at 8 kHz, back to back: their spacing tells 8000 Hz."""
    rng = random.Random(11)
    return [
        write_legacy(bf.bucket, uid, cid, ".bin", [T0 + 2 * i], [rng.randbytes(2 * 8000 * 2)])
        for i in range(4)
    ]


def test_a_sample_rate_the_objects_contradict_skips_the_conversation(
    bf: backfill.Backfill,
) -> None:
    uid, cid = f"rate-{uuid.uuid4().hex[:8]}", "conv"
    sources = _at_8k(bf, uid, cid)
    report = backfill.backfill_user(bf, uid, [cid], now_us=NOW_US, delete=True, sample_rate=16000)
    left = sorted(o.name for o in bf.bucket.list(naming.conversation_prefix(uid, cid)))
    assert left == sources, "8 kHz sources re-encoded as 16 kHz and deleted"
    assert report.written == [] and report.deleted == []
    [skip] = report.skipped
    assert "8000" in skip.reason and "16000" in skip.reason


def test_the_rate_the_objects_tell_is_taken_as_given(bf: backfill.Backfill) -> None:
    uid, cid = f"rate-{uuid.uuid4().hex[:8]}", "conv"
    sources = _at_8k(bf, uid, cid)
    report = backfill.backfill_user(bf, uid, [cid], now_us=NOW_US, delete=True, sample_rate=8000)
    assert len(report.written) == 1 and sorted(report.deleted) == sources, report.lines()
