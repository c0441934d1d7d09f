"""Adversary 8: ``copy_audio_chunks_for_merge`` keeps every name exactly, below the
conversation's prefix too.

The reader takes every object under ``chunks/{uid}/{cid}/`` whose file name parses as a
chunk object, one in a folder below it included (``naming.parse_object_name`` reads the
last path part). The copy put each at ``target prefix + file name``: a chunk at
``sub/T.bin`` lost its folder, and next to a ``T.bin`` with other bytes the merge failed
with ``ObjectConflictError`` on every run. Real GCS emulator.
"""

from __future__ import annotations

import uuid

import pytest

from backend_hooks import storage
from tests.integration.adversary8_reader import T0, sctx

pytestmark = pytest.mark.integration
__all__ = ["sctx"]  # the fixture


def test_a_chunk_in_a_folder_keeps_its_folder_and_conflicts_with_nothing(
    sctx: storage.StorageContext,
) -> None:
    uid = f"adv8names-{uuid.uuid4().hex[:8]}"
    name = f"{T0:.3f}.bin"
    for where, fill in ((name, b"\x01"), (f"sub/{name}", b"\x02")):
        sctx.bucket.create_only(
            f"chunks/{uid}/src/{where}", fill * 32000, content_type="x", metadata={}
        )
    report = storage.copy_audio_chunks_for_merge(uid, ["src"], "dst", context=sctx)
    want = sorted([f"chunks/{uid}/dst/{name}", f"chunks/{uid}/dst/sub/{name}"])
    assert sorted(report.copied) == want
    assert sorted(o.name for o in sctx.bucket.list(f"chunks/{uid}/dst/")) == want
    assert sctx.bucket.download(f"chunks/{uid}/dst/sub/{name}") == b"\x02" * 32000
