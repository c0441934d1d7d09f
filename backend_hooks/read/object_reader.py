"""Reading one chunk object: download, open its records, parse and decode it.

The read engine (``backend_hooks/read/reader.py``) lists a conversation and merges what
this module reads, a few objects at a time on threads. One object is read here whole
(``read_object``), or with ``salvage`` (``skip_broken``) record by record; the objects of
one start, candidates for the same audio, together (``read_group``), a failure kept with
its reason for the caller to fall back or skip.

Sealed objects: every record is opened with the uid of the object's path (envelope v1
authenticates it; v0 records open as before); a v1 record's plaintext chunk must say what
its authenticated header says, every v1 record of an object must be of one session, a
new object holds v1 records or (an older pusher's) v0 records but never both, a legacy
object only v0 records, and audio is placed by those authenticated times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backend_hooks.adapters import gcs
from backend_hooks.contract import container, envelope, legacy_pcm, naming
from backend_hooks.contract.errors import (
    AudioSyncError,
    ConfigError,
    FormatError,
    SplicedRecordError,
    StorageError,
)
from backend_hooks.read.merge import MissingChunks


def sealed_segments(
    name: naming.ObjectName, records: list[envelope.OpenedRecord]
) -> list[container.Segment]:
    """Pure: the audio of an object's opened records. A run of v0 records is one payload
    (their plaintexts concatenated, as legacy objects were written); each v1 record is one
    chunk whose container must say exactly what its authenticated header says, and the v1
    records of one object are all of one session. ``FormatError`` names the object and
    the record otherwise; a v0 record in a new object of v1 records is a
    ``SplicedRecordError``, a v1 record in a legacy object a ``FormatError``."""
    if name.is_new:
        spliced = spliced_v0_records(records)
        if spliced:
            raise _spliced_v0(name, spliced[0])
    else:  # a legacy .opus.enc: else a new object renamed would escape the check above
        for record in records:
            _check_v0(name, record.index, record.info)
    out: list[container.Segment] = []
    run: list[bytes] = []
    session: tuple[str, int] | None = None  # (session id, index of its first record)

    def end_run() -> None:
        if run:
            out.extend(container.decode_payload(b"".join(run), name_start_us=name.start_us))
            run.clear()

    for record in records:
        if record.info is None:
            run.append(record.plaintext)
            continue
        end_run()
        where = f"{name.path}: sealed record {record.index}"
        info = record.info
        if session is None:
            session = (info.session_id, record.index)
        elif info.session_id != session[0]:
            raise SplicedRecordError(
                f"{where} is of session {info.session_id}, record {session[1]} of session "
                f"{session[0]}: an object holds one session's chunks, so a record was spliced "
                "in from another object"
            )
        try:
            chunks = container.parse_chunks(record.plaintext)
            if len(chunks) != 1:
                raise FormatError(f"holds {len(chunks)} chunks; a v1 record holds exactly one")
            if chunks[0].info != info:
                raise FormatError(
                    f"its chunk says {chunks[0].info}, its authenticated header {info}"
                )
            pcm = chunks[0].decode()
        except AudioSyncError as exc:
            raise type(exc)(f"{where}: {exc}") from exc
        out.append(
            container.Segment(
                start_us=info.start_us,
                sample_rate=info.sample_rate,
                pcm=pcm,
                key=(info.session_id, info.seq),
            )
        )
    end_run()
    return out


def spliced_v0_records(records: Sequence[envelope.Record | envelope.OpenedRecord]) -> list[int]:
    """Pure: the indexes of the v0 records of an object that also holds v1 records. The
    pusher seals every chunk as v1, so a new object is all v1, or all v0 when an older
    pusher (before envelope v1) sealed its chunks; v0 authenticates neither a chunk's place
    nor its session, so a v0 record among v1 ones was written in from elsewhere."""
    if not any(r.version == envelope.V1 for r in records):
        return []
    return [r.index for r in records if r.version == envelope.V0]


def _spliced_v0(name: naming.ObjectName, index: int) -> SplicedRecordError:
    return SplicedRecordError(
        f"{name.path}: sealed record {index} is envelope v0 in an object of v1 records: the "
        "pusher seals every chunk of a new object as v1, and v0 authenticates neither a "
        "chunk's place nor its session, so it was spliced in; read with skip_broken=True "
        "to leave it out"
    )


def edge_suspects(
    name: naming.ObjectName, segments: list[container.Segment]
) -> list[MissingChunks]:
    """Pure: chunks an object's name says it holds beyond its records' coverage (a
    dropped first or last record), for one-session new objects (the name is
    ``min(start)``-``max(end)`` of its chunks, truncated to the millisecond)."""
    keyed = [s for s in segments if s.key is not None]
    if not name.is_new or name.end_us is None or not keyed:
        return []
    if len({s.key[0] for s in keyed if s.key is not None}) != 1:
        return []
    first = min(keyed, key=lambda s: s.start_us)
    last = max(keyed, key=lambda s: s.start_us + s.sample_count * 1_000_000 // s.sample_rate)
    last_end = last.start_us + last.sample_count * 1_000_000 // last.sample_rate
    out = []
    assert first.key is not None and last.key is not None
    if name.start_us < first.start_us // 1000 * 1000:
        out.append(
            MissingChunks(
                first.key[0], None, first.key[1] - 1, name.start_us, first.start_us, name.path
            )
        )
    if name.end_us > last_end // 1000 * 1000:
        out.append(
            MissingChunks(last.key[0], last.key[1] + 1, None, last_end, name.end_us, name.path)
        )
    return out


@dataclass
class ObjectRead:
    """One object as read: its decoded segments and the chunks its name says it lacks."""

    name: naming.ObjectName
    segments: list[container.Segment]
    suspects: list[MissingChunks]
    #: records left out (``skip_broken``), each with why; the rest of the object was read
    broken: list[str] = field(default_factory=list)


@dataclass
class GroupRead:
    """The objects of one start (candidates for the same audio): those that read, and
    those that failed with why."""

    reads: list[ObjectRead]
    failures: list[tuple[naming.ObjectName, AudioSyncError]]


def _keys(keys: envelope.UserKeys | None, name: naming.ObjectName) -> envelope.UserKeys:
    if keys is None:
        raise ConfigError(f"{name.filename} is sealed: set ENCRYPTION_SECRET to read it")
    return keys


def read_object(
    bucket: gcs.GcsBucket,
    keys: envelope.UserKeys | None,
    uid: str,
    name: naming.ObjectName,
    raw_rate: int | None,
    *,
    salvage: bool = False,
) -> ObjectRead:
    """Download, open, parse and decode one object (raw legacy PCM at ``raw_rate``).

    ``salvage`` (``skip_broken``): a sealed object's records that do not open or decode
    are left out instead of failing the object, each named in ``ObjectRead.broken``: a v1
    record is one chunk (its audio becomes a gap, and the missing seq is reported); a v0
    record of a raw-PCM object becomes silence of its own length, so the audio after it
    keeps its time. Records after a framing error cannot be found: they are left out
    too. A legacy ``.opus.enc`` (one container over its records) is all or nothing."""
    data = bucket.download(name.path)
    broken: list[str] = []
    if legacy_pcm.is_raw(name):
        if not name.sealed:
            plaintexts = [data]
        elif salvage:
            plaintexts = _salvaged_raw(_keys(keys, name), uid, name, data, broken)
        else:
            records = envelope.open_records(_keys(keys, name), uid, data, name=name.path)
            for record in records:
                _check_v0(name, record.index, record.info)
            plaintexts = [r.plaintext for r in records]
        del data
        assert raw_rate is not None  # the stream infers it before reading raw objects
        runs = legacy_pcm.placed_runs(name, plaintexts, raw_rate)
        del plaintexts
        segments = [
            container.Segment(start_us=at, sample_rate=raw_rate, pcm=pcm, key=None)
            for at, pcm in runs
        ]
        return ObjectRead(name, segments, [], broken)
    if name.sealed and salvage and not name.is_new:
        salvage = False  # a legacy .opus.enc: its container spans its records
    if name.sealed and salvage:
        segments = _salvaged_v1(_keys(keys, name), uid, name, data, broken)
    elif name.sealed:
        records = envelope.open_records(_keys(keys, name), uid, data, name=name.path)
        del data
        segments = sealed_segments(name, records)
    else:
        segments = container.decode_payload(data, name_start_us=name.start_us)
    check_named_start(name, segments)
    return ObjectRead(name, segments, edge_suspects(name, segments), broken)


def _check_v0(name: naming.ObjectName, index: int, info: container.ChunkInfo | None) -> None:
    if info is not None:
        raise FormatError(
            f"{name.path}: sealed record {index} is envelope v1 (an Opus chunk of session "
            f"{info.session_id}); a legacy object holds only v0 records, so it is corrupt "
            "or misnamed (a new object renamed to a legacy name, or a record spliced in)"
        )


def _framed(name: naming.ObjectName, data: bytes, broken: list[str]) -> list[envelope.Record]:
    """The records of ``data`` up to the first framing error (noted in ``broken``)."""
    records: list[envelope.Record] = []
    pos = 0
    while pos < len(data):
        try:
            record = envelope.frame_at(data, pos, index=len(records), name=name.path)
        except FormatError as exc:
            broken.append(f"{exc}; the records from byte {pos} on are left out")
            break
        records.append(record)
        pos = record.end
    if not records and not broken:
        broken.append(f"{name.path}: no sealed record in an empty object")
    return records


def _salvaged_raw(
    keys: envelope.UserKeys, uid: str, name: naming.ObjectName, data: bytes, broken: list[str]
) -> list[bytes]:
    """A sealed raw object's plaintexts, a record that does not open as silence of its
    length (plaintext = body less nonce and tag). When none opens (a foreign user's or a
    garbled object) the object fails as a whole: its candidates or a gap stand in."""
    out: list[bytes] = []
    failures: list[FormatError] = []
    framing: list[str] = []
    for record in _framed(name, data, framing):
        try:
            _check_v0(name, record.index, record.info)
            out.append(envelope.open_record(keys, uid, record, name=name.path))
        except FormatError as exc:
            failures.append(exc)
            silence = max(len(record.sealed) - 16, 0)
            broken.append(f"{exc}; its {silence} bytes are silence")
            out.append(bytes(silence))
    if len(failures) == len(out):
        raise failures[0] if failures else FormatError(framing[0])
    broken.extend(framing)
    return out


def _salvaged_v1(
    keys: envelope.UserKeys, uid: str, name: naming.ObjectName, data: bytes, broken: list[str]
) -> list[container.Segment]:
    """A new sealed object's chunks, one record at a time: a record that does not open,
    parse or decode, or is of another session than the object's first good record, is
    left out (its chunk a gap, its seq reported missing), and so is a v0 record among v1
    ones (spliced in: ``spliced_v0_records``)."""
    segments: list[container.Segment] = []
    session: str | None = None
    records = _framed(name, data, broken)
    spliced = set(spliced_v0_records(records))
    for record in records:
        try:
            if record.index in spliced:
                raise _spliced_v0(name, record.index)
            opened = envelope.OpenedRecord(
                index=record.index,
                version=record.version,
                info=record.info,
                plaintext=envelope.open_record(keys, uid, record, name=name.path),
            )
            if opened.info is not None and session not in (None, opened.info.session_id):
                raise SplicedRecordError(
                    f"{name.path}: sealed record {record.index} is of session "
                    f"{opened.info.session_id}, the object's of {session}: spliced in"
                )
            found = sealed_segments(name, [opened])
        except FormatError as exc:
            broken.append(f"{exc}; its chunk is left out")
            continue
        if opened.info is not None:
            session = opened.info.session_id
        segments.extend(found)
    if not segments:
        raise FormatError(broken[0] if broken else f"{name.path}: nothing readable")
    return segments


def check_named_start(name: naming.ObjectName, segments: list[container.Segment]) -> None:
    """A new object's name starts at its earliest chunk (truncated to the ms): the stream
    relies on it (everything before the next object's name start is emitted before that
    object is read), so a chunk starting earlier, in an object renamed or copied under
    another name, would be trimmed away silently. ``FormatError`` naming both instead."""
    if not name.is_new or not segments:
        return
    first = min(s.start_us for s in segments)
    if first // 1000 * 1000 < name.start_us:
        raise FormatError(
            f"{name.path}: holds audio from {first} us, before its name's start "
            f"{name.start_us} us (a new object is named from its earliest chunk): it was "
            "renamed or copied under another name, so its place on the timeline cannot be "
            "trusted; read with skip_broken=True to read around it"
        )


def read_group(
    bucket: gcs.GcsBucket,
    keys: envelope.UserKeys | None,
    uid: str,
    group: list[naming.ObjectName],
    raw_rate: int | None,
    salvage: bool = False,
) -> GroupRead:
    """Every object of one start; a failure to download, open, parse or decode one is kept
    with its reason (an error naming the object) for the caller to fall back or skip.
    ``ConfigError`` (no secret to open sealed objects) is not an object's failure: it
    propagates."""
    out = GroupRead([], [])
    for name in group:
        try:
            out.reads.append(read_object(bucket, keys, uid, name, raw_rate, salvage=salvage))
        except (StorageError, FormatError) as exc:
            out.failures.append((name, exc if name.path in str(exc) else _named(name, exc)))
    return out


def _named(name: naming.ObjectName, exc: AudioSyncError) -> AudioSyncError:
    """``exc`` with the object's path in front (a container error names a byte, not the
    object)."""
    named = type(exc)(f"{name.path}: {exc}")
    named.__cause__ = exc
    return named
