"""The backfill report's numbers after a GCS failure half-way.

``backfill_user`` turned a conversation's ``StorageError`` into one "failed" line and
dropped that conversation's report: the objects it had already written (and verified)
were in the bucket but not in ``written``, ``objects_after`` or the operation counts'
share of it, so the operator read "wrote 0 object(s)". Real GCS emulator and Redis; the
failure is the second upload's.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest

from backend_hooks.contract import naming
from backend_hooks.contract.errors import StorageError
from tests.integration.backfilling import SECRET
from tests.legacy_objects import write_legacy
from workers import backfill

pytestmark = pytest.mark.integration
NOW_US = time.time_ns() // 1000
T0 = float(NOW_US // 1_000_000 - 3 * 3600)


def test_a_conversation_stopped_by_gcs_reports_what_it_wrote(
    bf: backfill.Backfill, monkeypatch: Any
) -> None:
    uid, cid = f"rep-{uuid.uuid4().hex[:8]}", "conv"
    rng = random.Random(9)
    write_legacy(bf.bucket, uid, cid, ".bin", [T0], [rng.randbytes(32000)])
    write_legacy(
        bf.bucket, uid, cid, ".enc", [T0 + 2], [rng.randbytes(32000)], secret=SECRET.encode()
    )  # another level: a second object
    upload = bf.bucket.create_only
    calls: list[str] = []

    def second_fails(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if len(calls) == 2:
            raise StorageError(f"upload of {name} failed: 503 (injected)")
        return upload(name, *args, **kwargs)

    monkeypatch.setattr(bf.bucket, "create_only", second_fails)
    report = backfill.backfill_user(bf, uid, [cid], now_us=NOW_US, sample_rate=8000)
    monkeypatch.undo()
    stored = [o.name for o in bf.bucket.list(naming.conversation_prefix(uid, cid))]
    new = [p for p in stored if naming.parse_object_name(p).is_new]
    assert len(new) == 1 and report.written == new, report.lines()
    assert report.verified == new
    assert report.objects_after == len(stored) == 3 and report.legacy_objects_after == 2
    assert report.conversations == 1 and len(report.failed) == 1
    assert "injected" in report.failed[0].reason
