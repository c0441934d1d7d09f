"""Shared by the backfill tests: the encryption secret their sealed legacy objects are
written with (the one the ``backfill_settings`` fixture of tests/integration/conftest.py
opens them with), and a new object as the fleet writes it, next to them."""

from __future__ import annotations

import uuid

from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.contract import codec, container, naming
from backend_hooks.contract.container import ChunkInfo

SECRET = "backfill-tests-secret-0123456789abcdef"


def fleet_object(bucket: GcsBucket, uid: str, cid: str, start: float, pcm: bytes) -> str:
    """A new object as the fleet writes it (one standard chunk of a pusher session): the
    backfill must leave it alone."""
    encoder = codec.ChunkEncoder(16000)
    info = ChunkInfo(uuid.uuid4().hex, 0, int(start * 1_000_000), 16000, len(pcm) // 2)
    data = container.build_chunk(info, encoder.encode(pcm), encoder.pre_skip)
    path = naming.object_name(
        uid, cid, start_us=info.start_us, end_us=info.end_us, sealed=False, data=data
    )
    meta = {
        "audiosync-format": "1",
        "audiosync-rate": "16000",
        "audiosync-session": info.session_id,
    }
    bucket.create_only(path, data, content_type="audio/ogg", metadata=meta)
    return path
