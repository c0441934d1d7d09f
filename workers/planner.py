"""Pure flush policy: which stream entries go into which object, and when.

Input: a session's stream entries in order, the time ``now``, and the policy. Output: the
objects to write (each a run of chunks of one conversation, level and rate, at most
``object_seconds`` of audio and ``max_bytes`` bytes), the entry ids to delete once they are
stored, and when to look at the session again.

A group of chunks is *closed* (ready to write) when the next chunk cannot join it (other
conversation, level or rate; object full by audio or bytes) or an end marker of its
conversation follows it. The last group is written when it is full, or its oldest chunk
was enqueued ``max_age_seconds`` ago. Written groups always form a prefix of the stream,
so deletion is a prefix too (end markers inside it go with it).

``pinned_last_id`` reproduces an earlier plan exactly: a flush records the id of the last
entry it is about to store before uploading; if it dies before deleting, the next flush
cuts at that entry again, so the object it writes has the same bytes and name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backend_hooks import naming
from backend_hooks.redis_store import KIND_END, StreamEntry
from backend_hooks.session import ENHANCED


@dataclass(frozen=True)
class Policy:
    object_seconds: float
    max_age_seconds: float
    max_bytes: int


@dataclass
class ObjectPlan:
    entries: list[StreamEntry] = field(default_factory=list)
    closed: bool = False

    @property
    def first(self) -> StreamEntry:
        return self.entries[0]

    @property
    def key(self) -> tuple[str, str, str, int]:
        e = self.first
        return (e.uid, e.cid, e.level, e.rate)

    @property
    def samples(self) -> int:
        return sum(e.samples for e in self.entries)

    @property
    def size(self) -> int:
        return sum(len(e.data) for e in self.entries)

    @property
    def oldest_enq_us(self) -> int:
        return min(e.enq_us for e in self.entries)

    @property
    def start_us(self) -> int:
        return min(e.start_us for e in self.entries)

    @property
    def end_us(self) -> int:
        return max(e.start_us + e.samples * 1_000_000 // e.rate for e in self.entries)

    @property
    def sealed(self) -> bool:
        return self.first.level == ENHANCED

    def data(self) -> bytes:
        return b"".join(e.data for e in self.entries)

    def name(self, data: bytes) -> str:
        e = self.first
        return naming.object_name(
            e.uid,
            e.cid,
            start_us=self.start_us,
            end_us=self.end_us,
            sealed=self.sealed,
            data=data,
        )

    def metadata(self, session_id: str) -> dict[str, str]:
        e = self.first
        return {
            "audiosync-format": "1",
            "audiosync-rate": str(e.rate),
            "audiosync-samples": str(self.samples),
            "audiosync-chunks": str(len(self.entries)),
            "audiosync-session": session_id,
            "audiosync-seq": f"{e.seq}-{self.entries[-1].seq}",
        }


@dataclass(frozen=True)
class FlushPlan:
    objects: list[ObjectPlan]
    delete_ids: list[bytes]
    next_due: float | None  # None: nothing left in the stream


def _group(
    entries: Sequence[StreamEntry], policy: Policy, pinned_last_id: bytes | None
) -> list[ObjectPlan]:
    groups: list[ObjectPlan] = []
    current: ObjectPlan | None = None
    for entry in entries:
        if entry.kind == KIND_END:
            if current is not None and current.first.cid == entry.cid:
                current.closed = True
            continue
        if current is not None and not current.closed:
            full = (
                current.samples + entry.samples > policy.object_seconds * entry.rate
                or current.size + len(entry.data) > policy.max_bytes
            )
            if full or current.key != (entry.uid, entry.cid, entry.level, entry.rate):
                current.closed = True
        if current is None or current.closed:
            current = ObjectPlan()
            groups.append(current)
        current.entries.append(entry)
        if entry.entry_id == pinned_last_id:
            current.closed = True
    return groups


def _full(group: ObjectPlan, policy: Policy) -> bool:
    return (
        group.samples >= policy.object_seconds * group.first.rate or group.size >= policy.max_bytes
    )


def _aged(group: ObjectPlan, now: float, policy: Policy) -> bool:
    return now - group.oldest_enq_us / 1_000_000 >= policy.max_age_seconds


def plan_flush(
    entries: Sequence[StreamEntry],
    now: float,
    policy: Policy,
    *,
    complete: bool = True,
    pinned_last_id: bytes | None = None,
) -> FlushPlan:
    """What to write now. ``complete=False``: more entries follow those given."""
    groups = _group(entries, policy, pinned_last_id)
    written = list(groups[:-1])  # every group but the last is closed
    if groups:
        tail = groups[-1]
        if tail.closed or _full(tail, policy) or (complete and _aged(tail, now, policy)):
            written.append(tail)
    if len(written) == len(groups):
        return FlushPlan(written, [e.entry_id for e in entries], None if complete else now)
    tail = groups[-1]
    first_kept = tail.entries[0].entry_id
    delete_ids = []
    for entry in entries:
        if entry.entry_id == first_kept:
            break
        delete_ids.append(entry.entry_id)
    due = tail.oldest_enq_us / 1_000_000 + policy.max_age_seconds if complete else now
    return FlushPlan(written, delete_ids, due)


def next_look(
    entries: Sequence[StreamEntry], now: float, policy: Policy, *, complete: bool = True
) -> float | None:
    """When a session whose stream holds ``entries`` must next be flushed (None: never)."""
    plan = plan_flush(entries, now, policy, complete=complete)
    if plan.objects or plan.delete_ids:
        return now
    return plan.next_due
