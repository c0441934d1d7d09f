"""Backfill (workers/backfill.py) in the real GCS emulator, in-process: every legacy kind
at 8 and 16 kHz (written byte for byte by tests/legacy_objects.py, tests/legacy_opus.py) into new
objects, verified, read back by the reader, run again (nothing new), with ``delete``,
killed half-way and resumed, raced by a second run, and a conversation whose rate cannot
be told. The CLI and the Celery task are in test_backfill_cli.py."""

from __future__ import annotations

import math
import struct
import time
import uuid
from typing import Any

import pytest
import redis

from audiosync_dev.speech import speech_like
from backend_hooks import storage
from backend_hooks.adapters import redis_store
from backend_hooks.contract import naming
from backend_hooks.contract.settings import Settings
from backend_hooks.read.merge import MergedAudio
from tests.integration.backfilling import SECRET, fleet_object
from tests.legacy_objects import write_legacy
from tests.legacy_opus import write_legacy_opus
from workers import backfill
from workers.backfill_plan import SOURCES_KEY, parse_claims

pytestmark = pytest.mark.integration
NOW = time.time()
T0 = float(int(NOW)) - 3 * 3600  # older than the default --min-age (1 h)
NOW_US = int(NOW * 1_000_000)


def audio(seconds: float, rate: int, seed: int, odd: bool = False) -> bytes:
    return speech_like(seconds, rate, seed=seed) + (b"\x07" if odd else b"")


def paths(bf: backfill.Backfill, uid: str, cid: str = "") -> list[str]:
    prefix = naming.conversation_prefix(uid, cid) if cid else f"chunks/{uid}/"
    return sorted(o.name for o in bf.bucket.list(prefix))


def snr_db(want: bytes | bytearray, got: bytes | bytearray) -> float:
    a = struct.unpack(f"<{len(want) // 2}h", want)
    b = struct.unpack(f"<{len(got) // 2}h", got)
    noise = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    return 10 * math.log10(sum(x * x for x in a) / max(noise, 1))


def at(rate: int, seconds: float) -> int:
    return round(seconds * rate) * 2


def _user(bf: backfill.Backfill) -> str:
    """A user with two conversations of every legacy kind: ``c8`` (raw PCM at 8 kHz, a 5 s
    gap) and ``c16`` (raw PCM and both legacy Opus kinds at 16 kHz, a chunk stored twice),
    2 s chunks; the uid."""
    uid = f"bf-{uuid.uuid4().hex[:8]}"
    b, key = bf.bucket, SECRET.encode()
    r = 8000
    write_legacy(b, uid, "c8", ".bin", [T0], [audio(2, r, 1)])
    write_legacy(b, uid, "c8", ".enc", [T0 + 2], [audio(2, r, 2)], secret=key, records_per_chunk=3)
    write_legacy(b, uid, "c8", ".batch.bin", [T0 + 4, T0 + 6], [audio(2, r, 3), audio(2, r, 4)])
    write_legacy(
        b,
        uid,
        "c8",
        ".batch.enc",
        [T0 + 8, T0 + 10],
        [audio(2, r, 5, odd=True), audio(2, r, 6)],
        secret=key,
    )
    write_legacy(b, uid, "c8", ".bin", [T0 + 17], [audio(2, r, 7)])  # after a 5 s gap
    write_legacy(b, uid, "c8", ".bin", [T0 + 19], [audio(1.5, r, 8, odd=True)])
    r = 16000
    twice = audio(2, r, 12)
    write_legacy(b, uid, "c16", ".bin", [T0], [audio(2, r, 11)])
    write_legacy(b, uid, "c16", ".enc", [T0 + 2], [twice], secret=key, records_per_chunk=2)
    write_legacy(b, uid, "c16", ".bin", [T0 + 2], [twice])  # the same chunk stored twice
    write_legacy(b, uid, "c16", ".batch.bin", [T0 + 4, T0 + 6], [audio(2, r, 13), audio(2, r, 14)])
    write_legacy(
        b,
        uid,
        "c16",
        ".batch.enc",
        [T0 + 8, T0 + 10],
        [audio(2, r, 15), audio(2, r, 16)],
        secret=key,
    )
    o1, o2 = audio(2, r, 17), audio(1.5, r, 18, odd=True)
    write_legacy_opus(b, uid, "c16", ".opus", T0 + 12, o1)
    write_legacy_opus(b, uid, "c16", ".opus.enc", T0 + 14, o2, secret=key)
    fleet_object(b, uid, "c16", T0 + 20, audio(2, r, 19))
    return uid


def merged(backfill_reader: storage.StorageContext, uid: str, cid: str) -> MergedAudio:
    return storage.download_merged_audio(uid, cid, context=backfill_reader)


def test_a_user_backfilled_twice_then_deleted_plays_the_same(
    bf: backfill.Backfill, backfill_reader: storage.StorageContext
) -> None:
    uid = _user(bf)
    before = {cid: merged(backfill_reader, uid, cid) for cid in ("c8", "c16")}
    assert before["c8"].sample_rate == 8000 and before["c16"].sample_rate == 16000
    everything = paths(bf, uid)
    legacy = [p for p in everything if not naming.parse_object_name(p).is_new]
    [fleet] = sorted(set(everything) - set(legacy))

    first = backfill.backfill_user(bf, uid, now_us=NOW_US)
    assert first.conversations == 2 and not first.failed and not first.skipped, first.lines()
    # c8: one standard object (.bin, .batch.bin) and one enhanced (.enc, .batch.enc); c16
    # the same with the legacy Opus objects in them.
    assert len(first.written) == 4 and sorted(first.verified) == sorted(first.written)
    assert [p.endswith(".opus.enc") for p in sorted(first.written)].count(True) == 2
    assert first.deleted == [] and first.ops["put"] == 4 and first.ops["delete"] == 0
    assert first.objects_before == 14 and first.legacy_objects_before == len(legacy) == 13
    assert first.objects_after == 18 and first.legacy_objects_after == 13
    new = sorted(set(paths(bf, uid)) - set(everything))
    assert new == sorted(first.written)
    for path in new:  # the fleet's metadata, and the sources
        meta = bf.bucket.stored(path).metadata
        assert meta["audiosync-format"] == "1" and meta["audiosync-session"].startswith("bf-")
        assert SOURCES_KEY in meta
    # Both kept: the reader plays the audio once, byte for byte as before.
    for cid in ("c8", "c16"):
        after = merged(backfill_reader, uid, cid)
        assert after.pcm == before[cid].pcm and after.start_us == before[cid].start_us
        assert after.missing == ()
        merged_again = storage.download_audio_chunks_and_merge(uid, cid, context=backfill_reader)
        assert merged_again == after.pcm

    second = backfill.backfill_user(bf, uid, now_us=NOW_US)
    assert second.written == [] and second.already_stored == [] and not second.failed
    assert sorted(second.verified) == new  # checked again: their sources are still there
    assert second.ops["put"] == 0 and second.ops["delete"] == 0
    assert paths(bf, uid) == sorted([*everything, *new])

    third = backfill.backfill_user(bf, uid, now_us=NOW_US, delete=True)
    assert third.written == [] and not third.failed and not third.kept, third.lines()
    assert sorted(third.deleted) == legacy and third.ops["put"] == 0
    assert paths(bf, uid) == sorted([*new, fleet])  # the fleet's own object left alone
    assert third.objects_after == 5 and third.legacy_objects_after == 0
    assert third.bytes_after < third.legacy_bytes_before / 4  # Opus, not raw PCM
    for cid, rate in (("c8", 8000), ("c16", 16000)):
        after = merged(backfill_reader, uid, cid)
        old = before[cid]
        assert (after.sample_rate, after.start_us, after.sample_count) == (
            old.sample_rate,
            old.start_us,
            old.sample_count,
        )  # same length and timing, sample-exact
        assert after.missing == ()
        head = at(rate, 12)
        assert snr_db(old.pcm[:head], after.pcm[:head]) > 3  # raw PCM through Opus
    c8 = merged(backfill_reader, uid, "c8").pcm
    assert c8[at(8000, 12) : at(8000, 17)] == bytes(at(8000, 5))  # the gap, still silence
    c16 = merged(backfill_reader, uid, "c16").pcm
    assert c16[at(16000, 12) :] == before["c16"].pcm[at(16000, 12) :]  # Opus: repackaged

    fourth = backfill.backfill_user(bf, uid, now_us=NOW_US, delete=True)
    assert fourth.written == fourth.deleted == fourth.verified == [] and not fourth.failed
    assert dict(fourth.ops) == {"list": 1}


class Killed(Exception):
    pass


@pytest.mark.parametrize(("stage", "nth"), [("uploaded", 2), ("verified", 1), ("deleted", 3)])
def test_a_run_killed_between_upload_and_delete_resumes(
    stack: Any, backfill_reader: storage.StorageContext, stage: str, nth: int
) -> None:
    small = Settings.from_env(
        {
            **stack.env(),
            "ENCRYPTION_SECRET": SECRET,
            "AUDIOSYNC_OBJECT_SECONDS": "4",  # two 2 s sources an object: three objects
            "AUDIOSYNC_CHUNK_SECONDS": "2",
        },
        role="backfill",
    )
    bf = backfill.Backfill.from_settings(small)
    uid, cid = f"bf-kill-{uuid.uuid4().hex[:8]}", "c"
    sources = [
        write_legacy(bf.bucket, uid, cid, ".bin", [T0 + 2 * i], [audio(2, 16000, 30 + i)])
        for i in range(6)
    ]
    before = merged(backfill_reader, uid, cid)
    seen: dict[str, list[str]] = {"uploaded": [], "verified": [], "deleted": []}

    def checkpoint(at: str, path: str) -> None:
        seen[at].append(path)
        if at == stage and len(seen[at]) == nth:
            raise Killed(path)  # the process dies right here

    with pytest.raises(Killed):
        backfill.backfill_conversation(
            bf, uid, cid, now_us=NOW_US, delete=True, checkpoint=checkpoint
        )
    uploads = seen["uploaded"]
    left = paths(bf, uid, cid)
    assert left == sorted(set(uploads) | set(sources) - set(seen["deleted"]))
    # Nothing deleted unless verified: deletions come after every object is verified.
    assert not seen["deleted"] or len(seen["verified"]) == 3

    again = backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, delete=True)
    assert not again.failed and not again.kept, again.lines()
    prefix = naming.conversation_prefix(uid, cid)
    holds = {
        p: {prefix + f for f in parse_claims(bf.bucket.stored(p).metadata[SOURCES_KEY])}
        for p in uploads
    }
    resumed = {p for p, held in holds.items() if held & set(left)}  # sources left to delete
    assert set(again.verified) == resumed | set(again.written)
    assert len(again.written) == 3 - len(uploads)  # only the objects never uploaded
    assert not set(again.written) & set(uploads)
    assert sorted(again.deleted) == sorted(set(sources) - set(seen["deleted"]))
    assert paths(bf, uid, cid) == sorted([*uploads, *again.written])
    after = merged(backfill_reader, uid, cid)
    assert (after.start_us, after.sample_count, after.missing) == (
        before.start_us,
        before.sample_count,
        (),
    )
    assert backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, delete=True).ops == {
        "list": 1
    }


def test_two_runs_at_once_leave_one_object_after_delete(
    bf: backfill.Backfill, backfill_reader: storage.StorageContext
) -> None:
    uid, cid = f"bf-race-{uuid.uuid4().hex[:8]}", "c"
    key = SECRET.encode()
    for i in range(2):
        write_legacy(
            bf.bucket, uid, cid, ".enc", [T0 + 2 * i], [audio(2, 16000, 40 + i)], secret=key
        )
        write_legacy(bf.bucket, uid, cid, ".bin", [T0 + 4 + 2 * i], [audio(2, 16000, 42 + i)])
    before = merged(backfill_reader, uid, cid)
    listing = bf.bucket.list(naming.conversation_prefix(uid, cid))  # both runs list first
    one = backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, listing=listing)
    two = backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, listing=listing)
    assert len(one.written) == 2 and not one.failed
    # Standard bytes are the same (a 412 checked equal); sealed ones differ by their
    # nonces, so the second run's enhanced object is a copy of the same session.
    [standard] = [p for p in one.written if p.endswith(".opus")]
    assert two.already_stored == [standard]
    [copy] = two.written
    assert copy.endswith(".opus.enc") and copy not in one.written
    assert merged(backfill_reader, uid, cid).pcm == before.pcm  # played once

    done = backfill.backfill_conversation(bf, uid, cid, now_us=NOW_US, delete=True)
    assert not done.failed and done.written == []
    left = paths(bf, uid, cid)
    assert len(left) == 2 and all(naming.parse_object_name(p).is_new for p in left)
    assert len(done.deleted) == 4 + 1  # the sources and one of the two enhanced copies
    after = merged(backfill_reader, uid, cid)
    assert (after.start_us, after.sample_count) == (before.start_us, before.sample_count)


def test_an_untellable_rate_is_skipped_young_objects_are_left_and_a_bad_object_keeps_its_sources(
    bf: backfill.Backfill, backfill_reader: storage.StorageContext
) -> None:
    uid = f"bf-skip-{uuid.uuid4().hex[:8]}"
    lone = write_legacy(bf.bucket, uid, "lone", ".bin", [T0], [audio(2, 16000, 50)])
    report = backfill.backfill_user(bf, uid, now_us=NOW_US, delete=True)
    [skip] = report.skipped
    assert skip.path == naming.conversation_prefix(uid, "lone")
    assert "cannot tell the sample rate" in skip.reason and "--sample-rate" in skip.reason
    assert report.written == [] and paths(bf, uid) == [lone]
    told = backfill.backfill_user(bf, uid, now_us=NOW_US, sample_rate=16000)
    assert len(told.written) == 1 and not told.skipped

    # A live conversation: its young object is left alone, the old one backfilled.
    old = write_legacy_opus(bf.bucket, uid, "live", ".opus", T0, audio(1, 16000, 51))
    young = write_legacy_opus(bf.bucket, uid, "live", ".opus", NOW - 60, audio(1, 16000, 52))
    live = backfill.backfill_conversation(bf, uid, "live", now_us=NOW_US, delete=True)
    assert [s.path for s in live.skipped] == [young] and "younger than --min-age" in (
        live.skipped[0].reason
    )
    assert live.deleted == [old] and len(live.written) == 1

    # Deleting every old raw object would leave the young one alone, unable to tell its
    # rate: they are verified and kept until the young one is backfilled too.
    tail = [
        write_legacy(bf.bucket, uid, "tail", ".bin", [T0 + 2 * i], [audio(2, 16000, 53 + i)])
        for i in range(3)
    ]
    late = write_legacy(bf.bucket, uid, "tail", ".bin", [NOW - 60], [audio(2, 16000, 56)])
    kept = backfill.backfill_conversation(bf, uid, "tail", now_us=NOW_US, delete=True)
    assert len(kept.verified) == 1 and kept.deleted == [] and not kept.failed
    assert sorted(k.path for k in kept.kept) == tail
    assert "unable to tell their sample rate" in kept.kept[0].reason
    assert [s.path for s in kept.skipped] == [late]
    later = backfill.backfill_conversation(
        bf, uid, "tail", now_us=NOW_US + 3600 * 1_000_000, delete=True
    )
    assert sorted(later.deleted) == sorted([*tail, late]) and not later.kept

    # An object of an earlier run that no longer reads: its sources are never deleted.
    [new] = told.written
    data = bf.bucket.download(new)
    meta = bf.bucket.stored(new).metadata
    bf.bucket.delete(new)
    bf.bucket.create_only(new, data[:-40], content_type="audio/ogg", metadata=meta)
    bad = backfill.backfill_user(bf, uid, ["lone"], now_us=NOW_US, sample_rate=16000, delete=True)
    [failed] = bad.failed
    assert failed.path == new and "sources are kept" in failed.reason
    assert bad.deleted == [] and lone in paths(bf, uid)

    odd = "chunks/" + uid + "/not an id/1700000000.000.bin"  # a prefix no id of ours makes
    bf.bucket.create_only(odd, bytes(4), content_type="x", metadata={})
    named = backfill.backfill_user(bf, uid, now_us=NOW_US, sample_rate=16000)
    assert [s.path for s in named.skipped if "conversation_id" in s.reason] == [
        f"chunks/{uid}/not an id/"
    ]
    bf.bucket.delete(odd)

    dry = backfill.backfill_user(bf, uid, ["lone"], now_us=NOW_US, sample_rate=16000, dry_run=True)
    assert dry.written == [] and dry.deleted == [] and dry.ops["put"] == 0


def test_nothing_is_left_written_into_a_deleted_conversation(
    bf: backfill.Backfill, stack: Any
) -> None:
    """``delete_conversation_audio`` marks the conversation in Redis first: a backfill
    uploads nothing into a marked one, and deletes what it uploaded while it was marked."""
    client = redis.Redis.from_url(stack.redis_url)
    uid = f"bf-del-{uuid.uuid4().hex[:8]}"
    for cid in ("before", "during"):
        for i in range(2):
            write_legacy(bf.bucket, uid, cid, ".bin", [T0 + 2 * i], [audio(2, 16000, 60 + i)])
    redis_store.mark_conversation_deleted(client, uid, "before", ttl_seconds=60)
    marked = backfill.backfill_conversation(bf, uid, "before", now_us=NOW_US, delete=True)
    assert marked.written == [] and marked.ops["put"] == 0
    assert "was deleted" in marked.skipped[0].reason

    def delete_now(stage: str, path: str) -> None:
        if stage == "uploaded":  # the user deletes the conversation during the upload
            redis_store.mark_conversation_deleted(client, uid, "during", ttl_seconds=60)

    during = backfill.backfill_conversation(
        bf, uid, "during", now_us=NOW_US, delete=True, checkpoint=delete_now
    )
    [written] = during.written
    assert during.deleted == [written] and written not in paths(bf, uid, "during")
    assert len(paths(bf, uid, "during")) == 2  # the sources: the user's delete takes them
