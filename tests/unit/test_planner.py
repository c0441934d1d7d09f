"""workers.planner: the pure flush policy, with an injected ``now``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks import naming
from backend_hooks.redis_store import KIND_CHUNK, KIND_END, StreamEntry
from backend_hooks.session import ENHANCED, STANDARD
from workers.planner import FlushPlan, ObjectPlan, Policy, next_look, plan_flush

T = 1_700_000_000.0  # enqueue time of the first entry, Unix seconds
T_US = int(T * 1_000_000)
POLICY = Policy(object_seconds=60, max_age_seconds=60, max_bytes=1_048_576)


@dataclass
class Stream:
    """Builds a session's stream entries in order, with ids ``1-0``, ``2-0``, ..."""

    entries: list[StreamEntry] = field(default_factory=list)
    next_seq: int = 0

    def _id(self) -> bytes:
        return f"{len(self.entries) + 1}-0".encode()

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
            self.entries.append(
                StreamEntry(
                    entry_id=self._id(),
                    kind=KIND_CHUNK,
                    uid=uid,
                    cid=cid,
                    enq_us=round((enq + i * enq_step) * 1_000_000),
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
            StreamEntry(
                entry_id=self._id(), kind=KIND_END, uid=uid, cid=cid, enq_us=round(enq * 1e6)
            )
        )
        return self


def indexes(plan: FlushPlan, entries: list[StreamEntry]) -> list[list[int]]:
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
        Case(lambda: Stream().chunk(3), T + 1, [], 0, T + 1, complete=False),
        id="incomplete-young-tail-kept-look-again-now",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(3), T + 600, [], 0, T + 600, complete=False),
        id="incomplete-aged-tail-kept-more-may-follow",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(14), T + 1, [r(0, 12)], 12, T + 1, complete=False),
        id="incomplete-closed-groups-written",
    ),
    pytest.param(
        Case(lambda: Stream().chunk(12), T + 1, [r(0, 12)], 12, T + 1, complete=False),
        id="incomplete-full-tail-written",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_plan_flush(case: Case) -> None:
    entries = case.stream().entries
    plan = plan_flush(entries, case.now, case.policy, complete=case.complete)
    assert indexes(plan, entries) == case.objects
    assert plan.delete_ids == [e.entry_id for e in entries[: case.deleted]]
    assert plan.next_due == case.next_due


@pytest.mark.parametrize("case", CASES)
def test_next_look(case: Case) -> None:
    entries = case.stream().entries
    plan = plan_flush(entries, case.now, case.policy, complete=case.complete)
    expected = case.now if (plan.objects or plan.delete_ids) else case.next_due
    assert next_look(entries, case.now, case.policy, complete=case.complete) == expected


def test_next_look_of_a_young_tail_is_its_age_limit() -> None:
    entries = Stream().chunk(2).entries
    assert next_look(entries, T + 5, POLICY) == T + 60
    assert next_look([], T + 5, POLICY) is None


def test_end_marker_is_deleted_with_its_object() -> None:
    entries = Stream().chunk(2).end().chunk(1, cid="B").entries
    plan = plan_flush(entries, T + 1, POLICY)
    assert entries[2].kind == KIND_END
    assert entries[2].entry_id in plan.delete_ids
    assert all(e.kind == KIND_CHUNK for obj in plan.objects for e in obj.entries)


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
    assert data == b"".join(e.data for e in entries)
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


def test_object_plan_oldest_enqueue() -> None:
    obj = ObjectPlan(entries=Stream().chunk(1, enq=T + 9).chunk(1, enq=T + 3).entries)
    assert obj.oldest_enq_us == T_US + 3_000_000


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
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    specs=entry_specs,
    enq_gaps=st.lists(st.floats(min_value=0, max_value=20), min_size=40, max_size=40),
    now_offset=st.floats(min_value=0, max_value=1000),
    complete=st.booleans(),
    max_bytes=st.integers(min_value=100, max_value=2000),
)
def test_plan_invariants(
    specs: list[tuple[object, ...]],
    enq_gaps: list[float],
    now_offset: float,
    complete: bool,
    max_bytes: int,
) -> None:
    policy = Policy(object_seconds=60, max_age_seconds=60, max_bytes=max_bytes)
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
        else:
            stream.end(cid=str(spec[1]), enq=enq)
    entries = stream.entries
    now = T + now_offset
    plan = plan_flush(entries, now, policy, complete=complete)

    ids = [e.entry_id for e in entries]
    deleted = len(plan.delete_ids)
    assert plan.delete_ids == ids[:deleted]  # deletion is a prefix
    written = [e for obj in plan.objects for e in obj.entries]
    # The objects hold exactly the chunks of the deleted prefix, in stream order.
    assert written == [e for e in entries[:deleted] if e.kind == KIND_CHUNK]
    for obj in plan.objects:
        assert obj.entries
        assert {(e.uid, e.cid, e.level, e.rate) for e in obj.entries} == {obj.key}
        if len(obj.entries) > 1:
            assert obj.samples <= policy.object_seconds * obj.first.rate
            assert obj.size <= policy.max_bytes
        # No object spans an end marker of its own conversation.
        first, last = ids.index(obj.entries[0].entry_id), ids.index(obj.entries[-1].entry_id)
        assert not any(e.kind == KIND_END and e.cid == obj.first.cid for e in entries[first:last])
    if deleted == len(entries):
        assert plan.next_due == (None if complete else now)
    else:
        # What is kept is one young, unclosed group of one conversation (and end
        # markers of other conversations); the session is due when it ages.
        kept = [e for e in entries[deleted:] if e.kind == KIND_CHUNK]
        assert kept
        assert len({(e.uid, e.cid, e.level, e.rate) for e in kept}) == 1
        if complete:
            oldest = min(e.enq_us for e in kept) / 1_000_000
            assert plan.next_due == oldest + policy.max_age_seconds
            assert now < plan.next_due  # an aged tail would have been written
        else:
            assert plan.next_due == now
