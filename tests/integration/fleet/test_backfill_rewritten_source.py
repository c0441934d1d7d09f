"""A legacy source rewritten after a backfill run wrote its object.

The resume step matched an earlier object's claimed sources by file name and size only,
and verified chunk layout only (raw PCM goes through a lossy encoder). A legacy ``.bin``
overwritten in place with other audio of the same length (a legacy uploader's retry, a
restore from a backup of another take) therefore still "verified", and ``--delete``
deleted it although the object holds the old audio, not its audio. The object's session
id is a digest over its sources' paths, sizes and bytes: with all its sources present, a
rerun can tell. Real GCS emulator and Redis.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from backend_hooks import storage
from backend_hooks.contract import naming
from tests.legacy_objects import write_legacy
from workers import backfill

pytestmark = pytest.mark.integration
NOW_US = time.time_ns() // 1000
T0 = float(NOW_US // 1_000_000 - 3 * 3600)


def test_a_source_rewritten_after_its_object_was_written_is_kept(
    bf: backfill.Backfill,
) -> None:
    uid, cid = f"rw-{uuid.uuid4().hex[:8]}", "conv"
    rng = random.Random(8)
    first = write_legacy(bf.bucket, uid, cid, ".bin", [T0], [rng.randbytes(32000)])
    write_legacy(bf.bucket, uid, cid, ".bin", [T0 + 2], [rng.randbytes(32000)])
    written = backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, sample_rate=8000)
    [made] = written.written
    # The first source is overwritten in place: same name, same size, other audio.
    other = rng.randbytes(32000)
    bf.bucket.bucket.blob(first).upload_from_string(other)
    report = backfill.backfill_conversation(
        bf, uid, cid, now_us=NOW_US, delete=True, sample_rate=8000
    )
    left = {o.name for o in bf.bucket.list(naming.conversation_prefix(uid, cid))}
    assert first in left, "a source whose audio no object holds was deleted"
    assert first not in report.deleted and [f.path for f in report.failed] == [made]
    reader = storage.StorageContext(bf.settings, bf.bucket, bf.keys)
    [stored] = [n for n in left if n == first]
    assert reader.bucket.download(stored) == other


@pytest.mark.xfail(
    strict=True,
    reason="with a claimed source already deleted the session id cannot be recomputed, "
    "and the claims hold no per-source digest (audiosync-backfill-sources is "
    "filename:size): a format change, left to the lead",
)
def test_a_rewritten_source_after_a_run_killed_mid_deletion_is_kept(
    bf: backfill.Backfill,
) -> None:
    uid, cid = f"rw-{uuid.uuid4().hex[:8]}", "conv"
    rng = random.Random(10)
    first = write_legacy(bf.bucket, uid, cid, ".bin", [T0], [rng.randbytes(32000)])
    second = write_legacy(bf.bucket, uid, cid, ".bin", [T0 + 2], [rng.randbytes(32000)])
    backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, sample_rate=8000)
    bf.bucket.delete(first)  # a --delete run killed after its first deletion
    bf.bucket.bucket.blob(second).upload_from_string(rng.randbytes(32000))  # then rewritten
    backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, delete=True, sample_rate=8000)
    left = {o.name for o in bf.bucket.list(naming.conversation_prefix(uid, cid))}
    assert second in left, "a source whose audio no object holds was deleted"
