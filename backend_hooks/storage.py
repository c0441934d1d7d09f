"""The read side the backend calls, under the backend's own function names.

Lists, merges and deletes the chunk objects of a conversation: the new 60 s objects
(``.opus``, ``.opus.enc``) and the legacy single-chunk Opus objects next to them. Legacy
raw-PCM objects (``.bin``, ``.enc``, ``.batch.*``) are listed; merging them is ROADMAP 3
and raises ``UnsupportedFormatError`` until then rather than guessing their sample rate.

Sealed objects: every record is opened with the uid of the object's path (envelope v1
authenticates it; v0 records open as before); a v1 record's plaintext chunk must say what
its authenticated header says, every v1 record of an object must be of one session, and
audio is placed by those authenticated times. Chunks missing from a session (a dropped
record or object) are reported in ``MergedAudio.missing`` and logged as a warning.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backend_hooks import container, envelope, gcs, naming
from backend_hooks.errors import AudioSyncError, ConfigError, FormatError, UnsupportedFormatError
from backend_hooks.ids import validate_id
from backend_hooks.merge import MergedAudio, MissingChunks, merge_segments
from backend_hooks.settings import Settings

log = logging.getLogger(__name__)
_DOWNLOAD_THREADS = 8


@dataclass
class StorageContext:
    settings: Settings
    bucket: gcs.GcsBucket
    keys: envelope.UserKeys | None

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageContext:
        return cls(
            settings=settings,
            bucket=gcs.GcsBucket.from_settings(settings),
            keys=envelope.UserKeys(settings.encryption_secret, settings.encryption_secret_previous)
            if settings.encryption_secret
            else None,
        )


@functools.cache
def default_context() -> StorageContext:
    """The context built from the environment on first use."""
    return StorageContext.from_settings(Settings.from_env(role="reader"))


def reset_default_context() -> None:
    """Forget the cached context (after the environment changed, e.g. in tests)."""
    default_context.cache_clear()


def _objects(
    ctx: StorageContext, uid: str, conversation_id: str
) -> list[tuple[naming.ObjectName, gcs.StoredObject]]:
    """The chunk objects of a conversation with parseable names, oldest first."""
    prefix = naming.conversation_prefix(
        validate_id(uid, "uid"), validate_id(conversation_id, "conversation_id")
    )
    found = []
    for stored in ctx.bucket.list(prefix):
        try:
            found.append((naming.parse_object_name(stored.name), stored))
        except UnsupportedFormatError:
            continue  # not a chunk object (e.g. a stray upload): not audio of ours
    return sorted(found, key=lambda pair: (pair[0].start_us, pair[0].filename))


def _duration(name: naming.ObjectName, metadata: dict[str, str]) -> float | None:
    try:
        return int(metadata["audiosync-samples"]) / int(metadata["audiosync-rate"])
    except (KeyError, ValueError, ZeroDivisionError):
        pass
    if name.is_new and name.end_us is not None:
        return (name.end_us - name.start_us) / 1_000_000
    return None  # legacy objects: ROADMAP 3 computes it from the bytes


def list_audio_chunks(
    uid: str, conversation_id: str, *, context: StorageContext | None = None
) -> list[dict[str, Any]]:
    """Chunk objects of a conversation, oldest first.

    Each: ``timestamp`` (start, float seconds), ``path``, ``size`` (bytes), ``duration``
    (seconds of audio, from the stored sample count; ``None`` for legacy objects).
    """
    ctx = context or default_context()
    return [
        {
            "timestamp": name.timestamp,
            "path": name.path,
            "size": stored.size,
            "duration": _duration(name, stored.metadata),
        }
        for name, stored in _objects(ctx, uid, conversation_id)
    ]


def _selected(
    names: list[naming.ObjectName], timestamps: list[float] | None
) -> list[naming.ObjectName]:
    if timestamps is None:
        return names
    wanted = {round(t * 1000) for t in timestamps}
    return [n for n in names if n.start_us // 1000 in wanted]


def sealed_segments(
    name: naming.ObjectName, records: list[envelope.OpenedRecord]
) -> list[container.Segment]:
    """Pure: the audio of an object's opened records. A run of v0 records is one payload
    (their plaintexts concatenated, as legacy objects were written); each v1 record is one
    chunk whose container must say exactly what its authenticated header says, and the v1
    records of one object are all of one session. ``FormatError`` names the object and
    the record otherwise."""
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
            raise FormatError(
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


def _segments(
    ctx: StorageContext, uid: str, name: naming.ObjectName
) -> tuple[list[container.Segment], list[MissingChunks]]:
    if name.extension not in (naming.EXT_OPUS, naming.EXT_OPUS_ENC):
        raise UnsupportedFormatError(
            f"{name.filename}: legacy raw-PCM objects are not merged yet (ROADMAP 3)"
        )
    data = ctx.bucket.download(name.path)
    if name.sealed:
        if ctx.keys is None:
            raise ConfigError(f"{name.filename} is sealed: set ENCRYPTION_SECRET to read it")
        records = envelope.open_records(ctx.keys, uid, data, name=name.path)
        segments = sealed_segments(name, records)
    else:
        segments = container.decode_payload(data, name_start_us=name.start_us)
    return segments, edge_suspects(name, segments)


def download_merged_audio(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    *,
    context: StorageContext | None = None,
) -> MergedAudio:
    """The conversation's audio as PCM16LE mono at the recording's rate, with that rate.

    ``missing`` lists the chunks each session lacks (a dropped record or object, or a
    quarantined chunk): they are logged as a warning and, like any gap, filled with zeros
    when ``fill_gaps``. With ``timestamps`` selecting objects that are not neighbours,
    the chunks of the objects left out between them are listed too.
    """
    ctx = context or default_context()
    names = _selected([n for n, _ in _objects(ctx, uid, conversation_id)], timestamps)
    with ThreadPoolExecutor(_DOWNLOAD_THREADS) as pool:
        per_object = list(pool.map(lambda n: _segments(ctx, uid, n), names))
    merged = merge_segments(
        [s for segs, _ in per_object for s in segs],
        fill_gaps=fill_gaps,
        suspects=[m for _, suspects in per_object for m in suspects],
    )
    for hole in merged.missing:
        log.warning(
            "conversation %s of user %s is missing audio: %s (a dropped record or object, "
            "or a quarantined chunk)",
            conversation_id,
            uid,
            hole.describe(),
        )
    return merged


def download_audio_chunks_and_merge(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    *,
    context: StorageContext | None = None,
) -> bytes:
    """PCM16LE mono at the recording's rate (see ``download_merged_audio`` for the rate)."""
    return download_merged_audio(uid, conversation_id, timestamps, fill_gaps, context=context).pcm


def delete_audio_chunks(
    uid: str,
    conversation_id: str,
    timestamps: list[float],
    *,
    context: StorageContext | None = None,
) -> None:
    """Delete the chunk objects whose listing timestamps are given."""
    ctx = context or default_context()
    for name in _selected([n for n, _ in _objects(ctx, uid, conversation_id)], list(timestamps)):
        ctx.bucket.delete(name.path)
