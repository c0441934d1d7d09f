"""Candidate fallback and ``skip_broken`` in the real GCS emulator: objects of
the same start stand in for each other; a conversation with a corrupt, a truncated or a
foreign user's object is readable with ``skip_broken=True`` (each skipped object listed
with its path and why, its audio a gap) and otherwise raises a typed error naming the
object and the record. Legacy objects are written byte for byte by tests/legacy_objects.py;
new ones in the fleet's layout (chunk containers, v1 records, content-named objects)."""

from __future__ import annotations

import logging
import random
import time
import uuid

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import storage
from backend_hooks.adapters import gcs
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.errors import ConfigError, DecryptionError, FormatError
from backend_hooks.contract.settings import Settings
from tests.integration.read.sealing import SECRET
from tests.legacy_objects import legacy_bytes, write_legacy

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))


@pytest.fixture(scope="module")
def bucket(sealed_settings: Settings) -> gcs.GcsBucket:
    return gcs.GcsBucket.from_settings(sealed_settings)


@pytest.fixture(scope="module")
def sctx(sealed_settings: Settings, bucket: gcs.GcsBucket) -> storage.StorageContext:
    ctx = storage.StorageContext.from_settings(sealed_settings)
    ctx.bucket = bucket
    return ctx


def pcm(seconds: float, rate: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(round(seconds * rate) * 2)


def zeros(seconds: float, rate: int) -> bytes:
    return bytes(round(seconds * rate) * 2)


def ids(prefix: str) -> tuple[str, str]:
    return f"{prefix}-{uuid.uuid4().hex[:8]}", "conv"


def new_object_bytes(uid: str, start: float, seconds: float, rate: int, sealed: bool) -> bytes:
    """A new object of 1 s chunks of one fresh session, as the fleet concatenates them."""
    session, encoder = uuid.uuid4().hex, ChunkEncoder(rate)
    out = []
    for seq in range(round(seconds)):
        piece = speech_like(1, rate, seed=seq)
        info = container.ChunkInfo(session, seq, round((start + seq) * 1e6), rate, rate)
        body = container.build_chunk(info, encoder.encode(piece), encoder.pre_skip)
        out.append(envelope.seal(envelope.UserKeys(SECRET), uid, info, body) if sealed else body)
    return b"".join(out)


def put_new(
    bucket: gcs.GcsBucket, uid: str, cid: str, data: bytes, start: float, end: float
) -> str:
    name = naming.object_name(
        uid,
        cid,
        start_us=round(start * 1e6),
        end_us=round(end * 1e6),
        sealed=not data.startswith(b"OggS"),
        data=data,
    )
    bucket.create_only(name, data, content_type="application/octet-stream", metadata={})
    return name


def test_a_broken_candidate_falls_back_to_the_other_of_its_start(
    bucket: gcs.GcsBucket, sctx: storage.StorageContext, caplog: pytest.LogCaptureFixture
) -> None:
    uid, cid = ids("fallback")
    rate = 8000
    a, b, c = pcm(5, rate, 1), pcm(5, rate, 2), pcm(5, rate, 3)
    write_legacy(bucket, uid, cid, ".bin", [T0], [a])
    write_legacy(bucket, uid, cid, ".bin", [T0 + 5], [b])  # b stored twice: .bin and .enc
    sealed = bytearray(legacy_bytes(".enc", [b], secret=SECRET, uid=uid))
    sealed[60] ^= 1  # the .enc copy is corrupt
    broken = f"{naming.conversation_prefix(uid, cid)}{T0 + 5:.3f}.enc"
    bucket.create_only(broken, bytes(sealed), content_type="x", metadata={})
    write_legacy(bucket, uid, cid, ".enc", [T0 + 10], [c], secret=SECRET)
    with caplog.at_level(logging.WARNING, logger="backend_hooks.storage"):
        merged = storage.download_merged_audio(uid, cid, context=sctx)
    assert merged.pcm == a + b + c and merged.sample_rate == rate  # b once, from the .bin
    [skipped] = merged.skipped
    assert skipped.path == broken and skipped.used_instead == (broken[: -len(".enc")] + ".bin",)
    assert f"{broken}: sealed record 0" in skipped.reason
    assert f"{broken}: sealed record 0" in caplog.text and "in its place" in caplog.text

    # Both candidates broken (a raw .bin always reads: any bytes are PCM): the first one's
    # typed error, naming the other too.
    bucket.delete(broken[: -len(".enc")] + ".bin")
    batch = broken[: -len(".enc")] + ".batch.enc"
    bucket.create_only(batch, bytes(sealed[:-5]), content_type="x", metadata={})
    with pytest.raises(FormatError, match=r"truncated .*same start failed too") as caught:
        storage.download_merged_audio(uid, cid, sample_rate=rate, context=sctx)
    assert f"{batch}: sealed record 0" in str(caught.value) and broken in str(caught.value)


def test_skip_broken_reads_around_corrupt_truncated_and_foreign_objects(
    bucket: gcs.GcsBucket, sctx: storage.StorageContext
) -> None:
    uid, cid = ids("skip")
    rate = 16000
    legacy = [pcm(5, rate, 10 + i) for i in range(4)]
    write_legacy(bucket, uid, cid, ".bin", [T0], [legacy[0]])
    good = new_object_bytes(uid, T0 + 5, 3, rate, sealed=False)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # an Ogg page's CRC no longer matches
    corrupt = put_new(bucket, uid, cid, bytes(bad), T0 + 5, T0 + 8)
    write_legacy(bucket, uid, cid, ".bin", [T0 + 8], [legacy[1]])
    whole = new_object_bytes(uid, T0 + 13, 2, rate, sealed=True)
    truncated = put_new(bucket, uid, cid, whole[:-9], T0 + 13, T0 + 15)
    foreign_enc = f"{naming.conversation_prefix(uid, cid)}{T0 + 15:.3f}.enc"
    other = legacy_bytes(".enc", [legacy[2]], secret=SECRET, uid="someone-else")
    bucket.create_only(foreign_enc, other, content_type="x", metadata={})
    foreign_opus = put_new(
        bucket, uid, cid, new_object_bytes("someone-else", T0 + 20, 2, rate, True), T0 + 20, T0 + 22
    )
    write_legacy(bucket, uid, cid, ".bin", [T0 + 22], [legacy[3]])  # overlaps nothing

    expected_errors = [
        (corrupt, FormatError, "checksum mismatch"),
        (truncated, FormatError, "sealed record 1"),
        (foreign_enc, DecryptionError, "sealed record 0"),
        (foreign_opus, DecryptionError, "sealed record 0"),
    ]
    for path, kind, what in expected_errors:  # each alone is an error naming it
        keep = [p for p, _, _ in expected_errors if p != path]
        data = {p: bucket.download(p) for p in keep}
        for p in keep:
            bucket.delete(p)
        with pytest.raises(kind) as caught:
            storage.download_merged_audio(uid, cid, sample_rate=rate, context=sctx)
        assert path in str(caught.value) and what in str(caught.value), caught.value
        for p, d in data.items():
            bucket.create_only(p, d, content_type="x", metadata={})

    merged = storage.download_merged_audio(
        uid, cid, sample_rate=rate, skip_broken=True, context=sctx
    )
    assert merged.start_us == round(T0 * 1e6) and merged.sample_rate == rate
    # Lossless legacy audio exact, every broken object a gap, but the truncated object's
    # first record (1 s of Opus at 13 s): skip_broken leaves out only the record cut short.
    at13 = 2 * 13 * rate
    salvaged = merged.pcm[at13 : at13 + 2 * rate]
    assert len(salvaged) == 2 * rate and salvaged != zeros(1, rate)
    want = legacy[0] + zeros(3, rate) + legacy[1] + salvaged + zeros(8, rate) + legacy[3]
    assert merged.pcm == want
    assert sorted(s.path for s in merged.skipped) == sorted(p for p, _, _ in expected_errors)
    assert all(s.used_instead == () and s.reason for s in merged.skipped)
    by_path = {s.path: s.reason for s in merged.skipped}
    for path, _, what in expected_errors:
        assert path in by_path[path] and what in by_path[path]

    stream = storage.iter_merged_audio(uid, cid, sample_rate=rate, skip_broken=True, context=sctx)
    assert b"".join(stream) == want and {s.path for s in stream.skipped} == set(by_path)

    # Without a secret a sealed object is a configuration error, never skipped.
    no_key = storage.StorageContext(sctx.settings, bucket, None)
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET"):
        storage.download_merged_audio(uid, cid, sample_rate=rate, skip_broken=True, context=no_key)


def test_new_and_legacy_objects_with_gaps_overlaps_and_duplicates_at_8k_and_16k(
    bucket: gcs.GcsBucket, sctx: storage.StorageContext
) -> None:
    for rate in (8000, 16000):
        uid, cid = ids(f"mixed{rate}")
        a, b, c = pcm(5, rate, 20), pcm(5, rate, 21), pcm(5, rate, 22)
        write_legacy(bucket, uid, cid, ".bin", [T0], [a])
        write_legacy(bucket, uid, cid, ".batch.bin", [T0 + 5], [b])
        write_legacy(bucket, uid, cid, ".enc", [T0 + 5], [b], secret=SECRET)  # b again
        # After a 10 s gap (a shorter one after 5 s chunks can read as another rate to the
        # inference rule, docs/FORMATS.md §6: 5 s of 16 kHz then 2 s of gap looks like 12 kHz).
        write_legacy(bucket, uid, cid, ".bin", [T0 + 20], [c])
        data = new_object_bytes(uid, T0 + 23, 3, rate, sealed=True)  # overlaps c by 2 s
        put_new(bucket, uid, cid, data, T0 + 23, T0 + 26)
        merged = storage.download_merged_audio(uid, cid, context=sctx)
        assert merged.sample_rate == rate
        head = a + b + zeros(10, rate) + c
        assert merged.pcm[: len(head)] == head  # lossless: exact, b once
        assert merged.sample_count == 26 * rate  # the new object's first 2 s trimmed
        assert merged.pcm[2 * 25 * rate :] != zeros(1, rate)  # its last second, decoded
        assert merged.skipped == () and merged.missing == ()
