"""Pure: the bytes of one spool file (docs/FORMATS.md §7), one stream entry each.

All integers big-endian::

    magic "ASPL" | u8 version (1) | u32 CRC-32 of body | u32 body length | body

    body: u16 len | session id | i32 shard | u64 n (the entry's append number) |
          u8 flags (bit 0: urgent) | u8 kind (0 chunk, 1 end) |
          u16 len | uid | u16 len | conversation id | i64 enq_us |
          u8 len | level | u32 rate | u32 seq | i64 start_us | u32 samples |
          u32 len | data

A file that is short, fails its CRC or has a version this code does not know is a
``FormatError`` naming what is wrong; the spool quarantines it, it is never appended.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from backend_hooks.contract.entries import KIND_CHUNK, KIND_END, NewEntry
from backend_hooks.contract.errors import FormatError

MAGIC = b"ASPL"
VERSION = 1
_HEAD = struct.Struct(">4sBII")
_KINDS = {KIND_CHUNK: 0, KIND_END: 1}
_KIND_NAMES = {code: name for name, code in _KINDS.items()}
MAX_BODY_BYTES = 1 << 26  # far above any chunk: a bound for reading a foreign file


@dataclass(frozen=True)
class SpoolRecord:
    """One entry of one session, with what its append needs."""

    session_id: str
    shard: int
    n: int
    urgent: bool
    entry: NewEntry


def _short(text: str, size: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(f">{size}", len(raw)) + raw


def encode(record: SpoolRecord) -> bytes:
    e = record.entry
    body = b"".join(
        [
            _short(record.session_id, "H"),
            struct.pack(">iQBB", record.shard, record.n, int(record.urgent), _KINDS[e.kind]),
            _short(e.uid, "H"),
            _short(e.cid, "H"),
            struct.pack(">q", e.enq_us),
            _short(e.level, "B"),
            struct.pack(">IIqI", e.rate, e.seq, e.start_us, e.samples),
            struct.pack(">I", len(e.data)),
            e.data,
        ]
    )
    return _HEAD.pack(MAGIC, VERSION, zlib.crc32(body), len(body)) + body


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.body):
            raise FormatError(f"spool record body ends at byte {len(self.body)}, truncated")
        out = self.body[self.pos : self.pos + size]
        self.pos += size
        return out

    def unpack(self, fmt: str) -> tuple[int, ...]:
        layout = struct.Struct(fmt)
        return layout.unpack(self.take(layout.size))

    def text(self, size: str) -> str:
        (length,) = self.unpack(f">{size}")
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("spool record holds a text field that is not UTF-8") from None


def decode(data: bytes) -> SpoolRecord:
    if len(data) < _HEAD.size:
        raise FormatError(f"spool file is {len(data)} bytes, shorter than its header")
    magic, version, crc, length = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"not a spool file (magic {magic!r})")
    if version != VERSION:
        raise FormatError(f"spool file version {version} is not known (expected {VERSION})")
    if length > MAX_BODY_BYTES or _HEAD.size + length != len(data):
        raise FormatError(
            f"spool file declares {length} body bytes and holds {len(data) - _HEAD.size}: "
            "a torn write"
        )
    body = data[_HEAD.size :]
    if zlib.crc32(body) != crc:
        raise FormatError("spool file fails its CRC-32: a torn or damaged write")
    r = _Reader(body)
    session_id = r.text("H")
    shard, n, flags, kind_code = r.unpack(">iQBB")
    if kind_code not in _KIND_NAMES:
        raise FormatError(f"spool record kind {kind_code} is not known")
    uid, cid = r.text("H"), r.text("H")
    (enq_us,) = r.unpack(">q")
    level = r.text("B")
    rate, seq, start_us, samples = r.unpack(">IIqI")
    (size,) = r.unpack(">I")
    payload = r.take(size)
    if r.pos != len(body):
        raise FormatError(f"spool record has {len(body) - r.pos} bytes after its data")
    entry = NewEntry(
        kind=_KIND_NAMES[kind_code],
        uid=uid,
        cid=cid,
        enq_us=enq_us,
        level=level,
        rate=rate,
        seq=seq,
        start_us=start_us,
        samples=samples,
        data=payload,
    )
    return SpoolRecord(session_id=session_id, shard=shard, n=n, urgent=bool(flags & 1), entry=entry)


def consecutive_runs(records: list[SpoolRecord]) -> list[list[SpoolRecord]]:
    """``records`` (of one session, in ``n`` order) split where ``n`` skips a number: each
    run is one append (its entries are numbered from its first ``n``)."""
    runs: list[list[SpoolRecord]] = []
    for record in records:
        if runs and record.n == runs[-1][-1].n + 1:
            runs[-1].append(record)
        else:
            runs.append([record])
    return runs
