"""The read side the backend calls, under the backend's own function names.

Lists, merges and deletes the chunk objects of a conversation: the new 60 s objects
(``.opus``, ``.opus.enc``), the legacy single-chunk Opus objects and the legacy raw-PCM
objects (``.bin``, ``.enc``, ``.batch.*``) next to them. Raw PCM does not carry its sample
rate: it is the caller's ``sample_rate`` when given, otherwise inferred from the objects'
names and lengths (``legacy_pcm.infer_sample_rate``, docs/FORMATS.md §6), and
``SampleRateUnknownError`` when it cannot be told. Names in the prefix that are not chunk
objects are logged as a warning and listed by ``list_unknown_objects``, never fatal.

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

from backend_hooks import (
    container,
    conversations,
    durations,
    envelope,
    gcs,
    legacy_pcm,
    naming,
    redis_store,
)
from backend_hooks.audio_format import SUPPORTED_RATES
from backend_hooks.errors import (
    AudioSyncError,
    ConfigError,
    FormatError,
    InvalidInputError,
    SampleRateUnknownError,
    UnsupportedFormatError,
)
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
    #: Redis (AUDIOSYNC_REDIS_URL), connected on first use: only a conversation delete
    #: talks to it (the mark that stops the fleet uploading into a deleted conversation)
    redis: redis_store.RedisClient | None = None

    def redis_client(self) -> redis_store.RedisClient:
        if self.redis is None:
            self.redis = redis_store.connect(
                self.settings.redis_url, cluster=self.settings.redis_cluster
            )
        return self.redis

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


def _listing(
    ctx: StorageContext, uid: str, conversation_id: str
) -> tuple[list[tuple[naming.ObjectName, gcs.StoredObject]], list[dict[str, Any]]]:
    """The chunk objects of a conversation with parseable names, oldest first, and the
    other names in its prefix (each ``path``, ``size`` and ``reason``)."""
    prefix = naming.conversation_prefix(
        validate_id(uid, "uid"), validate_id(conversation_id, "conversation_id")
    )
    found = []
    unknown: list[dict[str, Any]] = []
    for stored in ctx.bucket.list(prefix):
        try:
            found.append((naming.parse_object_name(stored.name), stored))
        except UnsupportedFormatError as exc:
            unknown.append({"path": stored.name, "size": stored.size, "reason": str(exc)})
    if unknown:
        log.warning(
            "conversation %s of user %s: %d object(s) in its prefix are not chunk objects "
            "and are left out: %s",
            conversation_id,
            uid,
            len(unknown),
            ", ".join(u["path"] for u in unknown[:10]),
        )
    return sorted(found, key=lambda pair: (pair[0].start_us, pair[0].filename)), unknown


def _objects(
    ctx: StorageContext, uid: str, conversation_id: str
) -> list[tuple[naming.ObjectName, gcs.StoredObject]]:
    """The chunk objects of a conversation with parseable names, oldest first."""
    return _listing(ctx, uid, conversation_id)[0]


def list_unknown_objects(
    uid: str, conversation_id: str, *, context: StorageContext | None = None
) -> list[dict[str, Any]]:
    """Objects in the conversation's prefix whose names are not chunk objects (a stray
    upload, an unknown extension): ``path``, ``size`` and ``reason``. They are never read."""
    return _listing(context or default_context(), uid, conversation_id)[1]


def _metadata_rate(name: naming.ObjectName, metadata: dict[str, str]) -> int | None:
    try:
        return int(metadata["audiosync-rate"])
    except (KeyError, ValueError):
        return None if name.is_new else container.LEGACY_RATE


def _checked_rate(sample_rate: int | None) -> int | None:
    if sample_rate is not None and sample_rate not in SUPPORTED_RATES:
        raise InvalidInputError(
            f"sample_rate {sample_rate!r} is not one of {list(SUPPORTED_RATES)} Hz"
        )
    return sample_rate


def _raw_objects(
    ctx: StorageContext,
    objects: list[tuple[naming.ObjectName, gcs.StoredObject]],
    known: dict[str, list[bytes]],
) -> tuple[list[legacy_pcm.RawObject], dict[str, str]]:
    """The raw legacy objects among ``objects`` with their chunk lengths (from ``known``
    plaintexts, the size of a plain object, or the record framing of a sealed one read
    with ranged reads), and those whose framing is broken (path -> why)."""

    def one(pair: tuple[naming.ObjectName, gcs.StoredObject]) -> legacy_pcm.RawObject | str:
        name, stored = pair
        if name.path in known:
            return legacy_pcm.RawObject(name, tuple(len(p) for p in known[name.path]))
        if not name.sealed:
            return legacy_pcm.RawObject(name, (stored.size,))
        try:
            lengths = legacy_pcm.sealed_chunk_lengths(
                lambda at, n: ctx.bucket.download_range(name.path, at, n), stored.size, name.path
            )
        except FormatError as exc:
            return str(exc)
        return legacy_pcm.RawObject(name, tuple(lengths))

    raw = [pair for pair in objects if legacy_pcm.is_raw(pair[0])]
    with ThreadPoolExecutor(_DOWNLOAD_THREADS) as pool:
        results = list(pool.map(one, raw))
    broken = {pair[0].path: r for pair, r in zip(raw, results, strict=True) if isinstance(r, str)}
    for why in broken.values():
        log.warning("%s; left out of the sample-rate evidence", why)
    return [r for r in results if not isinstance(r, str)], broken


def _conversation(uid: str, conversation_id: str) -> str:
    return f"conversation {conversation_id} of user {uid}"


def list_audio_chunks(
    uid: str,
    conversation_id: str,
    *,
    sample_rate: int | None = None,
    context: StorageContext | None = None,
) -> list[dict[str, Any]]:
    """Chunk objects of a conversation, every known extension, oldest first.

    Each: ``timestamp`` (start, float seconds), ``path``, ``size`` (bytes), ``kind``
    (``opus``: a new object; ``legacy-opus``; ``legacy-pcm``: ``.bin``/``.enc``;
    ``legacy-pcm-batch``: ``.batch.*``), ``sample_rate`` (Hz, or ``None`` when not known)
    and ``duration`` (seconds of audio from real sample counts, never decoded: for Opus
    objects ``durations.opus_sample_counts``, i.e. a new object's stored sample count and a
    legacy one's container header; for raw legacy objects whole samples over the rate,
    ``sample_rate`` when given, else the inferred one; ``None`` for an object that cannot
    be measured, for raw ones whose rate cannot be told or whose framing is broken, each
    logged as a warning). Names in the prefix that are not chunk objects are logged and
    left out (``list_unknown_objects`` lists them).
    """
    ctx = context or default_context()
    rate = _checked_rate(sample_rate)
    objects = _objects(ctx, uid, conversation_id)
    raws, _ = _raw_objects(ctx, objects, {})
    if raws and rate is None:
        try:
            rate = legacy_pcm.infer_sample_rate(
                raws, conversation=_conversation(uid, conversation_id)
            )
        except SampleRateUnknownError as exc:
            log.warning("%s; listed with duration None", exc)
    by_path = {r.name.path: r for r in raws}
    opus = [pair for pair in objects if not legacy_pcm.is_raw(pair[0])]
    counted = durations.opus_sample_counts(ctx.bucket, ctx.keys, uid, opus)
    out = []
    for name, stored in objects:
        item: dict[str, Any] = {
            "timestamp": name.timestamp,
            "path": name.path,
            "size": stored.size,
            "kind": legacy_pcm.kind_of(name),
        }
        if legacy_pcm.is_raw(name):
            raw = by_path.get(name.path)
            item["sample_rate"] = rate
            item["duration"] = None if raw is None or rate is None else raw.sample_count / rate
        else:
            count = counted[name.path]
            if count is None:
                item["sample_rate"] = _metadata_rate(name, stored.metadata)
                item["duration"] = None
            else:
                item["sample_rate"], item["duration"] = count.sample_rate, count.seconds
        out.append(item)
    return out


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


@dataclass
class _Read:
    """One object as read: decoded segments (Opus objects) or, for raw legacy objects,
    the plaintexts still waiting for the conversation's rate."""

    name: naming.ObjectName
    segments: list[container.Segment]
    suspects: list[MissingChunks]
    plaintexts: list[bytes] | None = None


def _keys(ctx: StorageContext, name: naming.ObjectName) -> envelope.UserKeys:
    if ctx.keys is None:
        raise ConfigError(f"{name.filename} is sealed: set ENCRYPTION_SECRET to read it")
    return ctx.keys


def _read(ctx: StorageContext, uid: str, name: naming.ObjectName) -> _Read:
    data = ctx.bucket.download(name.path)
    if legacy_pcm.is_raw(name):
        if not name.sealed:
            return _Read(name, [], [], [data])
        records = envelope.open_records(_keys(ctx, name), uid, data, name=name.path)
        for record in records:
            if record.info is not None:
                raise FormatError(
                    f"{name.path}: sealed record {record.index} is envelope v1 (an Opus chunk "
                    f"of session {record.info.session_id}); a legacy raw-PCM object holds only "
                    "v0 records, so it is corrupt or misnamed"
                )
        return _Read(name, [], [], [r.plaintext for r in records])
    if name.sealed:
        records = envelope.open_records(_keys(ctx, name), uid, data, name=name.path)
        segments = sealed_segments(name, records)
    else:
        segments = container.decode_payload(data, name_start_us=name.start_us)
    return _Read(name, segments, edge_suspects(name, segments))


def download_merged_audio(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    sample_rate: int | None = None,
    *,
    context: StorageContext | None = None,
) -> MergedAudio:
    """The conversation's audio as PCM16LE mono at one rate, with that rate.

    The rate is the recording's own: new and Opus objects carry theirs; legacy raw PCM is
    at ``sample_rate`` when the caller gives it, otherwise at the rate its names and
    lengths tell (docs/FORMATS.md §6), ``SampleRateUnknownError`` naming the conversation
    when they do not. A conversation at several rates, or at another rate than a given
    ``sample_rate``, raises ``UnsupportedFormatError`` (resampling is a later step).

    ``missing`` lists the chunks each session lacks (a dropped record or object, or a
    quarantined chunk): they are logged as a warning and, like any gap, filled with zeros
    when ``fill_gaps``. With ``timestamps`` selecting objects that are not neighbours,
    the chunks of the objects left out between them are listed too.
    """
    ctx = context or default_context()
    rate = _checked_rate(sample_rate)
    objects = _objects(ctx, uid, conversation_id)
    names = _selected([n for n, _ in objects], timestamps)
    with ThreadPoolExecutor(_DOWNLOAD_THREADS) as pool:
        reads = list(pool.map(lambda n: _read(ctx, uid, n), names))
    raw_reads = [r for r in reads if r.plaintexts is not None]
    if raw_reads and rate is None:
        known = {r.name.path: r.plaintexts for r in raw_reads if r.plaintexts is not None}
        raws, _ = _raw_objects(ctx, objects, known)
        rate = legacy_pcm.infer_sample_rate(raws, conversation=_conversation(uid, conversation_id))
    segments = [s for r in reads for s in r.segments]
    for r in raw_reads:
        assert r.plaintexts is not None and rate is not None
        pcm = legacy_pcm.raw_pcm(r.name, r.plaintexts)
        if pcm:
            segments.append(legacy_pcm.raw_segment(r.name, pcm, rate))
    if sample_rate is not None:
        other = sorted({s.sample_rate for s in segments} - {sample_rate})
        if other:
            raise UnsupportedFormatError(
                f"{_conversation(uid, conversation_id)} holds audio at {other} Hz and "
                f"sample_rate={sample_rate} was asked for; resampling is not supported yet "
                "(a later step, with soxr): leave sample_rate out to read it at its own rate"
            )
    merged = merge_segments(
        segments,
        fill_gaps=fill_gaps,
        default_rate=sample_rate or container.LEGACY_RATE,
        suspects=[m for r in reads for m in r.suspects],
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
    sample_rate: int | None = None,
    *,
    context: StorageContext | None = None,
) -> bytes:
    """PCM16LE mono (see ``download_merged_audio`` for the rate and ``sample_rate``)."""
    return download_merged_audio(
        uid, conversation_id, timestamps, fill_gaps, sample_rate, context=context
    ).pcm


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


# The backend's conversation-level functions (audio-file records, merge copies, deletion,
# the cached merged WAV) live in conversations.py, built on the functions above.
create_audio_files_from_chunks = conversations.create_audio_files_from_chunks
copy_audio_chunks_for_merge = conversations.copy_audio_chunks_for_merge
delete_conversation_audio = conversations.delete_conversation_audio
get_or_create_merged_audio = conversations.get_or_create_merged_audio
