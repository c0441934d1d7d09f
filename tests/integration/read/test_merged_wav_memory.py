"""The memory ``get_or_create_merged_audio`` takes to make a WAV.

It merged the whole audio file in memory (``download_merged_audio``: every sample, then
the WAV written from it), though the reader streams (``write_merged_wav``: a few objects
at a time) and the WAV goes to a temporary file anyway; and the upload from that file
read it whole (the client's resumable chunks are 100 MiB unless told): a 10 h audio file
held about 1.2 GB in the backend's process. Python allocations are counted
(``tracemalloc``: deterministic, not timing); the bound is loose (streaming needs two 2 MiB
upload chunks and a few objects), and the whole audio (19.2 MB) exceeds it. Real GCS
emulator; 20 minutes of 8 kHz raw PCM in 240 legacy objects.
"""

from __future__ import annotations

import tracemalloc
import uuid

import pytest
from google.oauth2 import service_account

from backend_hooks import storage
from tests.integration.read.legacy_conversation import T0
from tests.legacy_objects import write_legacy

pytestmark = pytest.mark.integration
SECONDS, RATE, PER_OBJECT = 1200, 8000, 5


def test_making_the_wav_does_not_hold_the_audio_in_memory(
    sctx: storage.StorageContext, signer: service_account.Credentials
) -> None:
    uid, cid = f"mem-{uuid.uuid4().hex[:8]}", "conv"
    chunk = (bytes(range(256)) * 400)[: PER_OBJECT * RATE * 2]
    starts = [T0 - SECONDS + i * PER_OBJECT for i in range(SECONDS // PER_OBJECT)]
    for start in starts:
        write_legacy(sctx.bucket, uid, cid, ".bin", [start], [chunk])
    pcm_bytes = SECONDS * RATE * 2  # 19.2 MB
    tracemalloc.start()
    try:
        made = storage.get_or_create_merged_audio(
            uid, cid, "file-1", starts, sample_rate=RATE, signing_credentials=signer,
            context=sctx,
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert made.created and made.duration == SECONDS
    assert sctx.bucket.stored(made.path).size == 44 + pcm_bytes
    # Streaming: an upload chunk (2 MiB, copied once) and a few objects; in memory: all.
    assert peak < pcm_bytes * 0.6, f"peak {peak / 1e6:.1f} MB for {pcm_bytes / 1e6:.1f} MB of PCM"
