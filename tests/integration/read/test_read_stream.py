"""The streaming reader in the real GCS emulator: ``iter_merged_audio`` and
``write_merged_wav`` give exactly the in-memory merge, read a bounded number of objects
ahead, and a gap longer than ``AUDIOSYNC_MAX_GAP_FILL_SECONDS`` is refused naming the
objects on either side, before any download when the listing shows it."""

from __future__ import annotations

import io
import random
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from dataclasses import replace

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters import gcs
from backend_hooks.contract.errors import GapTooLongError
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import FakeClock, flush
from tests.integration.read.sealing import SECRET
from tests.legacy_objects import write_legacy
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))


class CountingBucket(gcs.GcsBucket):
    """The real bucket, counting full downloads (and when each started)."""

    def __init__(self, inner: gcs.GcsBucket) -> None:
        self.client, self.bucket = inner.client, inner.bucket
        self.downloads: list[str] = []
        self.lock = threading.Lock()

    def download(self, name: str) -> bytes:
        with self.lock:
            self.downloads.append(name)
        return super().download(name)


@pytest.fixture
def bucket(sealed_settings: Settings) -> Iterator[CountingBucket]:
    yield CountingBucket(gcs.GcsBucket.from_settings(sealed_settings))


def _sctx(
    sealed_settings: Settings, bucket: gcs.GcsBucket, max_gap: float = 21600.0
) -> storage.StorageContext:
    ctx = storage.StorageContext.from_settings(
        replace(sealed_settings, max_gap_fill_seconds=max_gap)
    )
    ctx.bucket = bucket
    return ctx


def pcm(seconds: float, rate: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(round(seconds * rate) * 2)


def test_the_stream_is_the_in_memory_merge_and_reads_a_few_objects_ahead(
    sealed_settings: Settings, bucket: CountingBucket
) -> None:
    uid, cid, rate = f"stream-{uuid.uuid4().hex[:8]}", "conv", 8000
    chunks = [pcm(5, rate, i) for i in range(12)]
    for i, chunk in enumerate(chunks):
        if i == 7:
            continue  # a 5 s hole
        ext = ".enc" if i % 3 == 0 else ".bin"
        write_legacy(bucket, uid, cid, ext, [T0 + 5 * i], [chunk], secret=SECRET)
    want = b"".join(bytes(len(c)) if i == 7 else c for i, c in enumerate(chunks))
    sctx = _sctx(sealed_settings, bucket)

    stream = storage.iter_merged_audio(uid, cid, context=sctx)
    # Known before the first block is asked for; only a few objects read so far.
    assert (stream.sample_rate, stream.start_us) == (rate, round(T0 * 1_000_000))
    assert len(bucket.downloads) <= 2 * storage.READ_AHEAD
    first = next(stream)
    assert want.startswith(first)
    got = first + b"".join(stream)
    assert got == want and stream.sample_count == len(want) // 2
    assert stream.missing == () and stream.skipped == ()
    assert len(bucket.downloads) == 11  # each object once

    merged = storage.download_merged_audio(uid, cid, context=sctx)
    assert merged.pcm == want and merged.sample_rate == rate and merged.skipped == ()
    assert storage.download_audio_chunks_and_merge(uid, cid, None, False, 8000, context=sctx) == (
        want[: 7 * 5 * 2 * rate] + want[8 * 5 * 2 * rate :]
    )

    seekable = io.BytesIO()
    written = storage.write_merged_wav(uid, cid, seekable, context=sctx)
    assert written.sample_count == len(want) // 2
    seekable.seek(0)
    with wave.open(seekable) as back:
        assert (back.getframerate(), back.getnchannels(), back.getsampwidth()) == (rate, 1, 2)
        assert back.getnframes() == len(want) // 2
        assert back.readframes(back.getnframes()) == want

    class Pipe:  # a non-seekable sink (a socket, a pipe)
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: bytes) -> int:
            self.data += data
            return len(data)

    pipe = Pipe()
    storage.write_merged_wav(uid, cid, pipe, context=sctx)
    assert pipe.data[4:8] == pipe.data[40:44] == b"\xff\xff\xff\xff"
    assert bytes(pipe.data[44:]) == want


def test_an_abandoned_stream_stops_reading(
    sealed_settings: Settings, bucket: CountingBucket
) -> None:
    uid, cid = f"abandon-{uuid.uuid4().hex[:8]}", "conv"
    for i in range(3 * storage.READ_AHEAD):
        write_legacy(bucket, uid, cid, ".bin", [T0 + 5 * i], [pcm(5, 8000, i)])
    with storage.iter_merged_audio(uid, cid, context=_sctx(sealed_settings, bucket)) as stream:
        next(stream)
    assert len(bucket.downloads) <= 2 * storage.READ_AHEAD + 1


def test_a_stray_chunk_far_away_is_refused_before_any_download(
    sealed_settings: Settings, bucket: CountingBucket
) -> None:
    uid, cid, rate = f"stray-{uuid.uuid4().hex[:8]}", "conv", 8000
    a, b = pcm(5, rate, 1), pcm(5, rate, 2)
    c = pcm(5, rate, 3)
    stray = write_legacy(bucket, uid, cid, ".bin", [86_400.0], [c])  # 1970
    first = write_legacy(bucket, uid, cid, ".bin", [T0], [a])
    write_legacy(bucket, uid, cid, ".bin", [T0 + 5], [b])
    sctx = _sctx(sealed_settings, bucket)
    with pytest.raises(GapTooLongError) as caught:
        storage.download_merged_audio(uid, cid, sample_rate=rate, context=sctx)
    assert (caught.value.before, caught.value.after) == (stray, first)
    assert caught.value.gap_seconds > 50 * 365 * 86_400
    message = str(caught.value)
    assert stray in message and first in message and "AUDIOSYNC_MAX_GAP_FILL_SECONDS" in message
    assert bucket.downloads == []  # refused from the listing: nothing read, nothing allocated

    # What the error says to do works.
    unfilled = storage.download_merged_audio(
        uid, cid, fill_gaps=False, sample_rate=rate, context=sctx
    )
    assert unfilled.pcm == c + a + b
    left_out = storage.download_merged_audio(uid, cid, [T0, T0 + 5], sample_rate=rate, context=sctx)
    assert left_out.pcm == a + b


def test_a_gap_only_reading_shows_is_refused_when_the_stream_reaches_it(
    ctx: WorkerContext, clock: FakeClock, sealed_settings: Settings
) -> None:
    """New objects' names bound their audio; a skipped broken object between two others
    opens a gap the listing could not see: refused in the stream, naming both sides."""
    uid, cid, rate = f"gapread-{uuid.uuid4().hex[:8]}", "conv", 16000
    client = AudioSyncClient(replace(ctx.settings, encryption_secret=SECRET), clock=clock)
    session = client.open_session(uid, cid, rate, "standard")
    session.push(speech_like(5, rate, seed=1), T0)
    session.close()
    assert flush(ctx, session.session_id).failed is None
    client.close()
    bad = write_legacy(ctx.bucket, uid, cid, ".enc", [T0 + 5], [pcm(3, rate, 2)], secret=b"x" * 40)
    last = write_legacy(ctx.bucket, uid, cid, ".bin", [T0 + 8], [pcm(2, rate, 3)])
    counting = CountingBucket(ctx.bucket)
    sctx = _sctx(sealed_settings, counting, max_gap=2.5)
    with pytest.raises(GapTooLongError) as caught:
        storage.download_merged_audio(uid, cid, sample_rate=rate, skip_broken=True, context=sctx)
    assert caught.value.after == last and caught.value.before.endswith(".opus")
    assert caught.value.gap_seconds == pytest.approx(3.0, abs=0.01)
    assert bad in counting.downloads  # the listing could not tell: the stream did
    merged = storage.download_merged_audio(
        uid, cid, sample_rate=rate, skip_broken=True, context=_sctx(sealed_settings, ctx.bucket)
    )
    assert merged.sample_count == 10 * rate and [s.path for s in merged.skipped] == [bad]
