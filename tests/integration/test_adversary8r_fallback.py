"""Adversary (issue 8, read side): the candidate fallback by start millisecond when the
candidate that reads holds less than the one that failed.

A new object of three chunks (3 s) and a legacy ``.bin`` of its first chunk share a start
millisecond (a backfilled object whose later sources are gone, a fleet object next to a
legacy upload). When the new object fails, the strict read used the ``.bin`` "in its
place" and returned 1 s, the other 2 s silently a gap (only a warning and ``skipped``
said it, calling the ``.bin`` its replacement). A stand-in replaces only what it covers:
the strict read must raise naming the object; ``skip_broken`` still reads around it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from audiosync_dev.localstack import StackInfo
from backend_hooks import codec, container, naming, storage
from backend_hooks.errors import FormatError
from backend_hooks.settings import Settings
from tests.legacy_objects import write_legacy

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))
T0_US = round(T0 * 1_000_000)
RATE = 16000


@pytest.fixture(scope="module")
def ctx(stack: StackInfo) -> Iterator[storage.StorageContext]:
    settings = replace(Settings.from_env(stack.env()), encryption_secret=None)
    yield storage.StorageContext.from_settings(settings)


def new_object(ctx: storage.StorageContext, uid: str, cid: str, chunks: int) -> tuple[str, bytes]:
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
    ctx: storage.StorageContext, chunks: int
) -> None:
    uid, cid = f"adv8r-f-{uuid.uuid4().hex[:8]}", "conv"
    path, data = new_object(ctx, uid, cid, chunks)
    ctx.bucket.bucket.blob(path).upload_from_string(data[: len(data) // 2])  # truncated
    first = random.Random(1).randbytes(2 * RATE)
    write_legacy(ctx.bucket, uid, cid, ".bin", [T0], [first])
    if chunks == 1:  # the .bin holds all the broken object held: it stands in for it
        merged = storage.download_merged_audio(uid, cid, sample_rate=RATE, context=ctx)
        assert merged.pcm == first
        assert [(s.path, len(s.used_instead)) for s in merged.skipped] == [(path, 1)]
        return
    with pytest.raises(FormatError, match=path) as raised:
        storage.download_merged_audio(uid, cid, sample_rate=RATE, context=ctx)
    assert "hold its audio only to" in str(raised.value)
    merged = storage.download_merged_audio(
        uid, cid, sample_rate=RATE, skip_broken=True, context=ctx
    )
    assert merged.pcm == first and [s.path for s in merged.skipped] == [path]


def test_later_objects_inside_a_failed_one_still_stand_in_with_the_first(
    ctx: storage.StorageContext,
) -> None:
    """A backfilled object beside all its sources: when it fails, the sources (the first
    of its start, the others later) read in its place, as before."""
    uid, cid = f"adv8r-f-{uuid.uuid4().hex[:8]}", "conv"
    path, data = new_object(ctx, uid, cid, 3)
    ctx.bucket.bucket.blob(path).upload_from_string(data[: len(data) // 2])  # truncated
    sources = [random.Random(i).randbytes(2 * RATE) for i in range(3)]
    for i, source in enumerate(sources):
        write_legacy(ctx.bucket, uid, cid, ".bin", [T0 + i], [source])
    merged = storage.download_merged_audio(uid, cid, sample_rate=RATE, context=ctx)
    assert merged.pcm == b"".join(sources)
    assert [(s.path, len(s.used_instead)) for s in merged.skipped] == [(path, 1)]
