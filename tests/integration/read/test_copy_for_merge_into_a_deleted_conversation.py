"""``copy_audio_chunks_for_merge`` into a conversation that
``delete_conversation_audio`` has marked deleted.

The fleet and the backfill upload nothing into a marked conversation, and delete what
they stored after the delete's listing; the merge copy wrote into it regardless. A user
deleting the target while the backend merges into it (the delete lists ``chunks/`` before
the copies land) kept the copied audio under a deleted conversation for good. Real GCS
emulator and Redis.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from backend_hooks import storage
from backend_hooks.adapters import redis_store
from backend_hooks.contract.errors import InvalidInputError, StorageError
from tests.integration.read.legacy_conversation import T0
from tests.legacy_objects import write_legacy

pytestmark = pytest.mark.integration


def _source(sctx: storage.StorageContext) -> str:
    uid = f"copy-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        write_legacy(sctx.bucket, uid, "src", ".bin", [T0 + 2 * i], [bytes([i]) * 64000])
    return uid


def test_no_copy_into_a_conversation_marked_deleted(sctx: storage.StorageContext) -> None:
    uid = _source(sctx)
    redis_store.mark_conversation_deleted(sctx.redis_client(), uid, "dst", ttl_seconds=60)
    with pytest.raises(InvalidInputError, match="deleted"):
        storage.copy_audio_chunks_for_merge(uid, ["src"], "dst", context=sctx)
    assert sctx.bucket.list(f"chunks/{uid}/dst/") == []
    assert len(sctx.bucket.list(f"chunks/{uid}/src/")) == 3  # the sources untouched


def test_a_delete_of_the_target_racing_the_copies_leaves_nothing_in_it(
    sctx: storage.StorageContext, monkeypatch: Any
) -> None:
    uid = _source(sctx)
    copy = sctx.bucket.copy_create_only
    calls: list[str] = []

    def copy_after_delete(source: Any, destination: str, **kwargs: Any) -> Any:
        if not calls:  # the user deletes the target after the copies were planned
            storage.delete_conversation_audio(uid, "dst", context=sctx)
        calls.append(destination)
        return copy(source, destination, **kwargs)

    monkeypatch.setattr(sctx.bucket, "copy_create_only", copy_after_delete)
    with pytest.raises(InvalidInputError, match="deleted"):
        storage.copy_audio_chunks_for_merge(uid, ["src"], "dst", context=sctx)
    monkeypatch.undo()
    assert len(calls) == 3 and sctx.bucket.list(f"chunks/{uid}/dst/") == []


def test_redis_silent_copies_nothing(sctx: storage.StorageContext) -> None:
    uid = _source(sctx)
    settings = replace(sctx.settings, redis_url="redis://127.0.0.1:1/0")  # nothing listens
    silent = storage.StorageContext(settings, sctx.bucket, sctx.keys)
    with pytest.raises(StorageError, match="Redis"):
        storage.copy_audio_chunks_for_merge(uid, ["src"], "dst", context=silent)
    assert sctx.bucket.list(f"chunks/{uid}/dst/") == []


def test_an_ordinary_merge_still_copies(sctx: storage.StorageContext) -> None:
    uid = _source(sctx)
    report = storage.copy_audio_chunks_for_merge(uid, ["src"], "dst", context=sctx)
    assert len(report.copied) == 3 and len(sctx.bucket.list(f"chunks/{uid}/dst/")) == 3
