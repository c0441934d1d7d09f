"""``copy_audio_chunks_for_merge`` keeps every name exactly, below the
conversation's prefix too.

The reader takes every object under ``chunks/{uid}/{cid}/`` whose file name parses as a
chunk object, one in a folder below it included (``naming.parse_object_name`` reads the
last path part). The copy put each at ``target prefix + file name``: a chunk at
``sub/T.bin`` lost its folder, and next to a ``T.bin`` with other bytes the merge failed
with ``ObjectConflictError`` on every run. And two sources with one name and other
bytes raced to one destination in the copy threads (on the emulator, which does not
enforce a rewrite's create-only precondition, both "copied", one over the other). Real
GCS emulator.
"""

from __future__ import annotations

import uuid

import pytest

from backend_hooks import storage
from backend_hooks.contract.errors import ObjectConflictError
from tests.integration.read.legacy_conversation import T0

pytestmark = pytest.mark.integration


def test_a_chunk_in_a_folder_keeps_its_folder_and_conflicts_with_nothing(
    sctx: storage.StorageContext,
) -> None:
    uid = f"names-{uuid.uuid4().hex[:8]}"
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


def test_two_sources_with_one_name_and_other_bytes_copy_neither(
    sctx: storage.StorageContext,
) -> None:
    """Copies run in threads: both raced to one destination and, where the create-only
    rewrite is not enforced (the emulator), both were "copied", one over the other."""
    uid = f"clash-{uuid.uuid4().hex[:8]}"
    name = f"{T0:.3f}.bin"
    for cid, fill in (("s1", b"\x01"), ("s2", b"\x02"), ("s3", b"\x01")):
        sctx.bucket.create_only(
            f"chunks/{uid}/{cid}/{name}", fill * 32000, content_type="x", metadata={}
        )
    sctx.bucket.create_only(
        f"chunks/{uid}/s1/{T0 + 2:.3f}.bin", b"\x03" * 32000, content_type="x", metadata={}
    )
    with pytest.raises(ObjectConflictError, match=rf"sources .*/s1/{name} and .*/s2/{name}"):
        storage.copy_audio_chunks_for_merge(uid, ["s1", "s2"], "dst", context=sctx)
    assert [o.name for o in sctx.bucket.list(f"chunks/{uid}/dst/")] == [
        f"chunks/{uid}/dst/{T0 + 2:.3f}.bin"
    ]  # the other copy is done
    # The same bytes under one name (s1 and s3) are one copy.
    report = storage.copy_audio_chunks_for_merge(uid, ["s1", "s3"], "d2", context=sctx)
    assert sorted(report.copied) == sorted(
        [f"chunks/{uid}/d2/{name}", f"chunks/{uid}/d2/{T0 + 2:.3f}.bin"]
    )
    assert report.already_there == (f"chunks/{uid}/d2/{name}",)
