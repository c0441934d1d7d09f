"""backend_hooks.read.conversations and the exact durations of every kind, against the real GCS
emulator through google-cloud-storage: legacy objects written byte for byte by
tests/legacy_objects.py and tests/legacy_opus.py (LEGACY_FORMATS.md), new ones by the real
pusher and flush.

Audio-file records (grouping at the threshold, durations equal to the merged length),
merge copies (names kept, create-only, twice = nothing new, conflicts and failures
raise, sealed objects still open), deletion of every kind and prefix, and the cached
merged WAV behind a signed URL (fetched from the emulator) going stale when a copy adds a
chunk.
"""

from __future__ import annotations

import io
import logging
import random
import time
import urllib.request
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from google.oauth2 import service_account

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters import gcs
from backend_hooks.contract import naming
from backend_hooks.contract.errors import (
    ConfigError,
    InvalidInputError,
    ObjectConflictError,
    StorageError,
)
from backend_hooks.read import conversations
from tests.integration.flushing import FakeClock, flush
from tests.integration.read.sealing import SECRET
from tests.legacy_objects import write_legacy
from tests.legacy_opus import write_legacy_opus
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))  # new objects are flushed: the worker refuses far-off times
RAW_EXTENSIONS = (".bin", ".enc", ".batch.bin", ".batch.enc")


def pcm(seconds: float, rate: int, seed: int, odd: bool = False) -> bytes:
    return random.Random(seed).randbytes(round(seconds * rate) * 2 + odd)


def _ids(prefix: str) -> tuple[str, str]:
    return f"{prefix}-{uuid.uuid4().hex[:8]}", "conv"


def _record(
    ctx: WorkerContext,
    clock: FakeClock,
    uid: str,
    cid: str,
    rate: int,
    level: str,
    pieces: list[tuple[bytes, float]],
) -> None:
    """Push ``pieces`` (PCM, start) through the real pusher, close, flush into new objects."""
    client = AudioSyncClient(replace(ctx.settings, encryption_secret=SECRET), clock=clock)
    session = client.open_session(uid, cid, rate, level)
    for data, start in pieces:
        session.push(data, start)
    session.close()
    result = flush(ctx, session.session_id)
    assert result.failed is None and result.objects_created >= 1, result
    client.close()


def _listed(
    sealed_sctx: storage.StorageContext, uid: str, cid: str, **kw: Any
) -> list[tuple[float, str, Any]]:
    items = storage.list_audio_chunks(uid, cid, context=sealed_sctx, **kw)
    return [(round(i["timestamp"] - T0, 3), i["kind"], i["duration"]) for i in items]


# --- exact durations ---------------------------------------------------------------------


def test_every_legacy_opus_kind_has_its_exact_duration_without_decoding(
    sealed_sctx: storage.StorageContext, caplog: pytest.LogCaptureFixture
) -> None:
    uid, cid = _ids("lopus")
    a, b, c = pcm(5, 16000, 1), pcm(5, 16000, 2), pcm(3.7, 16000, 3, odd=True)
    bucket = sealed_sctx.bucket
    write_legacy_opus(bucket, uid, cid, ".opus", T0, a)
    write_legacy_opus(bucket, uid, cid, ".opus.enc", T0 + 5, b, secret=SECRET, records=3)
    write_legacy_opus(bucket, uid, cid, ".opus.enc", T0 + 10, c, secret=SECRET)
    assert _listed(sealed_sctx, uid, cid) == [
        (0.0, "legacy-opus", 5.0),
        (5.0, "legacy-opus", 5.0),
        (10.0, "legacy-opus", 59200 / 16000),  # 118,401 bytes: the odd byte is no sample
    ]
    # The listing agrees with decoding: the merged audio is exactly that long.
    merged = storage.download_merged_audio(uid, cid, context=sealed_sctx)
    assert merged.sample_rate == 16000 and merged.sample_count == 80000 + 80000 + 59200
    [record] = storage.create_audio_files_from_chunks(uid, cid, context=sealed_sctx)
    assert record["duration"] == merged.duration == 13.7

    # A corrupt header, a stub, and a sealed object without the secret: None, warned,
    # the listing goes on.
    prefix = naming.conversation_prefix(uid, cid)
    bucket.create_only(
        f"{prefix}{T0 + 20:.3f}.opus",
        b"\x01\x00\x00\x00\x00\xf4\x01\x00xx",
        content_type="x",
        metadata={},
    )
    bucket.create_only(f"{prefix}{T0 + 25:.3f}.opus", b"\x01\x00", content_type="x", metadata={})
    keyless = storage.StorageContext(sealed_sctx.settings, bucket, None)
    with caplog.at_level(logging.WARNING, logger="backend_hooks.durations"):
        listed = _listed(keyless, uid, cid)
    assert listed == [
        (0.0, "legacy-opus", 5.0),
        (5.0, "legacy-opus", None),
        (10.0, "legacy-opus", None),
        (20.0, "legacy-opus", None),
        (25.0, "legacy-opus", None),
    ]
    assert f"{prefix}{T0 + 20:.3f}.opus: duration not known" in caplog.text
    assert "legacy Opus header says 128000 bytes of PCM in 1 packets" in caplog.text
    assert "shorter than its 8-byte header" in caplog.text
    assert (
        f"{prefix}{T0 + 5:.3f}.opus.enc holds v0 sealed records: set ENCRYPTION_SECRET"
        in caplog.text
    )


@pytest.mark.parametrize("rate", [8000, 16000])
def test_raw_legacy_durations_and_audio_files_at_8k_and_16k(
    sealed_sctx: storage.StorageContext, rate: int
) -> None:
    uid, cid = _ids(f"raw{rate}")
    chunks = [pcm(5, rate, 10 + i) for i in range(4)]
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0], chunks[:1])
    write_legacy(
        sealed_sctx.bucket,
        uid,
        cid,
        ".enc",
        [T0 + 5],
        chunks[1:2],
        secret=SECRET,
        records_per_chunk=2,
    )
    write_legacy(
        sealed_sctx.bucket, uid, cid, ".batch.enc", [T0 + 10, T0 + 15], chunks[2:], secret=SECRET
    )
    write_legacy(
        sealed_sctx.bucket, uid, cid, ".batch.bin", [T0 + 30], [pcm(2.5, rate, 20)]
    )  # a 10 s gap
    assert _listed(sealed_sctx, uid, cid) == [
        (0.0, "legacy-pcm", 5.0),
        (5.0, "legacy-pcm", 5.0),
        (10.0, "legacy-pcm-batch", 10.0),
        (30.0, "legacy-pcm-batch", 2.5),
    ]
    [record] = storage.create_audio_files_from_chunks(uid, cid, context=sealed_sctx)
    merged = storage.download_merged_audio(uid, cid, context=sealed_sctx)
    assert merged.sample_rate == rate
    assert record["duration"] == merged.duration == 32.5  # gaps filled, from sample counts
    assert record["chunk_timestamps"] == [T0, T0 + 5, T0 + 10, T0 + 30]
    # The caller's rate wins over the inferred one, as in the listing.
    other = 16000 if rate == 8000 else 8000
    [at_other] = storage.create_audio_files_from_chunks(
        uid, cid, sample_rate=other, context=sealed_sctx
    )
    assert at_other["duration"] == 30 + 2.5 * rate / other


def test_grouping_at_the_threshold_89_s_joins_91_s_splits(
    sealed_sctx: storage.StorageContext,
) -> None:
    uid, _ = _ids("gap")
    for cid, gap in (("joins", 89), ("splits", 91)):
        write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0], [pcm(5, 16000, 30)])
        write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0 + 5], [pcm(5, 16000, 31)])
        write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0 + 10 + gap], [pcm(5, 16000, 32)])
    [joined] = storage.create_audio_files_from_chunks(uid, "joins", context=sealed_sctx)
    assert joined["duration"] == 104.0 and len(joined["chunk_timestamps"]) == 3
    split = storage.create_audio_files_from_chunks(uid, "splits", context=sealed_sctx)
    assert [(f["duration"], f["started_at"].timestamp()) for f in split] == [
        (10.0, T0),
        (5.0, T0 + 101),
    ]
    assert len({f["id"] for f in split}) == 2
    # The keyword and the setting override the default of 90 s.
    [wide] = storage.create_audio_files_from_chunks(
        uid, "splits", gap_seconds=91, context=sealed_sctx
    )
    assert wide["duration"] == 106.0
    narrow = storage.StorageContext(
        replace(sealed_sctx.settings, audio_file_gap_seconds=60),
        sealed_sctx.bucket,
        sealed_sctx.keys,
    )
    assert len(storage.create_audio_files_from_chunks(uid, "joins", context=narrow)) == 2
    assert storage.create_audio_files_from_chunks(uid, "nothing-here", context=sealed_sctx) == []


def test_new_objects_from_metadata_or_their_bytes_and_a_legacy_duplicate_counted_once(
    ctx: WorkerContext, clock: FakeClock, sealed_sctx: storage.StorageContext
) -> None:
    uid, cid = _ids("newdur")
    rate = 16000
    first = speech_like(5, rate, seed=40)
    _record(
        ctx,
        clock,
        uid,
        cid,
        rate,
        "enhanced",
        [(first, T0), (speech_like(2, rate, seed=41), T0 + 5)],
    )
    _record(ctx, clock, uid, "standard", rate, "standard", [(speech_like(3, rate, seed=42), T0)])
    # The legacy object of the same first chunk (what a backfill leaves next to its copy);
    # alone, its rate cannot be inferred: the caller's.
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0], [first])
    listed = storage.list_audio_chunks(uid, cid, sample_rate=rate, context=sealed_sctx)
    assert sorted((i["kind"], i["duration"]) for i in listed) == [
        ("legacy-pcm", 5.0),
        ("opus", 7.0),
    ]
    [record] = storage.create_audio_files_from_chunks(
        uid, cid, sample_rate=rate, context=sealed_sctx
    )
    merged = storage.download_merged_audio(uid, cid, sample_rate=rate, context=sealed_sctx)
    assert merged.duration == 7.0
    assert record["duration"] == pytest.approx(7.0, abs=0.001)  # not 12: the duplicate once

    # Without metadata (an object copied by another tool): the container's own counts.
    for source in (cid, "standard"):
        for stored in sealed_sctx.bucket.list(naming.conversation_prefix(uid, source)):
            if stored.name.endswith(("opus", "opus.enc")):
                data = sealed_sctx.bucket.download(stored.name)
                bare = stored.name.replace(f"/{source}/", "/bare/")
                sealed_sctx.bucket.create_only(bare, data, content_type="x", metadata={})
    bare_listed = storage.list_audio_chunks(uid, "bare", context=sealed_sctx)
    assert sorted((i["path"][-4:], i["duration"], i["sample_rate"]) for i in bare_listed) == [
        (".enc", 7.0, 16000),
        ("opus", 3.0, 16000),
    ]


# --- merge copies ------------------------------------------------------------------------


def _every_kind(
    ctx: WorkerContext, clock: FakeClock, sealed_sctx: storage.StorageContext, uid: str, cid: str
) -> None:
    """One conversation holding an object of every kind, back to back from T0 at 16 kHz."""
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0], [pcm(5, 16000, 50)])
    write_legacy(sealed_sctx.bucket, uid, cid, ".enc", [T0 + 5], [pcm(5, 16000, 51)], secret=SECRET)
    write_legacy(sealed_sctx.bucket, uid, cid, ".batch.bin", [T0 + 10], [pcm(5, 16000, 52)])
    write_legacy(
        sealed_sctx.bucket,
        uid,
        cid,
        ".batch.enc",
        [T0 + 15, T0 + 20],
        [pcm(5, 16000, 53), pcm(5, 16000, 54)],
        secret=SECRET,
    )
    write_legacy_opus(sealed_sctx.bucket, uid, cid, ".opus", T0 + 25, pcm(5, 16000, 55))
    write_legacy_opus(
        sealed_sctx.bucket, uid, cid, ".opus.enc", T0 + 30, pcm(5, 16000, 56), secret=SECRET
    )
    _record(ctx, clock, uid, cid, 16000, "enhanced", [(speech_like(5, 16000, seed=57), T0 + 35)])


def _names(sealed_sctx: storage.StorageContext, uid: str, cid: str) -> list[str]:
    return sorted(
        s.name.rsplit("/", 1)[1]
        for s in sealed_sctx.bucket.list(naming.conversation_prefix(uid, cid))
    )


def test_copy_for_merge_keeps_every_name_opens_sealed_objects_and_twice_copies_nothing(
    ctx: WorkerContext, clock: FakeClock, sealed_sctx: storage.StorageContext
) -> None:
    uid, _ = _ids("copy")
    _every_kind(ctx, clock, sealed_sctx, uid, "a")
    write_legacy(sealed_sctx.bucket, uid, "b", ".bin", [T0 + 40], [pcm(5, 16000, 58)])
    sealed_sctx.bucket.create_only(
        f"chunks/{uid}/b/notes.txt", b"x", content_type="text/plain", metadata={}
    )
    write_legacy(
        sealed_sctx.bucket, uid, "target", ".bin", [T0 + 45], [pcm(5, 16000, 59)]
    )  # its own

    report = storage.copy_audio_chunks_for_merge(
        uid, ["a", "b", "target"], "target", context=sealed_sctx
    )
    source_names = [*_names(sealed_sctx, uid, "a"), f"{T0 + 40:.3f}.bin"]
    assert sorted(p.rsplit("/", 1)[1] for p in report.copied) == sorted(source_names)
    assert report.already_there == () and report.left_out == (f"chunks/{uid}/b/notes.txt",)
    target_names = _names(sealed_sctx, uid, "target")
    assert target_names == sorted([*source_names, f"{T0 + 45:.3f}.bin"])
    assert f"{T0 + 30:.3f}.opus.enc" in target_names and f"{T0 + 30:.3f}.enc" not in target_names
    assert sum(n.endswith(".opus.enc") for n in target_names) == 2  # the legacy one and the new one

    # Sealed objects open under the target (the conversation id is not authenticated), and
    # the merged audio is the sources', then the target's own chunk.
    merged_a = storage.download_merged_audio(uid, "a", context=sealed_sctx)
    merged_b = storage.download_merged_audio(uid, "b", sample_rate=16000, context=sealed_sctx)
    merged = storage.download_merged_audio(uid, "target", context=sealed_sctx)
    assert merged.pcm[: len(merged_a.pcm)] == merged_a.pcm
    assert merged.pcm[len(merged_a.pcm) : len(merged_a.pcm) + len(merged_b.pcm)] == merged_b.pcm
    assert merged.duration == 50.0

    again = storage.copy_audio_chunks_for_merge(uid, ["a", "b"], "target", context=sealed_sctx)
    assert again.copied == () and sorted(again.already_there) == sorted(report.copied)
    assert _names(sealed_sctx, uid, "target") == target_names


def test_a_conflicting_destination_or_a_failed_copy_raises_naming_both(
    sealed_sctx: storage.StorageContext,
) -> None:
    uid, _ = _ids("copyfail")
    write_legacy(sealed_sctx.bucket, uid, "a", ".bin", [T0], [pcm(5, 16000, 60)])
    write_legacy(sealed_sctx.bucket, uid, "a", ".bin", [T0 + 5], [pcm(5, 16000, 61)])
    clash = write_legacy(
        sealed_sctx.bucket, uid, "t", ".bin", [T0], [pcm(5, 16000, 62)]
    )  # other audio
    before = sealed_sctx.bucket.download(clash)
    with pytest.raises(
        ObjectConflictError, match=rf"1 of 2 copies failed: copy of .*/a/{T0:.3f}\.bin to {clash}"
    ):
        storage.copy_audio_chunks_for_merge(uid, ["a"], "t", context=sealed_sctx)
    assert sealed_sctx.bucket.download(clash) == before  # nothing overwritten
    assert f"{T0 + 5:.3f}.bin" in _names(sealed_sctx, uid, "t")  # the other copy was done

    @dataclass
    class DeletingBucket(gcs.GcsBucket):
        """Lists, then a source disappears before it is copied (another process deleted it)."""

        inner: gcs.GcsBucket
        doomed: str

        def __post_init__(self) -> None:
            self.client, self.bucket = self.inner.client, self.inner.bucket

        def list_versions(self, prefix: str) -> list[gcs.ObjectVersion]:
            listed = self.inner.list_versions(prefix)
            self.inner.delete(self.doomed)
            return listed

    doomed = write_legacy(sealed_sctx.bucket, uid, "a", ".bin", [T0 + 10], [pcm(5, 16000, 63)])
    racing = storage.StorageContext(
        sealed_sctx.settings, DeletingBucket(sealed_sctx.bucket, doomed), sealed_sctx.keys
    )
    with pytest.raises(
        StorageError,
        match=rf"copy of .*{doomed} to .*/u2/{T0 + 10:.3f}\.bin failed: the source is gone",
    ):
        storage.copy_audio_chunks_for_merge(uid, ["a"], "u2", context=racing)

    for bad in ("a", ["a/../b"], [""]):
        with pytest.raises(InvalidInputError):
            storage.copy_audio_chunks_for_merge(uid, bad, "t", context=sealed_sctx)
    with pytest.raises(InvalidInputError, match="target_conversation_id"):
        storage.copy_audio_chunks_for_merge(uid, ["a"], "t/x", context=sealed_sctx)


# --- deletion ----------------------------------------------------------------------------

NEW_NAME = "{t:.3f}-{e:.3f}_0123456789abcdef{ext}"


def _one_of_each(sealed_sctx: storage.StorageContext, uid: str, cid: str) -> dict[str, float]:
    """An object of each extension (content irrelevant to deleting), by extension: start."""
    prefix = naming.conversation_prefix(uid, cid)
    starts = {}
    names = [
        f"{T0 + 5 * i:.3f}{ext}" for i, ext in enumerate((*RAW_EXTENSIONS, ".opus", ".opus.enc"))
    ]
    names += [
        NEW_NAME.format(t=T0 + 30 + 5 * i, e=T0 + 35 + 5 * i, ext=ext)
        for i, ext in enumerate((".opus", ".opus.enc"))
    ]
    for name in names:
        sealed_sctx.bucket.create_only(prefix + name, name.encode(), content_type="x", metadata={})
        starts[name] = naming.parse_object_name(prefix + name).timestamp
    return starts


def test_delete_audio_chunks_deletes_each_kind_by_its_timestamp(
    sealed_sctx: storage.StorageContext,
) -> None:
    uid, cid = _ids("delkind")
    starts = _one_of_each(sealed_sctx, uid, cid)
    left = sorted(starts)
    for name, start in starts.items():
        storage.delete_audio_chunks(uid, cid, [start], context=sealed_sctx)
        left.remove(name)
        assert _names(sealed_sctx, uid, cid) == left, name
    storage.delete_audio_chunks(uid, cid, list(starts.values()), context=sealed_sctx)  # idempotent


def test_delete_conversation_audio_takes_every_prefix_and_kind_and_nothing_else(
    sealed_sctx: storage.StorageContext,
) -> None:
    uid, _ = _ids("delconv")
    _one_of_each(sealed_sctx, uid, "c")
    _one_of_each(sealed_sctx, uid, "c2")  # a neighbour whose id starts with the other's
    sealed_sctx.bucket.create_only(f"chunks/{uid}/c/notes.txt", b"x", content_type="x", metadata={})
    for prefix in ("audio", "merged"):
        for cid in ("c", "c2"):
            sealed_sctx.bucket.create_only(
                f"{prefix}/{uid}/{cid}/x.wav", b"RIFF", content_type="x", metadata={}
            )
    assert storage.delete_conversation_audio(uid, "c", context=sealed_sctx) == {
        "merged": 1,
        "chunks": 9,
        "audio": 1,
    }
    for prefix in ("chunks", "audio", "merged"):
        assert sealed_sctx.bucket.list(f"{prefix}/{uid}/c/") == []
    assert len(_names(sealed_sctx, uid, "c2")) == 8
    assert [len(sealed_sctx.bucket.list(f"{p}/{uid}/c2/")) for p in ("audio", "merged")] == [1, 1]
    assert storage.delete_conversation_audio(uid, "c", context=sealed_sctx) == {
        "merged": 0,
        "chunks": 0,
        "audio": 0,
    }
    with pytest.raises(InvalidInputError, match="conversation_id"):
        storage.delete_conversation_audio(uid, "", context=sealed_sctx)
    with pytest.raises(ValueError, match="ending with '/'"):
        sealed_sctx.bucket.delete_prefix(f"chunks/{uid}/c")


# --- the cached merged WAV ---------------------------------------------------------------


def _fetch(url: str) -> bytes:
    """GET a signed URL from the emulator (fake-gcs-server serves path-style object URLs
    for its public host name, and checks no signature)."""
    request = urllib.request.Request(url, headers={"Host": "storage.googleapis.com"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def _wav(data: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), wav.readframes(wav.getnframes())


def test_the_merged_wav_is_cached_signed_and_made_again_when_a_copy_adds_a_chunk(
    sealed_sctx: storage.StorageContext, signer: service_account.Credentials
) -> None:
    uid, cid = _ids("wav")
    a, b, c = pcm(5, 8000, 70), pcm(5, 8000, 71), pcm(5, 8000, 72)
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0], [a])
    write_legacy(sealed_sctx.bucket, uid, cid, ".enc", [T0 + 5], [b], secret=SECRET)
    [record] = storage.create_audio_files_from_chunks(uid, cid, context=sealed_sctx)

    made = storage.get_or_create_merged_audio(
        uid, cid, record["id"], signing_credentials=signer, context=sealed_sctx
    )
    assert made.created and made.path == f"merged/{uid}/{cid}/{record['id']}.wav"
    assert (made.sample_rate, made.duration) == (8000, 10.0)
    assert "X-Goog-Signature=" in made.url and made.url.startswith(
        sealed_sctx.settings.storage_emulator_host or ""
    )
    assert _wav(_fetch(made.url)) == (8000, a + b)
    cached = storage.get_or_create_merged_audio(
        uid,
        cid,
        record["id"],
        record["chunk_timestamps"],
        signing_credentials=signer,
        context=sealed_sctx,
    )
    assert not cached.created and cached.path == made.path
    generation = sealed_sctx.bucket.stored(made.path).generation

    # A merge copies a chunk in: the audio file grows, the cache is stale and made again.
    write_legacy(sealed_sctx.bucket, uid, "other", ".bin", [T0 + 12], [c])
    storage.copy_audio_chunks_for_merge(uid, ["other"], cid, context=sealed_sctx)
    [grown] = storage.create_audio_files_from_chunks(uid, cid, context=sealed_sctx)
    assert grown["id"] == record["id"] and grown["duration"] == 17.0
    remade = storage.get_or_create_merged_audio(
        uid, cid, grown["id"], signing_credentials=signer, context=sealed_sctx
    )
    assert remade.created and remade.duration == 17.0
    assert sealed_sctx.bucket.stored(made.path).generation != generation
    assert _wav(_fetch(remade.url)) == (8000, a + b + bytes(2 * 8000 * 2) + c)
    # Unfilled gaps are another WAV: made again too.
    unfilled = storage.get_or_create_merged_audio(
        uid, cid, grown["id"], fill_gaps=False, signing_credentials=signer, context=sealed_sctx
    )
    assert unfilled.created and _wav(_fetch(unfilled.url)) == (8000, a + b + c)

    # A writer that lost the race (the generation moved on) overwrites nothing.
    current = sealed_sctx.bucket.stored(made.path)
    assert not sealed_sctx.bucket.upload_file_if_generation(
        made.path, io.BytesIO(b"xx"), size=2, if_generation_match=generation,
        content_type="audio/wav", metadata={},
    )  # fmt: skip
    assert sealed_sctx.bucket.stored(made.path).generation == current.generation

    with pytest.raises(ConfigError, match="cannot sign"):
        storage.get_or_create_merged_audio(
            uid, cid, grown["id"], fill_gaps=False, context=sealed_sctx
        )
    with pytest.raises(InvalidInputError, match="expiration"):
        storage.get_or_create_merged_audio(
            uid,
            cid,
            grown["id"],
            expiration=timedelta(days=8),
            signing_credentials=signer,
            context=sealed_sctx,
        )
    with pytest.raises(InvalidInputError, match=f"has no audio file {'0' * 8}"):
        storage.get_or_create_merged_audio(
            uid, cid, "0" * 8, signing_credentials=signer, context=sealed_sctx
        )
    with pytest.raises(InvalidInputError, match="no chunk object at"):
        storage.get_or_create_merged_audio(
            uid, cid, "x", [T0 + 1000], signing_credentials=signer, context=sealed_sctx
        )
    with pytest.raises(InvalidInputError, match="audio_file_id"):
        storage.get_or_create_merged_audio(
            uid, cid, "../x", signing_credentials=signer, context=sealed_sctx
        )
    # Deleting the conversation takes the cache with it.
    # (two cached WAVs: the default one and the unfilled variant, each its own object)
    assert storage.delete_conversation_audio(uid, cid, context=sealed_sctx)["merged"] == 2
    assert conversations.conversation_prefixes(uid, cid)["merged"] == f"merged/{uid}/{cid}/"


def test_two_readers_racing_for_the_cache_make_it_once_and_both_get_it(
    sealed_sctx: storage.StorageContext, signer: service_account.Credentials
) -> None:
    uid, cid = _ids("wavrace")
    a = pcm(5, 16000, 80)
    write_legacy(sealed_sctx.bucket, uid, cid, ".bin", [T0], [a])

    def read() -> conversations.MergedAudioFile:
        return storage.get_or_create_merged_audio(
            uid,
            cid,
            "file-1",
            [T0],
            sample_rate=16000,
            signing_credentials=signer,
            context=sealed_sctx,
        )

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: read(), range(2)))
    assert sorted(r.created for r in results) == [False, True]  # the loser uses the winner's
    assert len(sealed_sctx.bucket.list(f"merged/{uid}/{cid}/")) == 1
    assert _wav(_fetch(results[0].url)) == (16000, a)


def test_a_source_without_objects_copies_nothing_and_says_so(
    sealed_sctx: storage.StorageContext, caplog: pytest.LogCaptureFixture
) -> None:
    uid, _ = _ids("copyempty")
    with caplog.at_level(logging.WARNING, logger="backend_hooks.conversations"):
        report = storage.copy_audio_chunks_for_merge(uid, ["gone"], "t", context=sealed_sctx)
    assert report == conversations.CopyReport(copied=(), already_there=())
    assert "source gone has no objects" in caplog.text
