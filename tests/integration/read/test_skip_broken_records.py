"""skip_broken at record granularity: one bad record costs its own audio, not its object's.

Legacy raw objects sealed the old way (tests/legacy_objects.py) with one record spoiled:
its plaintext length of silence takes its place, so every later chunk keeps its time; a
truncated object keeps the records before the cut. A strict read names the record.
"""

from __future__ import annotations

import time
import uuid

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import storage
from backend_hooks.contract import naming
from backend_hooks.contract.errors import DecryptionError, FormatError
from tests.integration.read.sealing import SECRET
from tests.legacy_objects import write_legacy

pytestmark = pytest.mark.integration
T0 = float(int(time.time())) - 3600
R = 16000


def rewrite(sealed_sctx: storage.StorageContext, path: str, data: bytes) -> None:
    sealed_sctx.bucket.delete(path)
    sealed_sctx.bucket.create_only(path, data, content_type="x", metadata={})


def test_a_bad_record_of_a_batch_is_silence_of_its_length(
    sealed_sctx: storage.StorageContext,
) -> None:
    uid, cid = f"skiprec-{uuid.uuid4().hex[:8]}", "conv"
    chunks = [speech_like(2, R, seed=s) for s in (1, 2, 3)]
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0 - 2], [speech_like(2, R, seed=9)])
    [path] = [
        write_legacy(
            sealed_sctx.bucket, uid, cid, ".batch.enc", [T0, T0 + 2, T0 + 4], chunks, secret=SECRET
        )
    ]
    data = bytearray(sealed_sctx.bucket.download(path))
    second = 4 + 12 + len(chunks[0]) + 16  # the second record's first byte
    data[second + 4 + 12 + 50] ^= 0xFF  # a byte of its ciphertext
    rewrite(sealed_sctx, path, bytes(data))

    with pytest.raises(DecryptionError, match=rf"{path}: sealed record 1"):
        storage.download_merged_audio(uid, cid, context=sealed_sctx)
    merged = storage.download_merged_audio(uid, cid, skip_broken=True, context=sealed_sctx)
    start = 2 * 2 * R
    assert merged.pcm[start:] == chunks[0] + bytes(len(chunks[1])) + chunks[2]
    [skipped] = merged.skipped
    assert skipped.path == path and "sealed record 1" in skipped.reason
    assert "silence" in skipped.reason


def test_a_truncated_object_keeps_the_records_before_the_cut(
    sealed_sctx: storage.StorageContext,
) -> None:
    uid, cid = f"skipcut-{uuid.uuid4().hex[:8]}", "conv"
    chunks = [speech_like(2, R, seed=s) for s in (4, 5)]
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0 - 2], [speech_like(2, R, seed=8)])
    path = write_legacy(
        sealed_sctx.bucket, uid, cid, ".batch.enc", [T0, T0 + 2], chunks, secret=SECRET
    )
    data = sealed_sctx.bucket.download(path)
    rewrite(sealed_sctx, path, data[:-100])  # the last record cut short

    # (its framing is broken, so it is no rate evidence: the rate is given)
    with pytest.raises(FormatError, match=rf"{path}: sealed record 1"):
        storage.download_merged_audio(uid, cid, sample_rate=R, context=sealed_sctx)
    merged = storage.download_merged_audio(
        uid, cid, sample_rate=R, skip_broken=True, context=sealed_sctx
    )
    assert merged.pcm[2 * 2 * R :] == chunks[0]  # the first record, in place
    assert [s.path for s in merged.skipped] == [path]
    assert naming.parse_object_name(path).start_us == round(T0 * 1_000_000)


def test_a_whole_candidate_wins_over_a_salvaged_one(sealed_sctx: storage.StorageContext) -> None:
    """X.enc with one bad record of three and X.bin of the same chunk: the .bin is read."""
    uid, cid = f"skipcand-{uuid.uuid4().hex[:8]}", "conv"
    chunk = speech_like(3, R, seed=6)
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0 - 3], [speech_like(3, R, seed=7)])
    enc = write_legacy(
        sealed_sctx.bucket, uid, cid, ".enc", [T0], [chunk], secret=SECRET, records_per_chunk=3
    )
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0], [chunk])
    data = bytearray(sealed_sctx.bucket.download(enc))
    data[-20] ^= 0xFF  # the last record's ciphertext
    rewrite(sealed_sctx, enc, bytes(data))
    merged = storage.download_merged_audio(uid, cid, skip_broken=True, context=sealed_sctx)
    assert merged.pcm[3 * 2 * R :] == chunk
    [skipped] = merged.skipped
    assert skipped.path == enc and skipped.used_instead == (enc[: -len(".enc")] + ".bin",)
