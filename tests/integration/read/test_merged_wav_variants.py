"""Two variants of one audio file's merged WAV share one cached object.

``get_or_create_merged_audio`` caches every variant (``fill_gaps``, ``sample_rate``) at
the same path, ``merged/{uid}/{conversation_id}/{audio_file_id}.wav``, and the signed URL
names the path, not a generation. A client handed a URL of the gap-filled WAV then
downloads whatever the last reader made there: after another reader asked for the same
audio file without gaps filled, the first client's URL serves the unfilled WAV (other
length, other timing); the two readers also rebuild the WAV for each other every time.
Real GCS emulator and Redis; the URL fetched from the emulator.
"""

from __future__ import annotations

import io
import random
import urllib.request
import uuid
import wave

import pytest
from google.oauth2 import service_account

from backend_hooks import storage
from backend_hooks.read import conversations
from tests.integration.read.legacy_conversation import T0
from tests.legacy_objects import write_legacy

pytestmark = pytest.mark.integration


def _fetch_frames(url: str) -> int:
    request = urllib.request.Request(url, headers={"Host": "storage.googleapis.com"})
    with urllib.request.urlopen(request, timeout=10) as response:
        data = bytes(response.read())
    with wave.open(io.BytesIO(data)) as wav:
        return int(wav.getnframes())


def test_a_url_of_the_filled_wav_still_serves_it_after_an_unfilled_one_is_made(
    sctx: storage.StorageContext, signer: service_account.Credentials
) -> None:
    uid, cid = f"var-{uuid.uuid4().hex[:8]}", "conv"
    rng = random.Random(4)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [rng.randbytes(32000)])
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0 + 3], [rng.randbytes(32000)])  # a 2 s gap

    def get(fill_gaps: bool) -> conversations.MergedAudioFile:
        return storage.get_or_create_merged_audio(
            uid, cid, "file-1", [T0, T0 + 3], fill_gaps, 16000, signing_credentials=signer,
            context=sctx,
        )  # fmt: skip

    filled = get(True)
    unfilled = get(False)
    assert (filled.duration, unfilled.duration) == (4.0, 2.0)
    assert _fetch_frames(filled.url) == 4 * 16000, "the filled URL serves another WAV"
    assert _fetch_frames(unfilled.url) == 2 * 16000
    # Each variant stays cached: asking again makes neither again.
    assert not get(True).created and not get(False).created
