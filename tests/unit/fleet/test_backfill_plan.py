"""The pure backfill policy (workers/backfill_plan.py): sources, chunks, groups, identity,
earlier runs, verification and the rate evidence a deletion must leave."""

from __future__ import annotations

import pytest

from backend_hooks.contract import legacy_pcm, naming
from backend_hooks.contract.container import ChunkInfo, Segment
from backend_hooks.contract.errors import FormatError
from workers import backfill_plan as plan

T0 = 1_700_000_000_000_000  # µs
OPTIONS = plan.Options(object_seconds=60, max_bytes=1 << 20, piece_seconds=5)


def name(filename: str, cid: str = "c") -> naming.ObjectName:
    return naming.parse_object_name(f"chunks/u/{cid}/{filename}")


def raw_source(filename: str, seconds: float, rate: int = 16000, digest: str = "d") -> plan.Source:
    n = name(filename)
    pcm = bytes(2 * round(seconds * rate))
    return plan.Source(n, len(pcm), digest, tuple(plan.raw_chunks(n, [pcm], rate, 5)))


def test_only_legacy_objects_old_enough_are_sources() -> None:
    names = [
        name("1700000000.000.bin"),
        name("1700000000.000-1700003000.000.batch.bin"),  # newest chunk 3000 s in
        name("1700000000.000-1700000060.000_0123456789abcdef.opus"),  # a new object
    ]
    now = T0 + 3600 * 1_000_000
    chosen, skipped = plan.select_sources(names, now_us=now, min_age_seconds=3600)
    assert [n.filename for n in chosen] == ["1700000000.000.bin"]
    [young] = skipped
    assert young.path.endswith(".batch.bin") and "younger than --min-age (600 s" in young.reason
    chosen, skipped = plan.select_sources(names, now_us=now, min_age_seconds=0)
    assert len(chosen) == 2 and not skipped


def test_a_batch_enc_record_is_a_chunk_placed_back_to_back_odd_bytes_dropped() -> None:
    records = [b"\1" * (2 * 8000 + 1), b"\2" * (2 * 4000)]  # 1 s (+1 odd byte), 0.5 s at 8k
    for last, at in (("0.990", 1_000_000), ("1.000", 1_000_000), ("5.000", 5_000_000)):
        # the last record follows the one before, or starts at the name's last start when
        # that is later (a pause), as the reader places it (legacy_pcm.placed_runs)
        n = name(f"1700000000.000-170000000{last}.batch.enc")
        chunks = plan.raw_chunks(n, records, 8000, 5)
        assert [(c.start_us - T0, c.samples) for c in chunks] == [(0, 8000), (at, 4000)]
        assert chunks[0].pcm == b"\1" * 16000 and chunks[1].pcm == b"\2" * 8000


def test_an_enc_split_across_records_is_one_chunk_and_a_long_one_is_cut_in_pieces() -> None:
    n = name("1700000000.000.enc")
    [chunk] = plan.raw_chunks(n, [b"\0" * 3, b"\0" * 4], 8000, 5)  # 7 bytes: 3 samples
    assert chunk.samples == 3 and chunk.pcm == bytes(6)
    batch = name("1700000000.000-1700000005.000.batch.bin")
    pieces = plan.raw_chunks(batch, [bytes(2 * 16000 * 12)], 16000, 5)  # 12 s
    assert [(c.start_us - T0, c.samples) for c in pieces] == [
        (0, 80000),
        (5_000_000, 80000),
        (10_000_000, 32000),
    ]
    assert plan.raw_chunks(batch, [b""], 16000, 5) == []


def test_a_legacy_opus_chunk_keeps_its_packets_and_drops_a_half_sample() -> None:
    [c] = plan.legacy_opus_chunk(name("1700000000.000.opus"), [b"a", b"b"], 641)
    assert (c.start_us, c.sample_rate, c.samples, c.packets, c.pcm) == (
        T0,
        16000,
        320,
        (b"a", b"b"),
        None,
    )
    assert plan.legacy_opus_chunk(name("1700000000.000.opus"), [], 1) == []


def test_groups_are_one_level_and_rate_up_to_the_bounds() -> None:
    sources = [raw_source(f"{1700000000 + 5 * i}.000.bin", 5) for i in range(14)]
    sealed = [raw_source(f"{1700000000 + 5 * i}.000.enc", 5) for i in range(2)]
    groups = plan.plan_groups(sorted([*sources, *sealed], key=lambda s: s.start_us), OPTIONS)
    assert [(g.sealed, len(g.sources)) for g in groups] == [(False, 12), (True, 2), (False, 2)]
    assert groups[0].samples == 60 * 16000
    # A gap over MAX_GAP_SECONDS closes the group; so do the byte and source bounds.
    far = raw_source(f"{1700000000 + 5 + 31}.000.bin", 1)
    assert len(plan.plan_groups([sources[0], far], OPTIONS)) == 2
    near = raw_source(f"{1700000000 + 5 + 29}.000.bin", 1)
    assert len(plan.plan_groups([sources[0], near], OPTIONS)) == 1
    small = plan.Options(object_seconds=60, max_bytes=25_000, piece_seconds=5)  # ~20 kB each
    assert [len(g.sources) for g in plan.plan_groups(sources[:3], small)] == [1, 1, 1]
    tiny = [raw_source(f"{1700000000 + i}.000.bin", 0.1) for i in range(plan.MAX_SOURCES + 1)]
    assert [len(g.sources) for g in plan.plan_groups(tiny, OPTIONS)] == [plan.MAX_SOURCES, 1]
    eight = raw_source("1700000100.000.bin", 5, rate=8000)
    assert len(plan.plan_groups([sources[0], eight], OPTIONS)) == 2  # another rate
    with pytest.raises(ValueError, match="without audio"):
        plan.Grouper(OPTIONS).add(plan.Source(name("1.000.bin"), 0, "d", ()))


def test_a_group_is_named_by_its_sources_and_its_metadata_names_them() -> None:
    a, b = raw_source("1700000000.000.bin", 5), raw_source("1700000005.000.bin", 5)
    [group] = plan.plan_groups([a, b], OPTIONS)
    session = group.session_id
    assert session.startswith("bf-") and len(session) == 35
    assert [(i.session_id, i.seq, i.start_us - T0) for i in group.infos()] == [
        (session, 0, 0),
        (session, 1, 5_000_000),
    ]
    meta = group.metadata()
    assert meta["audiosync-samples"] == "160000" and meta["audiosync-seq"] == "0-1"
    assert meta["audiosync-session"] == session and meta["audiosync-rate"] == "16000"
    assert plan.parse_claims(meta[plan.SOURCES_KEY]) == {
        "1700000000.000.bin": 160000,
        "1700000005.000.bin": 160000,
    }
    # Another content digest (or size, or name) is another session: a changed source.
    other = raw_source("1700000005.000.bin", 5, digest="e")
    assert plan.plan_groups([a, other], OPTIONS)[0].session_id != session
    assert plan.plan_groups([a, b], OPTIONS)[0].session_id == session  # deterministic
    with pytest.raises(FormatError, match="not filename:size"):
        plan.parse_claims("1700000000.000.bin")


def test_earlier_objects_claim_present_sources_and_copies_are_found() -> None:
    bin_ = name("1700000000.000.bin")
    new1 = name("1700000000.000-1700000005.000_0000000000000001.opus")
    new2 = name("1700000000.000-1700000005.000_0000000000000002.opus")
    meta = {"audiosync-session": "bf-x", plan.SOURCES_KEY: "1700000000.000.bin:10,gone.bin:4"}
    objects = [
        (bin_, 10, {}),
        (new1, 99, meta),
        (new2, 98, meta),
        (name("1700000000.000-1700000005.000_0000000000000003.opus"), 9, {}),  # the fleet's
        (name("1700000000.000-1700000005.000_0000000000000004.opus"), 9, {plan.SOURCES_KEY: "x"}),
    ]
    earlier, bad = plan.earlier_objects(objects)
    assert [(e.name.path, e.present, e.duplicate_of) for e in earlier] == [
        (new1.path, (bin_.path,), None),
        (new2.path, (bin_.path,), new1.path),
    ]
    assert [b.reason[:30] for b in bad] == ["unreadable backfill metadata, "]
    assert plan.claimed_paths(earlier) == {bin_.path}
    resized = [(bin_, 11, {}), (new1, 99, meta)]  # not the source it claimed
    assert plan.earlier_objects(resized)[0][0].present == ()


def _segments(infos: list[ChunkInfo], pcm: bytes | None = None) -> list[Segment]:
    return [
        Segment(i.start_us, i.sample_rate, pcm or bytes(2 * i.sample_count), (i.session_id, i.seq))
        for i in infos
    ]


def test_verification_wants_every_chunk_exactly() -> None:
    [group] = plan.plan_groups(
        [raw_source("1700000000.000.bin", 5), raw_source("1700000005.000.bin", 2)], OPTIONS
    )
    infos = group.infos()
    assert plan.verify_segments(infos, _segments(infos), where="o") == []
    short = _segments(infos)
    short[1] = Segment(short[1].start_us, 16000, bytes(2 * 31999), short[1].key)
    [problem] = plan.verify_segments(infos, short, where="o")
    assert "chunk 1 decodes as" in problem and "31999" in problem
    assert (
        "decodes to 1 chunks, 2 expected"
        in plan.verify_segments(infos, _segments(infos)[:1], where="o")[0]
    )
    moved = _segments(infos)
    moved[0] = Segment(moved[0].start_us + 1000, 16000, moved[0].pcm, moved[0].key)
    assert plan.verify_segments(infos, moved, where="o")
    assert plan.verify_segments(infos, _segments(infos), where="o", exact_pcm={0: b"\1\1"})


def test_an_earlier_object_must_hold_each_remaining_source() -> None:
    a, b = raw_source("1700000000.000.bin", 5), raw_source("1700000005.000.bin", 5)
    [group] = plan.plan_groups([a, b], OPTIONS)
    segments = _segments(group.infos())
    sid = group.session_id
    assert plan.verify_holds(segments, sid, [a, b], where="o") == []
    assert plan.verify_holds(segments[:1], sid, [a], where="o") == []
    [missing] = plan.verify_holds(segments[:1], sid, [a, b], where="o")
    assert "holds no chunk of 80000 samples" in missing and "1700000005.000.bin" in missing
    assert "another session" in plan.verify_holds(segments, "bf-other", [a], where="o")[0]
    decoded = {(a.name.path, a.start_us): b"\1\1"}
    assert (
        "other PCM" in plan.verify_holds(segments, sid, [a], where="o", legacy_decoded=decoded)[0]
    )


def _raw(filename: str, nbytes: int) -> legacy_pcm.RawObject:
    return legacy_pcm.RawObject(name(filename), (nbytes,))


def test_a_deletion_must_leave_the_rest_able_to_tell_the_rate() -> None:
    objs = [_raw(f"{1700000000 + 5 * i}.000.bin", 160000) for i in range(3)]
    paths = [o.name.path for o in objs]
    assert plan.rate_still_told(objs, set(paths), 16000)  # nothing left
    assert plan.rate_still_told(objs, {paths[0]}, 16000)  # two left: still evidence
    assert not plan.rate_still_told(objs, set(paths[:2]), 16000)  # one left: none
    lone = objs[:1]  # no evidence before either: the caller gave the rate
    assert plan.rate_still_told([*lone, _raw("1700000100.000.bin", 1)], set(), 16000)
