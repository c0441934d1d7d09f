"""Pure: is a stream entry fit to go into an object? Checked fully before concatenation.

A chunk entry is accepted only when every field is in range and its bytes have the framing
its level promises; anything else is a ``BadEntry`` with a reason and goes to quarantine
(docs/FORMATS.md §5.3), never into an object, where one bad chunk would make the whole
conversation unreadable.

- ids: ``uid`` and ``cid`` as the pusher validates them (backend_hooks/contract/ids.py), so every
  object name stays far below GCS's 1,024-byte limit (checked too);
- ``level`` one of the protection levels, ``rate`` one of the Opus rates, ``seq`` from 0
  to ``MAX_SEQ``, ``samples`` from 1 to ``MAX_CHUNK_SECONDS`` of audio;
- ``start_us`` within ``timestamp_window_seconds`` of the entry's own Redis time (the
  milliseconds of its stream id, or of its first append for an entry replayed from
  quarantine): milliseconds passed as seconds, or a clock in 1970, are refused here and
  never become an object name;
- ``data`` at most ``MAX_CHUNK_BYTES``; for ``standard`` exactly one Ogg Opus stream with
  valid page checksums whose audiosync tags (session, seq, start, samples, rate) match the
  entry and whose Opus packets hold at least that many samples (counted from their TOC
  bytes, RFC 6716 §3.1, without decoding: the fleet needs no libopus); for ``enhanced``
  exactly one sealed record (envelope framing: the worker never holds a key, so the
  ciphertext itself is the reader's to authenticate) whose cleartext v1 header (session,
  seq, start_us, samples, rate) matches the entry, so the object's name and the reader's
  authenticated placement agree; a legacy v0 record (no header) is accepted as it is.

The checks depend only on the entry and its id, so a successor that re-reads the entries
of a recorded plan reaches the same verdict.

One check is of the session, not of an entry alone (``foreign_v0_entries``): a v0 record
in a session whose pusher seals v1 (its ``:appended`` mark exists, or the same read holds
v1 records of it) was written in from elsewhere, and is quarantined. A fresh plan makes
it; a recorded plan is carried out as recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.entries import (
    MAX_SEQ,
    PROTECTION_LEVELS,
    BadEntry,
    ChunkEntry,
    Entry,
    EntryError,
    parse_entry,
)
from backend_hooks.contract.errors import AudioSyncError
from backend_hooks.contract.ids import validate_id

MAX_CHUNK_SECONDS = 600
MAX_CHUNK_BYTES = 512 * 1024  # 5 s of Opus is ~5-10 kB; 10 min at 48 kHz is ~1.8 MB raw Opus


@dataclass(frozen=True)
class Limits:
    timestamp_window_seconds: float


def parse_only(entry_id: bytes, raw: Mapping[bytes, bytes]) -> Entry | BadEntry:
    """The first release's only check (it parsed entries, nothing more): for rebuilding a
    cut that release recorded, byte for byte (FORMATS.md §5.5)."""
    try:
        return parse_entry(entry_id, raw)
    except EntryError as exc:
        return BadEntry(entry_id, str(exc))


def validate_entry(
    session_id: str, entry_id: bytes, raw: Mapping[bytes, bytes], limits: Limits
) -> Entry | BadEntry:
    """The entry if it may be stored, else a ``BadEntry`` saying why."""
    try:
        entry = parse_entry(entry_id, raw)
        for value, what in ((entry.uid, "uid"), (entry.cid, "cid")):
            try:
                validate_id(value, what)
            except AudioSyncError as exc:
                raise EntryError(str(exc)) from None
        if isinstance(entry, ChunkEntry):
            _check_chunk(session_id, entry, limits)
        return entry
    except EntryError as exc:
        return BadEntry(entry_id, str(exc))


def _check_chunk(session_id: str, entry: ChunkEntry, limits: Limits) -> None:
    if entry.level not in PROTECTION_LEVELS:
        raise EntryError(f"level {entry.level[:40]!r} is not one of {PROTECTION_LEVELS}")
    if entry.rate not in SUPPORTED_RATES:
        raise EntryError(f"rate {entry.rate} is not one of {SUPPORTED_RATES}")
    if not 0 <= entry.seq <= MAX_SEQ:
        raise EntryError(f"seq {entry.seq} is not from 0 to {MAX_SEQ}")
    if not 0 < entry.samples <= MAX_CHUNK_SECONDS * entry.rate:
        raise EntryError(
            f"samples {entry.samples} is not from 1 to {MAX_CHUNK_SECONDS} s at {entry.rate} Hz"
        )
    window_us = round(limits.timestamp_window_seconds * 1_000_000)
    redis_us = entry.first_appended_ms * 1000
    if entry.start_us < 0 or abs(entry.start_us - redis_us) > window_us:
        raise EntryError(
            f"start_us {entry.start_us} is more than {limits.timestamp_window_seconds:g} s "
            f"from the entry's Redis time {redis_us} (AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS)"
        )
    if not 0 < len(entry.data) <= MAX_CHUNK_BYTES:
        raise EntryError(f"data is {len(entry.data)} bytes; 1 to {MAX_CHUNK_BYTES} expected")
    name = naming.object_name(
        entry.uid,
        entry.cid,
        start_us=entry.start_us,
        end_us=entry.end_us,
        sealed=entry.sealed,
        data=b"",
    )
    if len(name.encode()) > naming.MAX_NAME_BYTES:
        raise EntryError(f"its object name would be {len(name.encode())} bytes, over the limit")
    if entry.sealed:
        _check_sealed(session_id, entry)
    else:
        _check_standard(session_id, entry)


def _check_sealed(session_id: str, entry: ChunkEntry) -> None:
    try:
        records = envelope.split_records(entry.data, name="data")
    except AudioSyncError as exc:
        raise EntryError(f"data is not a sealed record: {exc}") from None
    if len(records) != 1:
        raise EntryError(f"data holds {len(records)} sealed records; a chunk is exactly one")
    header = records[0].info
    if header is None:
        return  # envelope v0 (a pusher before v1): nothing in clear to compare
    said = (session_id, entry.seq, entry.start_us, entry.samples, entry.rate)
    h = header
    sealed = (h.session_id, h.seq, h.start_us, h.sample_count, h.sample_rate)
    if said != sealed:
        raise EntryError(
            f"the sealed record's header (session, seq, start_us, samples, rate) = {sealed} "
            f"does not match the entry's {said}"
        )


def _check_standard(session_id: str, entry: ChunkEntry) -> None:
    # What the pusher writes reads at C speed; anything else, sound or not, is read in
    # full, which says what is wrong (the same verdict either way: tests/unit/fleet).
    plain = container.plain_chunk(entry.data)
    info, held = _read_in_full(entry.data) if plain is None else plain
    if held < info.sample_count:
        raise EntryError(
            f"its Opus packets hold {max(0, held)} samples, its tags say {info.sample_count}"
        )
    said = (session_id, entry.seq, entry.start_us, entry.samples, entry.rate)
    tagged = (info.session_id, info.seq, info.start_us, info.sample_count, info.sample_rate)
    if said != tagged:
        raise EntryError(
            f"the chunk's tags (session, seq, start_us, samples, rate) = {tagged} do not "
            f"match the entry's {said}"
        )


def _read_in_full(data: bytes) -> tuple[container.ChunkInfo, int]:
    """The info and held samples of a chunk not in the plain layout; ``EntryError`` why
    it is no chunk."""
    try:
        chunks = container.parse_chunks(data)
    except AudioSyncError as exc:
        raise EntryError(f"data is not an audiosync Ogg Opus chunk: {exc}") from None
    if len(chunks) != 1:
        raise EntryError(f"data holds {len(chunks)} Ogg Opus streams; a chunk is exactly one")
    try:
        held = chunks[0].held_samples()
    except AudioSyncError as exc:
        raise EntryError(f"data holds a malformed Opus packet: {exc}") from None
    return chunks[0].info, held


def _envelope_version(entry: Entry) -> int | None:
    """The envelope version of a sealed chunk's record (validated: exactly one record, so
    its first byte is its version); None for anything else."""
    if isinstance(entry, ChunkEntry) and entry.sealed and entry.data:
        return entry.data[0]
    return None


def v1_session_sign(appended_mark: bool, entries: Iterable[Entry]) -> str | None:
    """Why the session's pusher is one that seals envelope v1, or None if nothing says so.

    The ``:appended`` mark: the first release, the only pusher that sealed v0, never wrote
    it (its append was a bare XADD). A v1 record: no pusher that seals v0 writes one."""
    if appended_mark:
        return "the session has the :appended mark, which no pusher sealing v0 wrote"
    if any(_envelope_version(e) == envelope.V1 for e in entries):
        return "the same read holds envelope v1 records of the session"
    return None


def foreign_v0_entries(entries: Sequence[Entry], sign: str | None) -> list[BadEntry]:
    """The chunks of ``entries`` sealed as envelope v0 when ``sign`` (``v1_session_sign``)
    says the session's pusher seals v1: written into its stream from elsewhere."""
    if sign is None:
        return []
    return [
        BadEntry(
            e.entry_id,
            f"an envelope v0 record in a session whose pusher seals v1 ({sign}): v0 "
            "authenticates neither its session nor its place, so it was written in from "
            "elsewhere",
        )
        for e in entries
        if _envelope_version(e) == envelope.V0
    ]
