"""workers.planner: the pure flush policy, with an injected ``now``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract import naming
from backend_hooks.contract.entries import ENHANCED, STANDARD, ChunkEntry, EndEntry, Entry
from workers.planner import (
    FlushPlan,
    ObjectPlan,
    PlanError,
    Policy,
    RecordedObject,
    conflicting_repeats,
    plan_flush,
)

T = 1_700_000_000.0  # Redis time of the first append, Unix seconds
T_US = int(T * 1_000_000)
POLICY = Policy(object_seconds=60, max_age_seconds=60, max_bytes=1_048_576)


@dataclass
class Stream:
    """Builds a session's stream entries in order; ids are ``<append ms>-<position>``."""

    entries: list[Entry] = field(default_factory=list)
    next_seq: int = 0

    def _id(self, at: float) -> bytes:
        return f"{round(at * 1000)}-{len(self.entries)}".encode()

    def chunk(
        self,
        count: int = 1,
        *,
        cid: str = "A",
        uid: str = "uid-1",
        level: str = STANDARD,
        rate: int = 16000,
        seconds: float = 5.0,
        size: int = 100,
        enq: float = T,
        enq_step: float = 0.0,
    ) -> Stream:
        for i in range(count):
            seq = self.next_seq
            at = enq + i * enq_step
            self.entries.append(
                ChunkEntry(
                    entry_id=self._id(at),
                    uid=uid,
                    cid=cid,
                    enq_us=round(at * 1_000_000),
                    level=level,
                    rate=rate,
                    seq=seq,
                    start_us=T_US + seq * 5_000_000,
                    samples=round(seconds * rate),
                    data=bytes([seq % 256]) * size,
                )
            )
            self.next_seq += 1
        return self

    def end(self, *, cid: str = "A", uid: str = "uid-1", enq: float = T) -> Stream:
        self.entries.append(
            EndEntry(entry_id=self._id(enq), uid=uid, cid=cid, enq_us=round(enq * 1e6))
        )
        return self

    def repeat(self, index: int) -> Stream:
        """Append entry ``index`` again, as a retried append would (a new stream id)."""
        entry = self.entries[index]
        assert isinstance(entry, ChunkEntry)
        self.entries.append(replace(entry, entry_id=self._id(entry.redis_ms / 1000)))
        return self


def indexes(plan: FlushPlan, entries: list[Entry]) -> list[list[int]]:
    """Each object's entries as positions in the stream."""
    position = {e.entry_id: i for i, e in enumerate(entries)}
    return [[position[e.entry_id] for e in obj.entries] for obj in plan.objects]


@dataclass(frozen=True)
class Case:
    stream: Callable[[], Stream]
    now: float
    objects: list[list[int]]
    deleted: int  # length of the deleted prefix
    next_due: float | None
    policy: Policy = POLICY
    complete: bool = True


def r(start: int, stop: int) -> list[int]:
    return list(range(start, stop))


CASES = [
    pytest.param(
        Case(lambda: Stream().chunk(3, enq_step=5), T + 10, [], 0, T + 60),
        id="young-partial-tail-waits-until-oldest-plus-max-age",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(3, enq_step=5), T + 59.999, [], 0, T + 60),
        id="tail-just-younger-than-max-age",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(3, enq_step=5), T + 60, [r(0, 3)], 3, None),
        id="aged-tail-written",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(12), T + 1, [r(0, 12)], 12, None),
        id="tail-full-by-audio-written-young",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(30), T + 1, [r(0, 12), r(12, 24)], 24, T + 60),
        id="30-chunks-at-one-instant-objects-of-12-tail-kept",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(30), T + 60, [r(0, 12), r(12, 24), r(24, 30)], 30, None),
        id="30-chunks-at-one-instant-aged-tail-written",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(13, rate=8000), T + 1, [r(0, 12)], 12, T + 60),
        id="full-by-audio-at-8khz",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(7, seconds=9.0), T + 1, [r(0, 6)], 6, T + 60),
        id="object-never-over-60s-of-audio",
    ),
    pytest.param(
        Case(
            lambda: Stream().chunk(5),
            T + 1,
            [[0, 1], [2, 3]],
            4,
            T + 60,
            policy=Policy(object_seconds=60, max_age_seconds=60, max_bytes=250),
        ),
        id="max-bytes-cut",
    ),
    pytest.param(
        Case(
            lambda: Stream().chunk(4),
            T + 1,
            [[0, 1], [2, 3]],
            4,
            None,
            policy=Policy(object_seconds=60, max_age_seconds=60, max_bytes=200),
        ),
        id="max-bytes-exactly-reached-is-full",
    ),
    pytest.param(
        Case(
            lambda: Stream().chunk(1, size=500).chunk(1),
            T + 1,
            [[0]],
            1,
            T + 60,
            policy=Policy(object_seconds=60, max_age_seconds=60, max_bytes=200),
        ),
        id="one-chunk-over-max-bytes-alone",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).end().chunk(2, cid="B"), T + 1, [[0, 1]], 3, T + 60),
        id="conversation-switch-with-end-marker",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).chunk(2, cid="B"), T + 1, [[0, 1]], 2, T + 60),
        id="conversation-switch-without-end-marker",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).end().chunk(2, cid="B"), T + 60, [[0, 1], [3, 4]], 5, None),
        id="conversation-switch-all-aged",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).end(), T + 1, [[0, 1]], 3, None),
        id="end-marker-closes-young-group",
    ),
    pytest.param(
        Case(lambda: Stream().end(), T + 1, [], 1, None),
        id="end-marker-alone-deleted",
    ),
    pytest.param(
        Case(lambda: Stream().end().end(cid="B"), T + 1, [], 2, None),
        id="only-end-markers",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2, cid="B").end(cid="A"), T + 1, [], 0, T + 60),
        id="end-marker-of-another-conversation-does-not-close",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).chunk(2, level=ENHANCED), T + 1, [[0, 1]], 2, T + 60),
        id="level-switch-closes",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).chunk(2, rate=8000), T + 1, [[0, 1]], 2, T + 60),
        id="rate-switch-closes",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).chunk(2, uid="uid-2"), T + 1, [[0, 1]], 2, T + 60),
        id="uid-switch-closes",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(1).chunk(2, enq=T + 30), T + 40, [], 0, T + 60),
        id="next-due-from-oldest-enqueue",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(12).chunk(1, enq=T + 30), T + 40, [r(0, 12)], 12, T + 90),
        id="next-due-from-tail-oldest-not-stream-oldest",
    ),
    pytest.param(
        Case(lambda: Stream(), T + 1, [], 0, None),
        id="empty-stream",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(3), T + 1, [r(0, 3)], 3, T + 1, complete=False),
        id="read-limit-cuts-a-young-tail-look-again-now",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(3), T + 600, [r(0, 3)], 3, T + 600, complete=False),
        id="read-limit-cuts-an-aged-tail",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(14), T + 1, [r(0, 12), r(12, 14)], 14, T + 1, complete=False),
        id="read-limit-closed-groups-and-the-cut-tail-written",
    ),
    pytest.param(
        Case(
            lambda: Stream().chunk(2000, seconds=0.02),
            T + 1,
            [r(0, 2000)],
            2000,
            T + 1,
            complete=False,
        ),
        id="read-limit-full-of-one-unfinished-group-is-written-not-a-livelock",
    ),
    pytest.param(
        Case(
            lambda: Stream().chunk(12 * 10),
            T + 1,
            [r(12 * i, 12 * (i + 1)) for i in range(8)],
            96,
            T + 1,
        ),
        id="at-most-8-objects-per-flush-then-due-at-once",
    ),
    pytest.param(
        Case(
            lambda: Stream().chunk(3).repeat(1).repeat(2).chunk(1), T + 60, [[0, 1, 2, 5]], 6, None
        ),
        id="repeated-seq-dropped-and-deleted-with-its-object",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(2).repeat(0), T + 1, [], 0, T + 60),
        id="repeat-in-a-young-tail-waits-with-it",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(12), T + 1, [r(0, 12)], 12, T + 1, complete=False),
        id="incomplete-full-tail-written",
    ),
]


def in_stream_order(ids: list[bytes], entries: list[Entry]) -> list[bytes]:
    position = {e.entry_id: i for i, e in enumerate(entries)}
    return sorted(ids, key=position.__getitem__)


@pytest.mark.parametrize("case", CASES)
def test_plan_flush(case: Case) -> None:
    entries = case.stream().entries
    plan = plan_flush(entries, case.now, case.policy, complete=case.complete)
    assert indexes(plan, entries) == case.objects
    assert len(set(plan.delete_ids)) == len(plan.delete_ids)  # nothing deleted twice
    assert in_stream_order(plan.delete_ids, entries) == [
        e.entry_id for e in entries[: case.deleted]
    ]
    assert plan.next_due == case.next_due


def test_young_tail_is_due_when_it_ages() -> None:
    entries = Stream().chunk(2).entries
    assert plan_flush(entries, T + 5, POLICY).next_due == T + 60
    assert plan_flush([], T + 5, POLICY).next_due is None


def test_end_marker_is_deleted_with_its_object() -> None:
    entries = Stream().chunk(2).end().chunk(1, cid="B").entries
    plan = plan_flush(entries, T + 1, POLICY)
    assert isinstance(entries[2], EndEntry)
    assert plan.drop_ids == []  # recorded: with the last object written (A's)
    assert plan.objects[0].also_delete == [entries[2].entry_id]
    assert all(isinstance(e, ChunkEntry) for obj in plan.objects for e in obj.entries)


def test_each_object_deletes_a_contiguous_run_so_objects_commit_one_by_one() -> None:
    stream = Stream().end(cid="Z").chunk(12).end().chunk(2, cid="B").repeat(14).end(cid="B")
    entries = stream.chunk(1, cid="C").entries
    plan = plan_flush(entries, T + 1, POLICY)
    assert indexes(plan, entries) == [r(1, 13), [14, 15]]
    ids = [e.entry_id for e in entries]
    assert in_stream_order(plan.objects[0].delete_ids, entries) == ids[0:13]  # leading end
    # B's: the end before it, its chunks, then the repeat (of its chunk) and B's end
    assert in_stream_order(plan.objects[1].delete_ids, entries) == ids[13:18]
    assert plan.drop_ids == []
    assert plan.repeats == 1


def test_only_end_markers_and_repeats_need_no_object() -> None:
    entries = Stream().end().end(cid="B").entries
    plan = plan_flush(entries, T + 1, POLICY)
    assert plan.objects == [] and plan.drop_ids == [e.entry_id for e in entries]


def test_conflicting_repeats_are_found_identical_ones_are_not() -> None:
    stream = Stream().chunk(3).repeat(1)
    first = stream.entries[2]
    assert isinstance(first, ChunkEntry)
    stream.entries.append(replace(first, entry_id=b"9-9", data=b"other bytes"))
    [bad] = conflicting_repeats(stream.entries)
    assert bad.entry_id == b"9-9" and "seq 2 repeats entry" in bad.reason
    assert conflicting_repeats(Stream().chunk(3).repeat(0).entries) == []


def test_recorded_object_round_trip_and_bad_records() -> None:
    entries = Stream().end(cid="B").chunk(2).entries
    [obj] = plan_flush(entries, T + 60, POLICY).objects
    record = obj.record(obj.name(obj.data()))
    assert record.also == (entries[0].entry_id,)
    assert RecordedObject.loads(record.dumps()) == record
    assert RecordedObject.loads(record.dumps().encode()) == record
    assert in_stream_order(record.delete_ids, entries) == [e.entry_id for e in entries]
    for text in [
        "",
        "[]",
        '{"name": "x"}',
        '{"name": "x", "ids": []}',
        '{"name": 1, "ids": ["1-0"]}',
    ]:
        with pytest.raises(PlanError):
            RecordedObject.loads(text)


# --- pinned cut ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "first_now", "more", "second_now"),
    [
        pytest.param(
            lambda s: s.chunk(5, enq_step=5),
            T + 60,
            lambda s: s.chunk(5, enq=T + 61),
            T + 65,
            id="aged-tail-then-more-chunks",
        ),
        pytest.param(
            lambda s: s.chunk(30),
            T + 60,
            lambda s: s.chunk(10, enq=T + 61),
            T + 62,
            id="three-objects-then-more-chunks",
        ),
        pytest.param(
            lambda s: s.chunk(3, enq_step=1),
            T + 61,
            lambda s: s.chunk(12, enq=T + 62),
            T + 63,
            id="more-chunks-would-fill-the-tail",
        ),
    ],
)
def test_pinned_last_id_reproduces_an_earlier_cut(
    first: Callable[[Stream], Stream],
    first_now: float,
    more: Callable[[Stream], Stream],
    second_now: float,
) -> None:
    stream = first(Stream())
    earlier = plan_flush(list(stream.entries), first_now, POLICY)
    assert earlier.objects
    pinned = earlier.objects[-1].entries[-1].entry_id  # what the flush writes as its intent

    later_entries = more(stream).entries
    later = plan_flush(later_entries, second_now, POLICY, pinned_last_id=pinned)
    assert len(later.objects) >= len(earlier.objects)
    for before, after in zip(earlier.objects, later.objects, strict=False):
        assert after.entries == before.entries
        assert after.data() == before.data()
        assert after.name(after.data()) == before.name(before.data())
        assert after.metadata("sess") == before.metadata("sess")
    assert later.delete_ids[: len(earlier.delete_ids)] == earlier.delete_ids

    # Control: without the pin the later plan cuts elsewhere (the test would catch a pin
    # that has no effect).
    unpinned = plan_flush(later_entries, second_now, POLICY)
    cuts = [[e.entry_id for e in o.entries] for o in unpinned.objects]
    assert cuts[: len(earlier.objects)] != [
        [e.entry_id for e in o.entries] for o in earlier.objects
    ]


def test_unknown_pinned_id_changes_nothing() -> None:
    entries = Stream().chunk(30).entries
    assert plan_flush(entries, T + 1, POLICY, pinned_last_id=b"999-0") == plan_flush(
        entries, T + 1, POLICY
    )


# --- ObjectPlan ----------------------------------------------------------------------------


def test_object_plan_name_and_metadata() -> None:
    entries = Stream().chunk(3, rate=8000, seconds=5.0).chunk(1, rate=8000, seconds=2.5).entries
    [obj] = plan_flush(entries, T + 60, POLICY).objects
    data = obj.data()
    assert data == b"".join(e.data for e in obj.entries) and obj.entries == entries
    assert obj.samples == 3 * 40000 + 20000
    assert obj.size == 400
    assert obj.start_us == T_US
    assert obj.end_us == T_US + 15_000_000 + 2_500_000
    assert not obj.sealed
    assert obj.key == ("uid-1", "A", STANDARD, 8000)
    assert obj.name(data) == naming.object_name(
        "uid-1", "A", start_us=T_US, end_us=T_US + 17_500_000, sealed=False, data=data
    )
    assert obj.name(data) == obj.name(obj.data())  # deterministic
    assert obj.name(data) != obj.name(data + b"x")  # content-addressed
    assert obj.metadata("sess-9") == {
        "audiosync-format": "1",
        "audiosync-rate": "8000",
        "audiosync-samples": "140000",
        "audiosync-chunks": "4",
        "audiosync-session": "sess-9",
        "audiosync-seq": "0-3",
    }


def test_enhanced_objects_are_sealed_names() -> None:
    entries = Stream().chunk(2, level=ENHANCED).entries
    [obj] = plan_flush(entries, T + 60, POLICY).objects
    assert obj.sealed
    assert obj.name(obj.data()).endswith(".opus.enc")
    assert naming.parse_object_name(obj.name(obj.data())).start_us == T_US


def test_object_plan_oldest_append_is_the_smallest_stream_id_time() -> None:
    entries = Stream().chunk(1, enq=T + 9).chunk(1, enq=T + 3).entries
    obj = ObjectPlan(entries=[e for e in entries if isinstance(e, ChunkEntry)])
    assert obj.oldest_redis_ms == round((T + 3) * 1000)


# --- invariants over random streams ---------------------------------------------------------

entry_specs = st.lists(
    st.one_of(
        st.tuples(
            st.just("chunk"),
            st.sampled_from(["A", "B"]),
            st.sampled_from([STANDARD, ENHANCED]),
            st.sampled_from([8000, 16000]),
            st.sampled_from([0.5, 2.0, 5.0, 20.0]),
            st.integers(min_value=1, max_value=400),
        ),
        st.tuples(st.just("end"), st.sampled_from(["A", "B"])),
        st.tuples(st.just("repeat"), st.integers(min_value=0, max_value=39)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    specs=entry_specs,
    enq_gaps=st.lists(st.floats(min_value=0, max_value=20), min_size=40, max_size=40),
    now_offset=st.floats(min_value=0, max_value=1000),
    complete=st.booleans(),
    max_bytes=st.integers(min_value=100, max_value=2000),
    max_objects=st.integers(min_value=1, max_value=4),
)
def test_plan_invariants(
    specs: list[tuple[object, ...]],
    enq_gaps: list[float],
    now_offset: float,
    complete: bool,
    max_bytes: int,
    max_objects: int,
) -> None:
    policy = Policy(
        object_seconds=60, max_age_seconds=60, max_bytes=max_bytes, max_objects=max_objects
    )
    stream = Stream()
    enq = T
    for spec, gap in zip(specs, enq_gaps, strict=False):
        enq += gap
        if spec[0] == "chunk":
            _, cid, level, rate, seconds, size = spec
            stream.chunk(
                cid=str(cid),
                level=str(level),
                rate=int(str(rate)),
                seconds=float(str(seconds)),
                size=int(str(size)),
                enq=enq,
            )
        elif spec[0] == "end":
            stream.end(cid=str(spec[1]), enq=enq)
        else:
            chunks = [i for i, e in enumerate(stream.entries) if isinstance(e, ChunkEntry)]
            if chunks:
                stream.repeat(chunks[int(str(spec[1])) % len(chunks)])
    entries = stream.entries
    now = T + now_offset
    plan = plan_flush(entries, now, policy, complete=complete)

    ids = [e.entry_id for e in entries]
    first_of: dict[int, bytes] = {}
    for e in entries:
        if isinstance(e, ChunkEntry):
            first_of.setdefault(e.seq, e.entry_id)
    is_repeat = {
        e.entry_id: isinstance(e, ChunkEntry) and first_of[e.seq] != e.entry_id for e in entries
    }
    deleted = len(plan.delete_ids)
    assert len(set(plan.delete_ids)) == deleted
    assert len(plan.objects) <= max_objects
    assert plan.drop_ids == [] or plan.objects == []  # with an upload, the plan holds all
    # Apart from repeats, deletion is a prefix, and objects commit one by one: each
    # deletes the next contiguous run of the stream.
    others = [i for i in ids if not is_repeat[i]]
    begin = 0
    for obj in plan.objects:
        run = [i for i in in_stream_order(obj.delete_ids, entries) if not is_repeat[i]]
        assert run == others[begin : begin + len(run)]
        begin += len(run)
    drops = in_stream_order(plan.drop_ids, entries)
    assert drops == others[begin : begin + len(drops)]
    prefix = begin + len(drops)
    # A repeat is deleted exactly when the object holding its original is written, and
    # by that object's commit.
    holder = {e.entry_id: k for k, obj in enumerate(plan.objects) for e in obj.entries}
    for e in entries:
        if is_repeat[e.entry_id]:
            assert isinstance(e, ChunkEntry)
            owner = holder.get(first_of[e.seq])
            deleters = [k for k, obj in enumerate(plan.objects) if e.entry_id in obj.delete_ids]
            assert deleters == ([] if owner is None else [owner])
            assert e.entry_id not in plan.drop_ids
    # The objects hold the first occurrence of each chunk of the deleted prefix, in order.
    written = [e for obj in plan.objects for e in obj.entries]
    firsts = [
        e for e in entries if e.entry_id in set(others[:prefix]) and isinstance(e, ChunkEntry)
    ]
    assert written == firsts
    for obj in plan.objects:
        assert obj.entries
        assert {(e.uid, e.cid, e.level, e.rate) for e in obj.entries} == {obj.key}
        if len(obj.entries) > 1:
            assert obj.samples <= policy.object_seconds * obj.first.rate
            assert obj.size <= policy.max_bytes
        # No object spans an end marker of its own conversation.
        first, last = ids.index(obj.entries[0].entry_id), ids.index(obj.entries[-1].entry_id)
        assert not any(
            isinstance(e, EndEntry) and e.cid == obj.first.cid for e in entries[first:last]
        )
    gone = set(plan.delete_ids)
    kept = [
        e
        for e in entries
        if e.entry_id not in gone and isinstance(e, ChunkEntry) and not is_repeat[e.entry_id]
    ]
    if not kept:
        assert plan.next_due == (None if complete else now)
    elif plan.next_due == now:
        assert not complete or len(plan.objects) == max_objects  # more to write at once
    else:
        # What is kept is one young, unclosed group; the session is due when it ages.
        assert len({(e.uid, e.cid, e.level, e.rate) for e in kept}) == 1
        oldest = min(e.redis_ms for e in kept) / 1000
        assert plan.next_due == oldest + policy.max_age_seconds
        assert plan.next_due is not None and now < plan.next_due
    # A due session always makes progress: something is written or deleted, or it waits.
    assert plan.delete_ids or plan.next_due is None or plan.next_due > now or not entries
