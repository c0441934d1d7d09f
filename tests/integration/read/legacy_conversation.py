"""A one-chunk legacy conversation (a 2 s ``.bin`` at ``T0``) for the read-side tests."""

from __future__ import annotations

import random
import time
import uuid

from backend_hooks import storage
from tests.legacy_objects import write_legacy

T0 = float(int(time.time())) - 3600


def one_chunk_conversation(sctx: storage.StorageContext, tag: str) -> tuple[str, str]:
    """Writes a 2 s legacy ``.bin`` at ``T0`` for a new user: (its uid, its conversation)."""
    uid, cid = f"legacy{tag}-{uuid.uuid4().hex[:8]}", "conv"
    pcm = random.Random(tag).randbytes(2 * 16000 * 2)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [pcm])
    return uid, cid
