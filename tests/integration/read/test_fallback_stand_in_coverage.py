"""The candidate fallback by start millisecond when the
candidate that reads holds less than the one that failed.

A new object of three chunks (3 s) and a legacy ``.bin`` of its first chunk share a start
millisecond (a backfilled object whose later sources are gone, a fleet object next to a
legacy upload). When the new object fails, the strict read used the ``.bin`` "in its
place" and returned 1 s, the other 2 s silently a gap (only a warning and ``skipped``
said it, calling the ``.bin`` its replacement). A stand-in replaces only what it covers:
the strict read must raise naming the object; ``skip_broken`` still reads around it.

Also here: a new object renamed to start after its own chunk (the stream's watermark
trusts the name; the chunk was trimmed away silently).
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from backend_hooks import storage
from backend_hooks.contract import codec, container, naming
from backend_hooks.contract.errors import FormatError
from tests.legacy_objects import write_legacy

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))
T0_US = round(T0 * 1_000_000)
RATE = 16000


def new_object(sctx: storage.StorageContext, uid: str, cid: str, chunks: int) -> tuple[str, bytes]:
    """A plain new ``.opus`` of ``chunks`` 1 s chunks from T0; its path and bytes."""
    encoder = codec.ChunkEncoder(RATE)
    data = b"".join(
        container.build_chunk(
            container.ChunkInfo("sess", seq, T0_US + seq * 1_000_000, RATE, RATE),
            encoder.encode(bytes(2 * RATE)),
            encoder.pre_skip,
        )
        for seq in range(chunks)
    )
    stem = f"{naming.format_time(T0_US)}-{naming.format_time(T0_US + chunks * 1_000_000)}"
    return f"{naming.conversation_prefix(uid, cid)}{stem}_{naming.content_digest(data)}.opus", data


@pytest.mark.parametrize("chunks", [3, 1])
def test_a_stand_in_replaces_only_the_audio_it_covers(
    sctx: storage.StorageContext, chunks: int
) -> None:
    uid, cid = f"fallback-{uuid.uuid4().hex[:8]}", "conv"
    path, data = new_object(sctx, uid, cid, chunks)
    sctx.bucket.bucket.blob(path).upload_from_string(data[: len(data) // 2])  # truncated
    first = random.Random(1).randbytes(2 * RATE)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [first])
    if chunks == 1:  # the .bin holds all the broken object held: it stands in for it
        merged = storage.download_merged_audio(uid, cid, sample_rate=RATE, context=sctx)
        assert merged.pcm == first
        assert [(s.path, len(s.used_instead)) for s in merged.skipped] == [(path, 1)]
        return
    with pytest.raises(FormatError, match=path) as raised:
        storage.download_merged_audio(uid, cid, sample_rate=RATE, context=sctx)
    assert "hold its audio only to" in str(raised.value)
    merged = storage.download_merged_audio(
        uid, cid, sample_rate=RATE, skip_broken=True, context=sctx
    )
    assert merged.pcm == first and [s.path for s in merged.skipped] == [path]


def test_later_objects_inside_a_failed_one_still_stand_in_with_the_first(
    sctx: storage.StorageContext,
) -> None:
    """A backfilled object beside all its sources: when it fails, the sources (the first
    of its start, the others later) read in its place, as before."""
    uid, cid = f"fallback-{uuid.uuid4().hex[:8]}", "conv"
    path, data = new_object(sctx, uid, cid, 3)
    sctx.bucket.bucket.blob(path).upload_from_string(data[: len(data) // 2])  # truncated
    sources = [random.Random(i).randbytes(2 * RATE) for i in range(3)]
    for i, source in enumerate(sources):
        write_legacy(sctx.bucket, uid, cid, ".bin", [T0 + i], [source])
    merged = storage.download_merged_audio(uid, cid, sample_rate=RATE, context=sctx)
    assert merged.pcm == b"".join(sources)
    assert [(s.path, len(s.used_instead)) for s in merged.skipped] == [(path, 1)]


def test_an_object_renamed_to_start_after_its_chunk_is_refused_not_silently_trimmed(
    sctx: storage.StorageContext,
) -> None:
    """Its chunk (seq 1 of the session) starts at 1 s, its name at 5 s: by the time the
    stream reads it, the timeline is at 4 s, and its chunk was trimmed away as an overlap,
    not even reported missing (its sequence number was read)."""
    uid, cid = f"fallback-{uuid.uuid4().hex[:8]}", "conv"
    encoder = codec.ChunkEncoder(RATE)

    def chunk(seq: int, at_s: int) -> bytes:
        info = container.ChunkInfo("sess", seq, T0_US + at_s * 1_000_000, RATE, RATE)
        return container.build_chunk(info, encoder.encode(bytes(2 * RATE)), encoder.pre_skip)

    def put(start_s: int, end_s: int, data: bytes) -> str:
        start, end = T0_US + start_s * 1_000_000, T0_US + end_s * 1_000_000
        stem = f"{naming.format_time(start)}-{naming.format_time(end)}"
        path = f"{naming.conversation_prefix(uid, cid)}{stem}_{naming.content_digest(data)}.opus"
        sctx.bucket.bucket.blob(path).upload_from_string(data)
        return path

    put(0, 4, chunk(0, 0) + chunk(2, 3))
    renamed = put(5, 6, chunk(1, 1))
    with pytest.raises(FormatError, match=f"{renamed}: holds audio from"):
        storage.download_merged_audio(uid, cid, context=sctx)
    merged = storage.download_merged_audio(uid, cid, skip_broken=True, context=sctx)
    assert merged.sample_count == 4 * RATE and [s.path for s in merged.skipped] == [renamed]
    assert [(m.first_seq, m.last_seq) for m in merged.missing] == [(1, 1)]
