"""A conversation's audio as the backend handles it: audio-file records, conversation
merges (copies), deletion, and the cached merged WAV behind a signed URL.

The backend's storage module has these functions; ``backend_hooks.storage`` re-exports them
under the same names:

- ``create_audio_files_from_chunks(uid, conversation_id)``: the conversation's chunks
  grouped into audio-file records, with durations from real sample counts.
- ``copy_audio_chunks_for_merge(uid, source_conversation_ids, target_conversation_id)``:
  server-side, create-only copies that keep every file name.
- ``delete_conversation_audio(uid, conversation_id)``: ``chunks/``, ``audio/`` and the
  ``merged/`` cache of one conversation.
- ``get_or_create_merged_audio(uid, conversation_id, audio_file_id, ...)``: the cached WAV
  at ``merged/{uid}/{conversation_id}/{audio_file_id}.wav``, rebuilt when its sources
  changed, and a v4 signed URL of it.

The grouping is pure (``chunk_span``, ``group_spans``, ``audio_file_record``); the rest is
thin glue over ``reader`` (the read engine: listing, merging, ``StorageContext``) and
``gcs`` (copy, delete, upload, sign). It imports the engine, never the ``storage`` facade.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backend_hooks.adapters import gcs, redis_store
from backend_hooks.contract import naming, redis_keys
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.errors import (
    InvalidInputError,
    ObjectConflictError,
    StorageError,
    UnsupportedFormatError,
)
from backend_hooks.contract.ids import validate_id
from backend_hooks.contract.naming import (
    conversation_prefixes as conversation_prefixes,  # its old home
)
from backend_hooks.read import reader
from backend_hooks.read.reader import StorageContext

log = logging.getLogger("backend_hooks.conversations")

PROVIDER = "gcp"
#: The namespace of audio-file ids (uuid5 of uid, conversation and first start).
AUDIO_FILE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://audiosync/audio-file")
#: Copies in flight at once.
COPY_THREADS = 8
#: Attempts of a cache upload that lost a race to another reader's (then theirs is used).
CACHE_ATTEMPTS = 3
#: Metadata of a cached merged WAV: what it was made from.
FINGERPRINT_KEY = "audiosync-source-fingerprint"
#: What a fingerprint covers, versioned: change it when the WAV's making changes. 2: a v0
#: record among a new object's v1 records is refused (a WAV cached before held its audio).
FINGERPRINT_VERSION = "audiosync merged wav 2"


# --- audio-file records (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class ChunkSpan:
    """Where one listed chunk object's audio lies on the timeline (Unix microseconds)."""

    timestamp: float  # the listing timestamp, as the backend stores it
    start_us: int
    end_us: int | None  # None: its duration is not known
    path: str


def chunk_span(item: dict[str, Any]) -> ChunkSpan:
    """Pure: the span of one ``list_audio_chunks`` item: from its start (the name's) for
    its ``duration``; a new object's name also says where its last chunk ends (truncated
    to the millisecond), which counts when the object holds a gap (then its samples are
    fewer than its span) and when its chunks overlap (a chunk stored twice, both
    backfilled into one object: then its samples are more than its span, which ends at
    the name's end; the sample count is kept when it ends within that millisecond)."""
    name = naming.parse_object_name(item["path"])
    duration = item["duration"]
    end = None if duration is None else name.start_us + round(duration * 1_000_000)
    named_end = name.end_us if name.is_new else None
    if named_end is not None and (end is None or not named_end <= end <= named_end + 999):
        end = named_end  # a gap, or chunks that overlap: the name's end
    return ChunkSpan(item["timestamp"], name.start_us, end, name.path)


def group_spans(spans: Iterable[ChunkSpan], gap_seconds: float) -> list[list[ChunkSpan]]:
    """Pure: chunks in order of start, grouped while the next one starts at most
    ``gap_seconds`` after the end of the group's audio so far (the latest end of its
    chunks, so a short duplicate never shortens it). A chunk of unknown duration ends
    where it starts: next to it the rule is start-to-start."""
    gap_us = round(gap_seconds * 1_000_000)
    groups: list[list[ChunkSpan]] = []
    end = 0
    for span in sorted(spans, key=lambda s: (s.start_us, s.path)):
        if not groups or span.start_us - end > gap_us:
            groups.append([])
            end = span.start_us
        groups[-1].append(span)
        end = max(end, span.start_us if span.end_us is None else span.end_us)
    return groups


def audio_file_id(uid: str, conversation_id: str, first_start_us: int) -> str:
    """Pure: a uuid of the user, the conversation and the first chunk's start (to the
    millisecond, as names have it): the same audio file gets the same id on every call, so
    a cached merged WAV keyed by it stays valid; later chunks joining the group keep it."""
    key = f"{uid}/{conversation_id}/{naming.format_time(first_start_us)}"
    return str(uuid.uuid5(AUDIO_FILE_NAMESPACE, key))


def audio_file_record(uid: str, conversation_id: str, group: Sequence[ChunkSpan]) -> dict[str, Any]:
    """Pure: the backend's ``audio_files`` entry of one group.

    ``started_at`` is a timezone-aware UTC ``datetime`` (what the backend stores its
    conversations' ``started_at`` as; Firestore keeps it as a timestamp, and an aware
    value cannot be misread in another zone). ``duration`` is the end of the group's
    audio minus its start in seconds, i.e. the length of its merged audio with gaps
    filled: from sample counts, never ``+5 s`` a chunk; objects stored twice (a legacy
    chunk and its copy in a new object) overlap and count once."""
    first = group[0].start_us
    end = max(first if s.end_us is None else s.end_us for s in group)
    return {
        "id": audio_file_id(uid, conversation_id, first),
        "uid": uid,
        "conversation_id": conversation_id,
        "chunk_timestamps": sorted({s.timestamp for s in group}),
        "provider": PROVIDER,
        "started_at": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first),
        "duration": (end - first) / 1_000_000,
    }


def _gap(gap_seconds: object, default: float) -> float:
    if gap_seconds is None:
        return default
    if isinstance(gap_seconds, bool) or not isinstance(gap_seconds, int | float):
        raise InvalidInputError(f"gap_seconds must be a number of seconds, got {gap_seconds!r}")
    if not math.isfinite(gap_seconds) or gap_seconds < 0:
        raise InvalidInputError(f"gap_seconds must be finite and >= 0, got {gap_seconds!r}")
    return float(gap_seconds)


def create_audio_files_from_chunks(
    uid: str,
    conversation_id: str,
    *,
    gap_seconds: float | None = None,
    sample_rate: int | None = None,
    context: StorageContext | None = None,
) -> list[dict[str, Any]]:
    """The conversation's audio-file records, oldest first (``[]`` without chunks).

    Each: ``id`` (``audio_file_id``), ``uid``, ``conversation_id``, ``chunk_timestamps``
    (the listing starts of its objects, ascending, each once), ``provider`` (``"gcp"``),
    ``started_at`` (UTC ``datetime`` of its first chunk's start) and ``duration``
    (seconds, ``audio_file_record``). Chunks join a file while the next starts within
    ``gap_seconds`` (default ``AUDIOSYNC_AUDIO_FILE_GAP_SECONDS``, 90) of the end of the
    file's audio so far (``group_spans``); durations are ``list_audio_chunks``'s, exact
    from sample counts (raw legacy PCM at ``sample_rate`` when given, else the inferred
    rate). A chunk whose duration is not known (a raw object whose rate cannot be told,
    an object that cannot be measured) is taken as ending where it starts, so it is
    grouped start-to-start and the file's duration may be short by its length: it is
    logged as a warning.
    """
    ctx = context or reader.default_context()
    gap = _gap(gap_seconds, ctx.settings.audio_file_gap_seconds)
    items = reader.list_audio_chunks(uid, conversation_id, sample_rate=sample_rate, context=ctx)
    spans = [chunk_span(item) for item in items]
    unknown = [s.path for s in spans if s.end_us is None]
    if unknown:
        log.warning(
            "conversation %s of user %s: %d chunk object(s) of unknown duration, grouped "
            "start-to-start; their audio files' durations may be short: %s",
            conversation_id,
            uid,
            len(unknown),
            ", ".join(unknown[:10]),
        )
    return [audio_file_record(uid, conversation_id, g) for g in group_spans(spans, gap)]


# --- merge copies ------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyReport:
    """What ``copy_audio_chunks_for_merge`` did, by destination path."""

    copied: tuple[str, ...]
    already_there: tuple[str, ...]
    #: names in the source prefixes that are not chunk objects: not copied (logged)
    left_out: tuple[str, ...] = ()


def _id_list(values: object, what: str) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | set | frozenset):
        raise InvalidInputError(f"{what} must be a list of ids, got {type(values).__name__}")
    return list(dict.fromkeys(validate_id(v, what) for v in values))


def copy_audio_chunks_for_merge(
    uid: str,
    source_conversation_ids: Sequence[str],
    target_conversation_id: str,
    *,
    context: StorageContext | None = None,
) -> CopyReport:
    """Copy every chunk object of each source conversation into the target's prefix.

    Server-side (``gcs.GcsBucket.copy_create_only``), each under its exact file name (the
    old code turned ``.opus.enc`` into ``.enc``; LEGACY_FORMATS.md) and path below the
    conversation's prefix (a chunk in a folder keeps it), create-only: a
    destination with the same bytes is ``already_there``, so running it twice copies
    nothing new; one with other bytes (two sources with one file name and different audio)
    is ``ObjectConflictError``; any failed copy (a source deleted between the listing and
    its copy) is ``StorageError``. All copies are tried, at most ``COPY_THREADS`` at once;
    then the first failure is raised with every failure named (what was copied stays:
    run it again once fixed). The target itself among the sources is skipped (its objects
    are already there); names that are not chunk objects are left out and logged.

    Nothing is copied into a conversation ``delete_conversation_audio`` has marked
    deleted (``InvalidInputError``); marked while the copies ran, they are deleted again
    and the same error raised; Redis silent: ``StorageError``, nothing left copied.

    Sealed objects still open after the copy: envelope v1 authenticates the uid (the same
    in both paths) and the record's header, never the conversation id; v0 authenticates
    nothing but the key (docs/FORMATS.md §3.2).
    """
    ctx = context or reader.default_context()
    validate_id(uid, "uid")
    target = validate_id(target_conversation_id, "target_conversation_id")
    sources = _id_list(source_conversation_ids, "source conversation id")
    if target in sources:
        log.info("copy for merge: target %s is among the sources; skipped", target)
        sources.remove(target)
    if ctx.conversation_deleted(uid, target, then="nothing was copied"):
        raise InvalidInputError(
            f"copy for merge into conversation {target} of user {uid}: it was deleted "
            "(delete_conversation_audio); nothing was copied into it"
        )
    target_prefix = naming.conversation_prefix(uid, target)
    jobs: list[tuple[gcs.ObjectVersion, str]] = []
    left_out: list[str] = []
    for source in sources:
        source_prefix = naming.conversation_prefix(uid, source)
        versions = ctx.bucket.list_versions(source_prefix)
        if not versions:
            log.warning(
                "copy for merge into %s of user %s: source %s has no objects", target, uid, source
            )
        for version in versions:
            try:
                naming.parse_object_name(version.name)
            except UnsupportedFormatError:
                left_out.append(version.name)
                continue
            # Its path below the prefix, folders too: the reader reads those as well.
            jobs.append((version, target_prefix + version.name[len(source_prefix) :]))
    if left_out:
        log.warning(
            "copy for merge into %s of user %s: %d object(s) that are not chunk objects are "
            "not copied: %s",
            target,
            uid,
            len(left_out),
            ", ".join(left_out[:10]),
        )

    clashes, repeats = same_destination(jobs)

    def one(index: int) -> gcs.CopyOutcome | StorageError:
        source, destination = jobs[index]
        if destination in clashes:
            return ObjectConflictError(clashes[destination])
        if index in repeats:
            return "already_there"  # the same bytes as another source's, copied once
        try:
            return ctx.bucket.copy_create_only(source, destination)
        except StorageError as exc:
            return exc

    with ThreadPoolExecutor(max(1, min(COPY_THREADS, len(jobs)))) as pool:
        outcomes = list(pool.map(one, range(len(jobs))))
    _undo_if_deleted(ctx, uid, target, [d for _, d in jobs])
    failures = [o for o in outcomes if isinstance(o, StorageError)]
    if failures:
        kind = next((f for f in failures if isinstance(f, ObjectConflictError)), failures[0])
        listed = "; ".join(str(f) for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise type(kind)(
            f"copy for merge into conversation {target} of user {uid}: {len(failures)} of "
            f"{len(jobs)} copies failed: {listed}{more}; the others are done, and a rerun "
            "copies only what is missing"
        ) from kind
    return CopyReport(
        copied=tuple(d for (_, d), o in zip(jobs, outcomes, strict=True) if o == "copied"),
        already_there=tuple(
            d for (_, d), o in zip(jobs, outcomes, strict=True) if o == "already_there"
        ),
        left_out=tuple(left_out),
    )


def same_destination(
    jobs: Sequence[tuple[gcs.ObjectVersion, str]],
) -> tuple[dict[str, str], set[int]]:
    """Pure: copies of one call that go to one destination (two sources holding one file
    name): those with other bytes than the first are clashes (destination -> why; none
    of them is copied, whatever GCS would let through: copies race in threads, and the
    emulator ignores the create-only precondition of a rewrite), those with the same
    bytes repeats (their indexes: copied once)."""
    first: dict[str, gcs.ObjectVersion] = {}
    clashes: dict[str, str] = {}
    repeats: set[int] = set()
    for index, (source, destination) in enumerate(jobs):
        kept = first.setdefault(destination, source)
        if kept is source:
            continue
        if kept.same_bytes(source):
            repeats.add(index)
        else:
            clashes[destination] = (
                f"copy to {destination}: its sources {kept.name} and {source.name} hold "
                "other bytes under one name; neither was copied: look at both"
            )
    return clashes, repeats


def _undo_if_deleted(
    ctx: StorageContext, uid: str, target: str, destinations: Sequence[str]
) -> None:
    """After the copies: if the target was marked deleted meanwhile, delete every
    destination and refuse. The delete sets its mark before it lists ``chunks/``, so
    either this sees the mark or the delete's listing sees the copies: nothing copied is
    left in a deleted conversation. Redis silent: deleted too, ``StorageError``."""
    try:
        deleted = ctx.conversation_deleted(uid, target, then="the copies were deleted again")
    except StorageError:
        _delete_all(ctx, destinations)
        raise
    if deleted:
        _delete_all(ctx, destinations)
        recheck_later(ctx, uid, target)
        raise InvalidInputError(
            f"copy for merge into conversation {target} of user {uid}: it was deleted "
            "(delete_conversation_audio) while the copies ran; they were deleted again"
        )


def _delete_all(ctx: StorageContext, names: Sequence[str]) -> None:
    if names:
        with ThreadPoolExecutor(min(COPY_THREADS, len(names))) as pool:
            list(pool.map(ctx.bucket.delete, names))


# --- deletion ----------------------------------------------------------------------------


def delete_conversation_audio(
    uid: str, conversation_id: str, *, context: StorageContext | None = None
) -> dict[str, int]:
    """Delete everything of one conversation: ``chunks/`` (every kind), ``audio/`` and the
    ``merged/`` cache; the objects deleted by this call, per prefix (``chunks``, ``audio``,
    ``merged``). Idempotent: a second call deletes nothing and returns zeros.

    First it marks the conversation deleted in Redis (``AUDIOSYNC_REDIS_URL``; the mark
    lasts ``AUDIOSYNC_DELETED_MARK_SECONDS``): the fleet drops the conversation's audio it
    still holds (a live session, a pusher's spool, a replay) instead of uploading it, and
    deletes an object a flush stored after this listing (workers/flush.py), and a reader
    of ``get_or_create_merged_audio`` deletes a WAV it uploaded after it. Then it queues a
    re-check: ``AUDIOSYNC_DELETE_RECHECK_SECONDS`` later the fleet lists these prefixes
    again and deletes what it finds (an upload attempt its client gave up on may land
    after this listing: workers/deletions.py). If Redis cannot be reached,
    ``StorageError`` and nothing is deleted: call again."""
    ctx = context or reader.default_context()
    prefixes = conversation_prefixes(uid, conversation_id)
    try:
        redis_store.mark_conversation_deleted(
            ctx.redis_client(),
            uid,
            conversation_id,
            ttl_seconds=ctx.settings.deleted_mark_seconds,
        )
        schedule_recheck(ctx, uid, conversation_id)
    except redis_store.REDIS_ERRORS as exc:
        raise StorageError(
            f"conversation {conversation_id} of user {uid}: could not mark it deleted and "
            f"queue its re-check in Redis ({exc}), so the fleet could still upload audio "
            "into it; nothing was deleted: call delete_conversation_audio again once Redis "
            "answers"
        ) from exc
    # The cache first: a reader racing this never finds a WAV of deleted chunks fresh.
    order = ("merged", "chunks", "audio")
    return {kind: ctx.bucket.delete_prefix(prefixes[kind]) for kind in order}


def schedule_recheck(ctx: StorageContext, uid: str, conversation_id: str) -> None:
    """Have the fleet list the deleted conversation's prefixes again, and delete what it
    finds, ``AUDIOSYNC_DELETE_RECHECK_SECONDS`` from now (in one of its shards: the count
    ``AUDIOSYNC_DUE_SHARDS`` is registered, as a pusher's is, so the fleet drains it).
    Raises what Redis raises."""
    client = ctx.redis_client()
    shards = ctx.settings.due_shards
    redis_store.register_shard_count(client, shards)
    redis_store.schedule_deletion_recheck(
        client,
        redis_keys.recheck_shard(uid, conversation_id, shards),
        uid,
        conversation_id,
        after_seconds=ctx.settings.delete_recheck_seconds,
    )


def recheck_later(ctx: StorageContext, uid: str, conversation_id: str) -> None:
    """After deleting what this call just wrote into a deleted conversation: an attempt of
    that write its client gave up on may still land, so the fleet lists it again later.
    ``StorageError`` if Redis cannot take the re-check."""
    try:
        schedule_recheck(ctx, uid, conversation_id)
    except redis_store.REDIS_ERRORS as exc:
        raise StorageError(
            f"conversation {conversation_id} of user {uid} was deleted while this call wrote "
            f"into it; what it wrote was deleted, but the re-check that would find a late "
            f"retry of it could not be queued in Redis ({exc}): call delete_conversation_audio "
            "again"
        ) from exc


# --- the cached merged WAV ---------------------------------------------------------------


@dataclass(frozen=True)
class MergedAudioFile:
    """A cached merged WAV and a signed URL of it."""

    url: str  # v4 signed GET URL
    path: str  # merged/{uid}/{conversation_id}/{merged_filename(...)}
    sample_rate: int
    duration: float  # seconds of audio in it
    created: bool  # made by this call (absent or stale), else the cached one was fresh


def merged_filename(audio_file_id: str, fill_gaps: bool, sample_rate: int | None) -> str:
    """Pure: the cached WAV's file name of one variant of an audio file. The default one
    (gaps filled, the recording's rate) is ``{audio_file_id}.wav``, the backend's name;
    every other variant has its own object, ``{audio_file_id}~{rate|rec}~{filled|unfilled}.wav``
    (``~`` is in no id), because a signed URL names a path, not a generation: sharing one
    path, a client's URL of the filled WAV would serve the unfilled one another reader
    made since, and the two would rebuild it for each other on every call."""
    if fill_gaps and sample_rate is None:
        return f"{audio_file_id}.wav"
    gaps = "filled" if fill_gaps else "unfilled"
    return f"{audio_file_id}~{sample_rate or 'rec'}~{gaps}.wav"


def source_fingerprint(
    sources: Iterable[gcs.ObjectVersion], *, sample_rate: int | None, fill_gaps: bool
) -> str:
    """Pure: what a merged WAV is made from: every source object's name, size and
    generation (a new generation at every write), the asked rate and gap filling. A
    different fingerprint means the cached WAV is stale."""
    lines = [FINGERPRINT_VERSION, f"rate={sample_rate or 'recording'}", f"fill_gaps={fill_gaps}"]
    lines += sorted(f"{s.name}\t{s.size}\t{s.generation}" for s in sources)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _selected(
    versions: Iterable[gcs.ObjectVersion], timestamps: Iterable[float]
) -> list[gcs.ObjectVersion]:
    """The chunk objects whose listing start is one of ``timestamps`` (to the millisecond,
    as ``download_audio_chunks_and_merge`` selects them)."""
    wanted = {round(t * 1000) for t in timestamps}
    out = []
    for version in versions:
        try:
            name = naming.parse_object_name(version.name)
        except UnsupportedFormatError:
            continue
        if name.start_us // 1000 in wanted:
            out.append(version)
    return out


def _timestamps(values: object) -> list[float]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInputError(
            f"chunk_timestamps must be a list of seconds, got {type(values).__name__}"
        )
    out = []
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and value >= 0)
        ):
            raise InvalidInputError(f"chunk_timestamps holds {value!r}, not a Unix time")
        out.append(float(value))
    if not out:
        raise InvalidInputError("chunk_timestamps is empty: name at least one chunk")
    return out


def get_or_create_merged_audio(
    uid: str,
    conversation_id: str,
    audio_file_id: str,
    chunk_timestamps: Sequence[float] | None = None,
    fill_gaps: bool = True,
    sample_rate: int | None = None,
    *,
    expiration: timedelta = timedelta(hours=1),
    signing_credentials: Any = None,
    context: StorageContext | None = None,
) -> MergedAudioFile:
    """The merged WAV of one audio file, cached at
    ``merged/{uid}/{conversation_id}/{audio_file_id}.wav`` (other variants of rate and
    gap filling: ``merged_filename``), and a v4 signed GET URL of it
    valid for ``expiration`` (a ``timedelta`` of 1 s to 7 days; ``InvalidInputError``
    before anything is made otherwise).

    ``chunk_timestamps``: the audio file's (its record's ``chunk_timestamps``); None: the
    ones of the audio file with this id among ``create_audio_files_from_chunks`` now
    (``InvalidInputError`` when there is none), which measures every object's duration
    (about one GCS read per legacy Opus object): pass them, and a fresh cache costs two
    requests (the listing, the cached object's metadata) and no read of audio. The WAV is
    PCM16 mono at the recording's rate, or at ``sample_rate`` (as
    ``download_merged_audio``); gaps filled with silence when ``fill_gaps``.

    Fresh or stale: the cached object's metadata holds ``source_fingerprint`` of the
    source objects (names, sizes, generations), the asked rate and ``fill_gaps``; when it
    differs from the objects listed now (a chunk added by a copy or a flush, one deleted
    or rewritten), or there is no cached object, the WAV is made again: streamed into a
    temporary file (``reader.write_merged_wav``: memory is a few objects, never the
    whole audio), then uploaded from it in chunks on a generation precondition (0 when absent,
    the stale object's generation otherwise), so two readers racing never mix their
    bytes: the loser finds the winner's object and uses it when its fingerprint matches.
    ``created`` says whether this call made it.

    ``signing_credentials``: credentials that can sign (a service account's, e.g.
    ``google.oauth2.service_account.Credentials``); None: the storage client's own
    (``ConfigError`` when they cannot sign, as the emulator's anonymous ones).
    """
    ctx = context or reader.default_context()
    prefixes = conversation_prefixes(uid, conversation_id)
    file_id = validate_id(audio_file_id, "audio_file_id")
    if sample_rate is not None and sample_rate not in SUPPORTED_RATES:
        raise InvalidInputError(
            f"sample_rate {sample_rate!r} is not one of {list(SUPPORTED_RATES)} Hz"
        )
    if not isinstance(fill_gaps, bool):
        raise InvalidInputError(f"fill_gaps must be True or False, got {fill_gaps!r}")
    gcs.checked_expiration(expiration)  # before the WAV is made, not after
    if chunk_timestamps is None:
        files = create_audio_files_from_chunks(
            uid, conversation_id, sample_rate=sample_rate, context=ctx
        )
        match = [f for f in files if f["id"] == file_id]
        if not match:
            raise InvalidInputError(
                f"conversation {conversation_id} of user {uid} has no audio file {file_id} "
                f"now (it has {len(files)}); pass its chunk_timestamps"
            )
        timestamps = list(match[0]["chunk_timestamps"])
    else:
        timestamps = _timestamps(chunk_timestamps)
    path = prefixes["merged"] + merged_filename(file_id, fill_gaps, sample_rate)
    ctx.bucket.signer(signing_credentials, path)  # ConfigError before the WAV is made
    for _ in range(CACHE_ATTEMPTS):
        sources = _selected(ctx.bucket.list_versions(prefixes["chunks"]), timestamps)
        if not sources:
            raise InvalidInputError(
                f"conversation {conversation_id} of user {uid} has no chunk object at "
                f"chunk_timestamps {timestamps[:5]}"
            )
        fingerprint = source_fingerprint(sources, sample_rate=sample_rate, fill_gaps=fill_gaps)
        cached = ctx.bucket.stored(path)
        if cached is not None and (cached.metadata or {}).get(FINGERPRINT_KEY) == fingerprint:
            return _signed(ctx, path, cached.metadata, False, expiration, signing_credentials)
        with tempfile.TemporaryFile(prefix="audiosync-wav-") as spool:
            # Streamed to the file (memory: a few objects), never merged whole in memory.
            stream = reader.write_merged_wav(
                uid, conversation_id, spool, timestamps, fill_gaps, sample_rate, context=ctx
            )
            size = spool.seek(0, 2)
            spool.seek(0)
            metadata = {
                FINGERPRINT_KEY: fingerprint,
                "audiosync-rate": str(stream.sample_rate),
                "audiosync-samples": str(stream.sample_count),
                "audiosync-sources": str(len(sources)),
            }
            if ctx.bucket.upload_file_if_generation(
                path,
                spool,
                size=size,
                if_generation_match=0 if cached is None else int(cached.generation),
                content_type="audio/wav",
                metadata=metadata,
            ):
                _unless_deleted(ctx, uid, conversation_id, path)
                return _signed(ctx, path, metadata, True, expiration, signing_credentials)
        log.info("%s: another reader wrote it first; looking again", path)
    raise StorageError(
        f"{path}: {CACHE_ATTEMPTS} attempts to write the merged WAV each lost to another "
        "writer with other sources (the conversation keeps changing); retry later"
    )


def _unless_deleted(ctx: StorageContext, uid: str, conversation_id: str, path: str) -> None:
    """After the WAV's upload: if ``delete_conversation_audio`` marked the conversation
    meanwhile, delete the WAV and refuse. The delete sets its mark before it lists
    ``merged/``, so either this sees the mark or the delete's listing sees the WAV: a
    deleted conversation's audio never stays behind as a cached WAV. Redis silent: the
    WAV is deleted too (``StorageError``: retry), as the fleet uploads nothing then."""
    try:
        deleted = ctx.conversation_deleted(
            uid, conversation_id, then=f"{path}, just made, was removed"
        )
    except StorageError:
        ctx.bucket.delete(path)
        raise
    if deleted:
        ctx.bucket.delete(path)
        recheck_later(ctx, uid, conversation_id)
        raise InvalidInputError(
            f"conversation {conversation_id} of user {uid} was deleted "
            "(delete_conversation_audio) while its merged WAV was made; the WAV was removed"
        )


def _signed(
    ctx: StorageContext,
    path: str,
    metadata: dict[str, str] | None,
    created: bool,
    expiration: timedelta,
    credentials: Any,
) -> MergedAudioFile:
    meta = metadata or {}
    rate = int(meta.get("audiosync-rate", "0"))
    samples = int(meta.get("audiosync-samples", "0"))
    url = ctx.bucket.signed_url(
        path,
        expiration=expiration,
        credentials=credentials,
        api_access_endpoint=ctx.settings.storage_emulator_host,
    )
    return MergedAudioFile(
        url=url,
        path=path,
        sample_rate=rate,
        duration=samples / rate if rate else 0.0,
        created=created,
    )
