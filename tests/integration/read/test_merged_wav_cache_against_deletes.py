"""The cached merged WAV (``get_or_create_merged_audio``) against a delete
racing it, in the real GCS emulator and Redis.

- A reader that lists and merges a conversation while ``delete_conversation_audio`` runs
  uploads its WAV after the delete has emptied ``merged/``: the deleted audio survives as
  a cached WAV (and a signed URL to it) unless the reader honours the deleted mark.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from google.oauth2 import service_account

from backend_hooks import storage
from backend_hooks.adapters import redis_store
from backend_hooks.contract.errors import InvalidInputError, StorageError
from tests.integration.read.legacy_conversation import T0, one_chunk_conversation

pytestmark = pytest.mark.integration


def test_a_delete_racing_the_cache_write_leaves_no_merged_wav(
    sctx: storage.StorageContext, signer: service_account.Credentials, monkeypatch: Any
) -> None:
    uid, cid = one_chunk_conversation(sctx, "race")
    upload = sctx.bucket.upload_file_if_generation

    def delete_then_upload(*args: Any, **kwargs: Any) -> bool:
        # The user deletes the conversation after this reader merged its chunks and
        # before its WAV lands: the delete's listing of merged/ finds nothing yet.
        storage.delete_conversation_audio(uid, cid, context=sctx)
        return upload(*args, **kwargs)

    monkeypatch.setattr(sctx.bucket, "upload_file_if_generation", delete_then_upload)
    with pytest.raises(InvalidInputError, match="deleted"):
        storage.get_or_create_merged_audio(
            uid, cid, "file-1", [T0], sample_rate=16000, signing_credentials=signer, context=sctx
        )
    monkeypatch.undo()
    assert sctx.bucket.list(f"merged/{uid}/{cid}/") == []
    assert sctx.bucket.list(f"chunks/{uid}/{cid}/") == []


def test_a_marked_conversation_gets_no_new_cached_wav(
    sctx: storage.StorageContext, signer: service_account.Credentials
) -> None:
    # delete_conversation_audio has set its mark and not yet deleted the chunks.
    uid, cid = one_chunk_conversation(sctx, "mark")
    redis_store.mark_conversation_deleted(sctx.redis_client(), uid, cid, ttl_seconds=60)
    with pytest.raises(InvalidInputError, match="deleted"):
        storage.get_or_create_merged_audio(
            uid, cid, "file-1", [T0], sample_rate=16000, signing_credentials=signer, context=sctx
        )
    assert sctx.bucket.list(f"merged/{uid}/{cid}/") == []


def test_the_reader_still_works_without_a_delete(
    sctx: storage.StorageContext, signer: service_account.Credentials
) -> None:
    """The mark check must not break the ordinary path: made once, then fresh."""
    uid, cid = one_chunk_conversation(sctx, "ok")
    made = storage.get_or_create_merged_audio(
        uid, cid, "file-1", [T0], sample_rate=16000, signing_credentials=signer, context=sctx
    )
    again = storage.get_or_create_merged_audio(
        uid, cid, "file-1", [T0], sample_rate=16000, signing_credentials=signer, context=sctx
    )
    assert (made.created, again.created, again.duration) == (True, False, 2.0)


def test_redis_silent_after_the_upload_leaves_no_wav(
    sctx: storage.StorageContext, signer: service_account.Credentials
) -> None:
    uid, cid = one_chunk_conversation(sctx, "silent")
    settings = replace(sctx.settings, redis_url="redis://127.0.0.1:1/0")  # nothing listens
    silent = storage.StorageContext(settings, sctx.bucket, sctx.keys)
    with pytest.raises(StorageError, match=r"Redis at .* cannot say"):
        storage.get_or_create_merged_audio(
            uid, cid, "file-1", [T0], sample_rate=16000, signing_credentials=signer,
            context=silent,
        )  # fmt: skip
    assert sctx.bucket.list(f"merged/{uid}/{cid}/") == []
