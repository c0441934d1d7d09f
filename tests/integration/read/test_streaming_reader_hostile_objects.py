"""The streaming reader in the real GCS emulator against objects and sinks an attacker
or an unlucky operator hands the streaming reader.

- a plain ``.opus`` named to end a century later (the in-memory read sized its buffer
  from the name: ``MemoryError`` for a minute of audio);
- a plain ``.opus`` whose chunk says it holds a negative number of samples (it raised
  ``SystemError``: not skipped with ``skip_broken``, the conversation unreadable);
- an empty legacy Opus object ten seconds before the audio (it started the timeline:
  ten seconds of zeros, and ``start_us`` ten seconds early);
- a WAV written to a file opened for appending (seekable, but every write lands at the
  end: the size patch was appended to the audio and the header said 0 bytes);
- a WAV written to a sink that takes part of each write (a raw socket: the rest was
  dropped);
- a stream dropped mid-way without ``close`` (its read threads must go with it).
"""

from __future__ import annotations

import gc
import os
import random
import struct
import threading
import time
import uuid
import wave
from pathlib import Path

import pytest

from backend_hooks import storage
from backend_hooks.contract import codec, container, naming
from backend_hooks.contract.errors import FormatError
from tests.legacy_objects import write_legacy

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))
T0_US = round(T0 * 1_000_000)
RATE = 16000
CENTURY_US = 100 * 365 * 86400 * 1_000_000


def conversation() -> tuple[str, str]:
    return f"hostile-{uuid.uuid4().hex[:8]}", "conv"


def pcm(seconds: float, seed: int) -> bytes:
    return random.Random(seed).randbytes(round(seconds * RATE) * 2)


def put(sctx: storage.StorageContext, path: str, data: bytes) -> None:
    sctx.bucket.bucket.blob(path).upload_from_string(data, content_type="application/octet-stream")


def opus_object(
    sctx: storage.StorageContext,
    uid: str,
    cid: str,
    *,
    start_us: int,
    seconds: float,
    end_us: int | None = None,
    claimed: int | None = None,
) -> str:
    """A plain new ``.opus`` of one chunk of silence; its name may claim another end and its
    chunk another sample count (its granule made to agree)."""
    samples = round(seconds * RATE)
    encoder = codec.ChunkEncoder(RATE)
    packets = encoder.encode(bytes(2 * samples))
    count = samples if claimed is None else claimed
    data = container.build_chunk(
        container.ChunkInfo("sess", 0, start_us, RATE, count), packets, encoder.pre_skip
    )
    stem = f"{naming.format_time(start_us)}-{naming.format_time(end_us or start_us)}"
    path = f"{naming.conversation_prefix(uid, cid)}{stem}_{naming.content_digest(data)}.opus"
    put(sctx, path, data)
    return path


def test_a_name_ending_a_century_later_does_not_size_the_in_memory_read(
    sctx: storage.StorageContext,
) -> None:
    uid, cid = conversation()
    opus_object(sctx, uid, cid, start_us=T0_US, seconds=2, end_us=T0_US + CENTURY_US)
    with storage.iter_merged_audio(uid, cid, context=sctx) as stream:
        assert stream.size_hint < 100 * 1024 * 1024, stream.size_hint
    merged = storage.download_merged_audio(uid, cid, context=sctx)
    assert merged.sample_count == 2 * RATE and merged.start_us == T0_US


def test_a_chunk_claiming_negative_samples_is_a_broken_object_that_can_be_skipped(
    sctx: storage.StorageContext,
) -> None:
    uid, cid = conversation()
    audio = pcm(2, 1)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [audio])
    bad = opus_object(sctx, uid, cid, start_us=T0_US + 2_000_000, seconds=1, claimed=-1)
    with pytest.raises(FormatError, match=bad):
        storage.download_merged_audio(uid, cid, sample_rate=RATE, context=sctx)
    merged = storage.download_merged_audio(
        uid, cid, sample_rate=RATE, skip_broken=True, context=sctx
    )
    assert merged.pcm == audio and [s.path for s in merged.skipped] == [bad]


def test_an_empty_legacy_opus_object_does_not_start_the_audio(
    sctx: storage.StorageContext,
) -> None:
    uid, cid = conversation()
    empty = struct.pack("<II", 0, 0)  # a legacy Opus chunk of no packets and no PCM
    put(sctx, f"{naming.conversation_prefix(uid, cid)}{T0 - 10:.3f}.opus", empty)
    audio = pcm(1, 2)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [audio])
    for fill_gaps in (True, False):
        merged = storage.download_merged_audio(uid, cid, None, fill_gaps, RATE, context=sctx)
        assert merged.start_us == T0_US
        assert merged.pcm == audio


def test_a_wav_written_to_a_file_opened_for_appending_is_a_wav_of_the_audio(
    sctx: storage.StorageContext, tmp_path: Path
) -> None:
    uid, cid = conversation()
    audio = pcm(1, 3)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [audio])
    by_mode, by_flag = tmp_path / "mode.wav", tmp_path / "flag.wav"
    with by_mode.open("ab") as appending:  # seekable, but every write lands at the end
        assert appending.seekable()
        storage.write_merged_wav(uid, cid, appending, sample_rate=RATE, context=sctx)
    descriptor = os.open(by_flag, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # mode says "wb"
    with os.fdopen(descriptor, "wb") as appending:
        storage.write_merged_wav(uid, cid, appending, sample_rate=RATE, context=sctx)
    for target in (by_mode, by_flag):
        data = target.read_bytes()
        assert len(data) == 44 + len(audio)
        assert data[44:] == audio
        with wave.open(str(target)) as back:
            assert back.getframerate() == RATE
            assert back.readframes(10 * RATE) == audio


def _read_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("audiosync-read")]


def test_a_stream_dropped_midway_without_close_leaves_no_read_thread(
    sctx: storage.StorageContext,
) -> None:
    uid, cid = conversation()
    for i in range(3 * storage.READ_AHEAD):
        write_legacy(sctx.bucket, uid, cid, ".bin", [T0 + i], [pcm(1, 10 + i)])
    before = set(_read_threads())
    stream = storage.iter_merged_audio(uid, cid, sample_rate=RATE, context=sctx)
    next(stream)
    assert set(_read_threads()) - before  # reading ahead
    del stream
    gc.collect()
    deadline = time.monotonic() + 30
    while set(_read_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(_read_threads()) - before


def test_a_wav_to_a_sink_that_takes_part_of_each_write_is_complete(
    sctx: storage.StorageContext,
) -> None:
    """A raw (unbuffered) socket or pipe file takes part of a write and says how much
    (``RawIOBase.write``); the rest was dropped: a WAV missing most of its audio."""
    uid, cid = conversation()
    audio = pcm(1, 4)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [audio])

    class Trickle:  # takes at most 1000 bytes a call, like a socket's send
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: bytes) -> int:
            taken = bytes(data[:1000])
            self.data += taken
            return len(taken)

    sink = Trickle()
    storage.write_merged_wav(uid, cid, sink, sample_rate=RATE, context=sctx)
    assert len(sink.data) == 44 + len(audio) and bytes(sink.data[44:]) == audio
