"""The backfill's resume step must never delete a sealed legacy source on
the word of a plain (standard) object.

``earlier_objects`` trusts any new object whose ``audiosync-backfill-sources`` metadata
names a source, and ``verify_holds`` compares only chunk starts, rates and sample counts
(raw PCM goes through a lossy encoder, so no PCM is compared). A plain ``.opus`` that
claims an ``.enc`` source and holds chunks of the same layout (an older tool, a foreign
writer, a hand-made "fix") therefore made ``backfill --delete`` delete the sealed source:
its audio then exists only unsealed, the level lowered. Real GCS emulator and Redis.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks.contract import naming
from tests.integration.backfilling import SECRET
from tests.legacy_objects import filename, write_legacy
from workers import backfill
from workers import backfill_plan as plan

pytestmark = pytest.mark.integration
NOW_US = time.time_ns() // 1000
T0 = float(NOW_US // 1_000_000 - 3 * 3600)


def _plain_claim_of_sealed(bf: backfill.Backfill, uid: str, cid: str) -> tuple[str, str]:
    """A sealed ``.enc`` source and a plain new object claiming it with the same chunk
    layout; (source path, object path)."""
    write_legacy(
        bf.bucket, uid, cid, ".enc", [T0], [speech_like(2, 8000, seed=3)], secret=SECRET.encode()
    )
    sealed = naming.parse_object_name(naming.conversation_prefix(uid, cid) + filename(T0, ".enc"))
    source = backfill.read_source(bf, uid, sealed, 8000)
    as_plain = naming.parse_object_name(sealed.path[: -len(".enc")] + ".bin")
    group = plan.Group([dataclasses.replace(source, name=as_plain)])
    assert not group.sealed
    data = backfill.build_object(bf, uid, group)
    metadata = {**group.metadata(), plan.SOURCES_KEY: plan.format_claims(source_claim(source))}
    first, last = group.chunks[0], group.chunks[-1]
    path = naming.object_name(
        uid, cid, start_us=first.start_us, end_us=plan.chunk_end_us(last), sealed=False, data=data
    )
    bf.bucket.create_only(path, data, content_type="audio/ogg", metadata=metadata)
    return sealed.path, path


def source_claim(source: plan.Source) -> dict[str, int]:
    return {source.name.filename: source.size}


def test_a_plain_object_claiming_a_sealed_source_never_gets_it_deleted(
    bf: backfill.Backfill,
) -> None:
    uid, cid = f"lvl-{uuid.uuid4().hex[:8]}", "conv"
    source, plain = _plain_claim_of_sealed(bf, uid, cid)
    report = backfill.backfill_conversation(
        bf, uid, cid, now_us=NOW_US, delete=True, sample_rate=8000
    )
    names = {o.name for o in bf.bucket.list(naming.conversation_prefix(uid, cid))}
    assert source in names, "the sealed source was deleted on a plain object's word"
    assert source not in report.deleted and plain not in report.verified
    assert [f.path for f in report.failed] == [plain]
    assert "sealed" in report.failed[0].reason
