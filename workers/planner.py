"""Pure flush policy: which stream entries go into which object, and when.

Input: a session's valid stream entries in stream order (workers/validate.py), the time
``now`` (Redis server time, like the entries' ids), and the policy. Output: the objects to
write, what each one deletes when it is stored, and when to look at the session again.

Rules:
- A group is a run of chunks of one user, conversation, level and rate, in stream order.
  It is *closed* when the next chunk cannot join it (other key; ``object_seconds`` of
  audio or ``max_bytes`` bytes reached) or an end marker of its conversation follows.
- A chunk whose ``seq`` already appeared in the read is a repeat (a retried append): it
  joins no group and is deleted by the commit of the object that holds its original,
  wherever it lies in the stream; a repeat of a chunk that stays in Redis stays too
  (``conflicting_repeats`` finds the repeats whose content differs; the flush
  quarantines those before planning).
- Every closed group is written. The last group is written when it is full, when its
  oldest entry has waited ``max_age_seconds`` in Redis (the milliseconds of its stream id),
  or when the read stopped at its limit (``complete=False``): a read limit is a cut, so a
  due session always makes progress.
- At most ``max_objects`` objects per flush; the session is then due again at once.
- Every deletion is part of a written object's commit, so it is in the recorded plan:
  each object deletes its chunks and the end markers before it (back to the previous
  object); the last one also the end markers up to the first kept chunk. Only a flush
  that writes nothing deletes (end markers) in its final step (``FlushPlan.drop_ids``).

``pinned_last_id`` reproduces a cut recorded by a flush of the first release (the
``:intent`` key; docs/FORMATS.md §5.4) so an upgrade in the middle of a flush still writes
the same objects, byte for byte: the entries are read up to the pinned one whatever the
read limit, and planned by that release's rules (every group written, no object cap, a
repeated seq kept in its group as it was then).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from backend_hooks.contract import naming
from backend_hooks.contract.entries import BadEntry, ChunkEntry, EndEntry, Entry

MAX_OBJECTS_PER_FLUSH = 8


@dataclass(frozen=True)
class Policy:
    object_seconds: float
    max_age_seconds: float
    max_bytes: int
    max_objects: int = MAX_OBJECTS_PER_FLUSH


@dataclass
class ObjectPlan:
    entries: list[ChunkEntry] = field(default_factory=list)
    also_delete: list[bytes] = field(default_factory=list)  # end markers and repeats
    closed: bool = False

    @property
    def first(self) -> ChunkEntry:
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
    def oldest_redis_ms(self) -> int:
        return min(e.redis_ms for e in self.entries)

    @property
    def start_us(self) -> int:
        return min(e.start_us for e in self.entries)

    @property
    def end_us(self) -> int:
        return max(e.end_us for e in self.entries)

    @property
    def sealed(self) -> bool:
        return self.first.sealed

    @property
    def delete_ids(self) -> list[bytes]:
        return [e.entry_id for e in self.entries] + self.also_delete

    def data(self) -> bytes:
        return b"".join(e.data for e in self.entries)

    def name(self, data: bytes) -> str:
        e = self.first
        return naming.object_name(
            e.uid, e.cid, start_us=self.start_us, end_us=self.end_us, sealed=self.sealed, data=data
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

    def record(self, name: str) -> RecordedObject:
        return RecordedObject(
            name=name,
            ids=tuple(e.entry_id for e in self.entries),
            also=tuple(self.also_delete),
        )


class PlanError(ValueError):
    """A recorded plan that does not parse or no longer matches the stream."""


@dataclass(frozen=True)
class RecordedObject:
    """One object of a recorded plan: its name, its chunks' ids, the other ids it deletes."""

    name: str
    ids: tuple[bytes, ...]
    also: tuple[bytes, ...] = ()

    def dumps(self) -> str:
        doc = {"name": self.name, "ids": [i.decode() for i in self.ids]}
        if self.also:
            doc["also"] = [i.decode() for i in self.also]
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | bytes) -> RecordedObject:
        try:
            doc = json.loads(text)
            name, ids, also = doc["name"], doc["ids"], doc.get("also", [])
            if not (isinstance(name, str) and ids and all(isinstance(i, str) for i in ids + also)):
                raise TypeError("wrong types")
            return cls(name, tuple(i.encode() for i in ids), tuple(i.encode() for i in also))
        except (ValueError, KeyError, TypeError) as exc:
            raise PlanError(f"recorded object {text[:200]!r} does not parse: {exc}") from None

    @property
    def delete_ids(self) -> list[bytes]:
        return [*self.ids, *self.also]


@dataclass(frozen=True)
class FlushPlan:
    objects: list[ObjectPlan]
    drop_ids: list[bytes]  # end markers deleted by the final step of a flush writing nothing
    next_due: float | None  # None: nothing left in the stream
    repeats: int = 0  # chunks dropped because their seq appeared earlier in the read

    @property
    def delete_ids(self) -> list[bytes]:
        """Every id this plan deletes (a prefix of the stream, but in no particular order)."""
        return [i for obj in self.objects for i in obj.delete_ids] + self.drop_ids


def _content(e: ChunkEntry) -> tuple[object, ...]:
    return (e.uid, e.cid, e.level, e.rate, e.start_us, e.samples, e.data)


def conflicting_repeats(entries: Sequence[Entry]) -> list[BadEntry]:
    """Chunks whose seq appeared earlier in ``entries`` with other content: not a retry."""
    first: dict[int, ChunkEntry] = {}
    bad = []
    for entry in entries:
        if not isinstance(entry, ChunkEntry):
            continue
        seen = first.setdefault(entry.seq, entry)
        if seen is not entry and _content(seen) != _content(entry):
            bad.append(
                BadEntry(
                    entry.entry_id,
                    f"seq {entry.seq} repeats entry {seen.entry_id.decode()} with other content",
                )
            )
    return bad


def _full(group: ObjectPlan, policy: Policy) -> bool:
    return (
        group.samples >= policy.object_seconds * group.first.rate or group.size >= policy.max_bytes
    )


def _group(
    entries: Sequence[Entry], policy: Policy, pinned_last_id: bytes | None
) -> tuple[list[ObjectPlan], list[int], dict[bytes, int]]:
    """Groups, the stream position of each group's first chunk, and the repeats: the id
    of each chunk whose seq came earlier in the read, with the group of that original."""
    groups: list[ObjectPlan] = []
    starts: list[int] = []
    group_of_seq: dict[int, int] = {}
    repeats: dict[bytes, int] = {}
    current: ObjectPlan | None = None
    for position, entry in enumerate(entries):
        if isinstance(entry, EndEntry):
            if current is not None and current.first.cid == entry.cid:
                current.closed = True
            continue
        if entry.seq in group_of_seq and pinned_last_id is None:
            repeats[entry.entry_id] = group_of_seq[entry.seq]
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
            starts.append(position)
        current.entries.append(entry)
        group_of_seq[entry.seq] = len(groups) - 1
        if entry.entry_id == pinned_last_id:
            current.closed = True
    return groups, starts, repeats


def plan_flush(
    entries: Sequence[Entry],
    now: float,
    policy: Policy,
    *,
    complete: bool = True,
    pinned_last_id: bytes | None = None,
) -> FlushPlan:
    """What to write now. ``complete=False``: the read stopped at its limit."""
    groups, starts, repeats = _group(entries, policy, pinned_last_id)
    writable = len(groups)
    if groups:
        tail = groups[-1]
        aged = now * 1000 - tail.oldest_redis_ms >= policy.max_age_seconds * 1000
        if not (tail.closed or _full(tail, policy) or aged or not complete):
            writable -= 1
    written = writable if pinned_last_id is not None else min(writable, policy.max_objects)
    first_kept = starts[written] if written < len(groups) else len(entries)

    # Each written object deletes its chunks and the end markers from just after the
    # previous object's last chunk to its own last chunk; the last one also deletes the
    # end markers up to the first kept chunk. A repeat goes with the object that holds its
    # original, wherever it lies in the stream (behind a young tail, past the object
    # cap): when that object is stored, so is the repeat's audio. So every deletion is in
    # some object's commit, recorded in the plan before the first upload.
    position_of = {e.entry_id: i for i, e in enumerate(entries)}
    begin = 0
    for group in groups[:written]:
        last = position_of[group.entries[-1].entry_id]
        held = {e.entry_id for e in group.entries}
        group.also_delete = [
            e.entry_id
            for e in entries[begin : last + 1]
            if e.entry_id not in held and e.entry_id not in repeats
        ]
        begin = last + 1
    for repeat_id, owner in repeats.items():
        if owner < written:
            groups[owner].also_delete.append(repeat_id)
    trailing = [e.entry_id for e in entries[begin:first_kept] if e.entry_id not in repeats]
    drop_ids: list[bytes] = []
    if written:
        groups[written - 1].also_delete += trailing
    else:
        drop_ids = trailing  # end markers only, and no upload: the final step deletes them

    if written < writable or not complete:
        next_due: float | None = now  # more to do at once
    elif written == len(groups):
        next_due = None
    else:
        next_due = groups[written].oldest_redis_ms / 1000 + policy.max_age_seconds
    dropped = sum(owner < written for owner in repeats.values())
    return FlushPlan(groups[:written], drop_ids, next_due, dropped)
