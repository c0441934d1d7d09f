"""Stream entries: the contract between the pusher, which appends them, and the fleet.

Pure: no Redis, no codec, no clock. The layout (fields, versions) is docs/FORMATS.md §5;
this module is its one implementation. The pusher builds ``NewEntry`` values; the fleet
reads ``ChunkEntry`` and ``EndEntry`` values back, or a ``BadEntry`` with the reason why
the fields do not parse (the fleet quarantines those, see workers/validate.py for the
checks beyond parsing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ENTRY_VERSION = b"1"
KIND_CHUNK = "chunk"
KIND_END = "end"
STANDARD = "standard"
ENHANCED = "enhanced"
PROTECTION_LEVELS = (STANDARD, ENHANCED)

#: The highest chunk sequence number a session may have: 2^21 chunks of 5 s, 116 days.
#: It bounds the worker's stored-seq bitmap of a session at 256 KiB.
MAX_SEQ = 2**21 - 1


@dataclass(frozen=True)
class NewEntry:
    """An entry the pusher appends (a chunk, or with ``kind="end"`` a conversation end)."""

    kind: str
    uid: str
    cid: str
    enq_us: int
    level: str = ""
    rate: int = 0
    seq: int = 0
    start_us: int = 0
    samples: int = 0
    data: bytes = b""

    def fields(self) -> dict[str, str | int | bytes]:
        out: dict[str, str | int | bytes] = {
            "v": ENTRY_VERSION,
            "kind": self.kind,
            "uid": self.uid,
            "cid": self.cid,
            "enq_us": self.enq_us,
        }
        if self.kind == KIND_CHUNK:
            out.update(
                level=self.level,
                rate=self.rate,
                seq=self.seq,
                start_us=self.start_us,
                samples=self.samples,
                data=self.data,
            )
        return out


def id_millis(entry_id: bytes) -> int:
    """The milliseconds part of a stream entry id: Redis server time when it was appended."""
    millis, _, _ = entry_id.partition(b"-")
    return int(millis)


@dataclass(frozen=True)
class EndEntry:
    """The conversation ``cid`` ended (a switch or a close): its last group is closed."""

    entry_id: bytes
    uid: str
    cid: str
    enq_us: int

    @property
    def redis_ms(self) -> int:
        return id_millis(self.entry_id)


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk of audio as appended by the pusher; ``data`` is its container (sealed or not)."""

    entry_id: bytes
    uid: str
    cid: str
    enq_us: int
    level: str
    rate: int
    seq: int
    start_us: int
    samples: int
    data: bytes
    appended_ms: int | None = None  # set by a replay from quarantine: its first append

    @property
    def redis_ms(self) -> int:
        return id_millis(self.entry_id)

    @property
    def first_appended_ms(self) -> int:
        """Redis time of the entry's first append (a replay appends it again later)."""
        return self.redis_ms if self.appended_ms is None else self.appended_ms

    @property
    def end_us(self) -> int:
        return self.start_us + self.samples * 1_000_000 // self.rate

    @property
    def sealed(self) -> bool:
        return self.level == ENHANCED


Entry = ChunkEntry | EndEntry


@dataclass(frozen=True)
class BadEntry:
    """An entry that must not go into an object, with the reason (kept with it in quarantine)."""

    entry_id: bytes
    reason: str


class EntryError(ValueError):
    """Why an entry's fields do not parse; the message is the quarantine reason."""


def _text(raw: Mapping[bytes, bytes], name: str) -> str:
    value = raw.get(name.encode())
    if value is None:
        raise EntryError(f"field {name!r} is missing")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise EntryError(f"field {name!r} is not ASCII: {value[:40]!r}") from None


def _int(raw: Mapping[bytes, bytes], name: str) -> int:
    text = _text(raw, name)
    # int() would also take " 5", "+5", "5_000" and non-ASCII digits; the contract is digits.
    if not (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
        raise EntryError(f"field {name!r} is not an integer: {text[:40]!r}")
    return int(text)


def parse_entry(entry_id: bytes, raw: Mapping[bytes, bytes]) -> Entry:
    """The typed entry, or ``EntryError`` naming the field that is wrong.

    Only the layout is checked here (version, kind, presence and type of each field);
    ranges and the chunk's bytes are the fleet's checks (workers/validate.py).
    """
    try:
        id_millis(entry_id)
    except ValueError:
        raise EntryError(f"entry id {entry_id!r} is not a stream id") from None
    version = raw.get(b"v")
    if version != ENTRY_VERSION:
        raise EntryError(f"entry format v={version!r} is not known (expected v=1)")
    kind = _text(raw, "kind")
    uid, cid, enq_us = _text(raw, "uid"), _text(raw, "cid"), _int(raw, "enq_us")
    if kind == KIND_END:
        return EndEntry(entry_id=entry_id, uid=uid, cid=cid, enq_us=enq_us)
    if kind != KIND_CHUNK:
        raise EntryError(f"entry kind {kind[:40]!r} is not known (expected chunk or end)")
    data = raw.get(b"data")
    if data is None:
        raise EntryError("field 'data' is missing")
    return ChunkEntry(
        entry_id=entry_id,
        uid=uid,
        cid=cid,
        enq_us=enq_us,
        level=_text(raw, "level"),
        rate=_int(raw, "rate"),
        seq=_int(raw, "seq"),
        start_us=_int(raw, "start_us"),
        samples=_int(raw, "samples"),
        data=data,
        appended_ms=_int(raw, "appended_ms") if b"appended_ms" in raw else None,
    )
