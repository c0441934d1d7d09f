"""The read engine: lists, merges and deletes the chunk objects of a conversation.

``backend_hooks.storage`` is the backend's facade over it: the same functions under the
backend's names, with ``conversations.py``'s beside them. This module imports neither.

It reads the new 60 s objects (``.opus``, ``.opus.enc``), the legacy single-chunk Opus
objects and the legacy raw-PCM objects (``.bin``, ``.enc``, ``.batch.*``) next to them. Raw
PCM does not carry its sample rate: it is the caller's ``sample_rate`` when given, otherwise
inferred from the objects' names and lengths (``legacy_pcm.infer_sample_rate``,
docs/FORMATS.md §6), and ``SampleRateUnknownError`` when it cannot be told. Names in the
prefix that are not chunk objects are logged as a warning and listed by
``list_unknown_objects``, never fatal.

One object is read (downloaded, opened, decoded) by ``object_reader.py``; this module
lists, infers the rate, streams the objects through ``merge.TimelineMerger`` and falls back
or skips. Chunks missing from a session (a dropped record or object) are reported in
``MergedAudio.missing`` and logged as a warning. ``StorageContext`` (the settings, the
bucket, the keys and Redis on first use) is what every read-side call takes, the
conversation-level ones of ``conversations.py`` too.
"""

from __future__ import annotations

import fcntl
import functools
import io
import logging
import math
import os
import struct
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from backend_hooks.adapters import gcs, redis_store
from backend_hooks.contract import container, envelope, legacy_pcm, naming
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.errors import (
    FormatError,
    InvalidInputError,
    ObjectGoneError,
    SampleRateUnknownError,
    StorageError,
    UnsupportedFormatError,
)
from backend_hooks.contract.ids import validate_id
from backend_hooks.contract.settings import Settings, shown_url
from backend_hooks.read import durations, object_reader, wav
from backend_hooks.read.merge import (
    MergedAudio,
    MissingChunks,
    ObjectSpan,
    SkippedObject,
    TimelineMerger,
    check_gap_bound,
    estimated_pcm_bytes,
)
from backend_hooks.read.pcm_buffer import PcmBuffer

#: The logger keeps the name it had when this engine was ``storage.py`` (the backend's
#: logging configuration and its tests name it): moving the code changed no log record.
log = logging.getLogger("backend_hooks.storage")
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

    def conversation_deleted(self, uid: str, conversation_id: str, *, then: str) -> bool:
        """Whether ``delete_conversation_audio`` marked the conversation deleted (the mark
        the flush fleet honours too); when Redis cannot say, ``StorageError`` saying
        ``then`` (what the caller did, or did not do, about it)."""
        try:
            return redis_store.conversation_deleted(self.redis_client(), uid, conversation_id)
        except redis_store.REDIS_ERRORS as exc:
            raise StorageError(
                f"Redis at {shown_url(self.settings.redis_url)} cannot say "
                f"whether conversation {conversation_id} of user {uid} was deleted ({exc}); "
                f"{then}: retry once Redis answers"
            ) from exc

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


def checked_rate(sample_rate: int | None) -> int | None:
    if sample_rate is not None and (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, int)
        or sample_rate not in SUPPORTED_RATES
    ):
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
        except (FormatError, StorageError) as exc:  # e.g. gone since the listing
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
    rate = checked_rate(sample_rate)
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
    if isinstance(timestamps, (str, bytes)) or not isinstance(timestamps, Iterable):
        raise InvalidInputError(
            f"timestamps must be a list of listing timestamps (seconds), got {timestamps!r}"
        )
    wanted = set()
    for t in timestamps:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < math.inf:
            raise InvalidInputError(
                f"timestamps holds {t!r}: each must be a listing timestamp, seconds as a "
                "finite number >= 0 (list_audio_chunks' 'timestamp')"
            )
        wanted.add(round(t * 1000))
    return [n for n in names if n.start_us // 1000 in wanted]


def _output_rate(rates: set[int], sample_rate: int | None) -> int | None:
    """The one rate a merge is read at: ``sample_rate`` when given, else the highest of
    the rates the listing tells (new objects' metadata, 16 kHz legacy Opus, the raw
    objects' given or inferred rate), so that no audio loses bandwidth; ``None`` when it
    tells none (the first audio read decides). Audio at another rate is resampled
    (``_at_output_rate``)."""
    if sample_rate is not None:
        return sample_rate
    return max(rates, default=None)


def _at_output_rate(segments: list[container.Segment], rate: int | None) -> list[container.Segment]:
    """``segments`` at the merge's ``rate`` (``None``: not decided yet, the first
    segment's): each segment at another rate resampled with soxr (backend_hooks/read/resample.py)
    to exactly ``resampled_length`` samples, so it keeps its start and its end within a
    sample. Each segment (a chunk, ~5 s) is resampled on its own: its first and last
    milliseconds are filtered against silence (docs/FORMATS.md §6)."""
    if not segments:
        return segments
    target = segments[0].sample_rate if rate is None else rate
    if all(s.sample_rate == target for s in segments):
        return segments
    from backend_hooks.read import resample  # numpy and soxr: only a reader that resamples

    return [
        s
        if s.sample_rate == target
        else container.Segment(
            start_us=s.start_us,
            sample_rate=target,
            pcm=resample.resample_pcm16(s.pcm, s.sample_rate, target),
            key=s.key,
        )
        for s in segments
    ]


#: Objects (start groups) in flight at most, the one being merged included, each read on a
#: thread of its own: downloads overlap and libopus decodes on both cores (ctypes releases
#: the GIL), while memory stays a few objects (a 60 s 16 kHz object is about 2 MB decoded),
#: whatever the conversation's length.
READ_AHEAD = 4
#: A legacy Opus object's audio before it is read (LEGACY_FORMATS.md: one ~5 s chunk).
_LEGACY_OPUS_GUESS_US = 5_000_000
#: The longest audio an Opus object of ``n`` bytes can hold: each packet takes at least a
#: 2-byte length and a 1-byte TOC and decodes to at most 120 ms.
_MAX_US_PER_BYTE = 120_000 // 3
_V0_RECORD_BYTES = 32


def _span(
    name: naming.ObjectName, stored: gcs.StoredObject, raw_samples: int | None, raw_rate: int | None
) -> ObjectSpan:
    """Where the listing alone says an object's audio lies (``merge.ObjectSpan``)."""
    start = name.start_us
    if legacy_pcm.is_raw(name):
        if raw_samples is None:  # not measured: the bytes, records' framing not subtracted
            raw_samples = max(stored.size - (_V0_RECORD_BYTES if name.sealed else 0), 0) // 2
        end = start + raw_samples * 1_000_000 // (raw_rate or container.LEGACY_RATE) + 1
        return ObjectSpan(name.path, start, end, end)
    bound = start + stored.size * _MAX_US_PER_BYTE
    if name.is_new and name.end_us is not None and name.end_us >= start:
        return ObjectSpan(name.path, start, name.end_us, min(name.end_us + 1000, bound))
    # A legacy Opus object, or a new one whose name ends before it starts (that end says
    # nothing: "certainly not beyond" it would be in the past, refusing the gap after it).
    return ObjectSpan(name.path, start, start + _LEGACY_OPUS_GUESS_US, bound)


class MergedAudioStream:
    """A conversation's merged audio as PCM16LE blocks (``bytes``), read a few objects
    ahead (``READ_AHEAD``): memory is a few objects, whatever the length.

    ``sample_rate`` and ``start_us`` are known when ``iter_merged_audio`` returns (it
    reads until the first block); ``missing``, ``skipped`` and ``sample_count`` are
    complete once the blocks are exhausted. Errors (a broken object without
    ``skip_broken``, ``GapTooLongError``) are raised by the iteration, where they are
    met; ``close()`` (or ``with``) stops the reads of a stream left unfinished.
    """

    def __init__(
        self,
        ctx: StorageContext,
        uid: str,
        conversation: str,
        groups: list[list[naming.ObjectName]],
        merger: TimelineMerger,
        *,
        raw_rate: int | None,
        default_rate: int,
        skip_broken: bool,
        size_hint: int,
    ) -> None:
        self._ctx = ctx
        self._uid = uid
        self._conversation = conversation
        self._groups = groups
        self._merger = merger
        self._raw_rate = raw_rate
        self._default_rate = default_rate
        self._skip_broken = skip_broken
        self._suspects: list[MissingChunks] = []
        #: about how many PCM bytes the stream yields (from the listing)
        self.size_hint = size_hint
        #: chunks each session lacks (complete after iteration)
        self.missing: tuple[MissingChunks, ...] = ()
        self._skipped: list[SkippedObject] = []
        #: objects gone since the listing and skipped with nothing in their place
        #: (``skip_broken``): ``download_merged_audio`` reads again from a new listing
        self.gone: list[ObjectGoneError] = []
        self._blocks = self._run()
        self._first: bytes | None = next(self._blocks, None)

    @property
    def sample_rate(self) -> int:
        return self._merger.sample_rate or self._default_rate

    @property
    def start_us(self) -> int | None:
        """Time of the first sample; None when there is no audio."""
        return self._merger.start_us

    @property
    def skipped(self) -> tuple[SkippedObject, ...]:
        """Objects not used so far: failed, and replaced by another of their start or
        skipped (``skip_broken``); all of them after iteration."""
        return tuple(self._skipped)

    @property
    def sample_count(self) -> int:
        """Samples yielded so far (all of them, after iteration)."""
        return self._merger.samples_out

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return next(self._blocks)

    def close(self) -> None:
        """Stop reading (pending reads are cancelled, running ones waited for)."""
        self._first = None
        self._blocks.close()

    def __enter__(self) -> MergedAudioStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self) -> Generator[bytes, None, None]:
        merger = self._merger
        inflight: deque[tuple[list[naming.ObjectName], Future[object_reader.GroupRead]]] = deque()
        groups = iter(self._groups)
        pool = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="audiosync-read")
        try:
            while True:
                while len(inflight) < READ_AHEAD and (group := next(groups, None)):
                    read = pool.submit(
                        object_reader.read_group,
                        self._ctx.bucket,
                        self._ctx.keys,
                        self._uid,
                        group,
                        self._raw_rate,
                        self._skip_broken,
                    )
                    inflight.append((group, read))
                if not inflight:
                    break
                _, future = inflight.popleft()
                self._take(future.result(), inflight[0][0][0].start_us if inflight else None)
                if inflight:
                    yield from merger.advance(inflight[0][0][0].start_us)
            yield from merger.finish()
        finally:
            for _, future in inflight:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        self.missing = merger.missing(self._suspects)
        for hole in self.missing:
            log.warning(
                "%s is missing audio: %s (a dropped record or object, or a quarantined chunk)",
                self._conversation,
                hole.describe(),
            )

    def _take(self, result: object_reader.GroupRead, next_start: int | None) -> None:
        """Feed what one start's objects hold to the merger: fall back to the candidates
        that read when others failed, skip (``skip_broken``) or raise when all failed or
        the candidates cannot stand in for all of a failed one (``_raise_uncovered``;
        ``next_start``: the next object's start, None when there is none)."""
        if result.failures:
            used = tuple(r.name.path for r in result.reads)
            if used and not self._skip_broken:
                _raise_uncovered(result, next_start)
            if not used and not self._skip_broken:
                _, first = result.failures[0]
                if len(result.failures) == 1:
                    raise first
                others = "; ".join(f"{e}" for _, e in result.failures[1:])
                raise type(first)(
                    f"{first}; the other object(s) of the same start failed too: {others}"
                ) from first
            for name, exc in result.failures:
                self._skipped.append(SkippedObject(name.path, str(exc), used))
                if isinstance(exc, ObjectGoneError) and not used:
                    self.gone.append(exc)
                if used:
                    log.warning("%s; read %s in its place", exc, ", ".join(used))
                else:
                    log.warning("%s; skipped (skip_broken): its audio is a gap", exc)
        whole = [r for r in result.reads if not r.broken]
        for read in result.reads:
            if read.broken and whole:  # a candidate of its start read whole: use that
                used = tuple(r.name.path for r in whole)
                self._skipped.append(SkippedObject(read.name.path, read.broken[0], used))
                log.warning("%s; read %s in its place", read.broken[0], ", ".join(used))
                continue
            for why in read.broken:  # skip_broken: records left out, the rest read
                self._skipped.append(SkippedObject(read.name.path, why))
                log.warning("%s (skip_broken)", why)
            segments = _at_output_rate(read.segments, self._merger.sample_rate)
            self._merger.add(segments, read.name.path)
            self._suspects.extend(read.suspects)


def _raise_uncovered(result: object_reader.GroupRead, next_start: int | None) -> None:
    """A failed object whose name says its audio goes on past what the objects of its
    start that read hold (a new object of several chunks beside a legacy copy of its first
    one; a batch beside a copy of its first chunk), with no other object starting before
    its end (``next_start``) that could hold the rest, is not replaced by them: the strict
    read raises its error rather than leave the rest a silent gap. When later objects
    start inside it (a backfilled object beside all its sources), they are taken to hold
    the rest: what they do not hold cannot be told from a failed object."""
    reach = max(
        (
            s.start_us + s.sample_count * 1_000_000 // s.sample_rate
            for read in result.reads
            for s in read.segments
        ),
        default=None,
    )
    for name, exc in result.failures:
        if name.end_us is None:
            continue  # one legacy chunk: its stand-ins (X.bin, X.enc) are that chunk
        if next_start is not None and next_start < name.end_us:
            continue  # later objects start inside it: they may hold the rest
        # A new name's end is truncated to the ms; a batch's is its last chunk's start.
        covered = reach is not None and (
            reach + 1000 > name.end_us if name.is_new else reach > name.end_us
        )
        if not covered:
            held = "nothing" if reach is None else f"audio only to {reach} us"
            raise type(exc)(
                f"{exc}; the object(s) of the same start that read "
                f"({', '.join(r.name.path for r in result.reads)}) hold its {held}, its name "
                f"says it goes on to {name.end_us} us: read with skip_broken=True to read "
                "around it"
            ) from exc


def _groups(names: list[naming.ObjectName]) -> list[list[naming.ObjectName]]:
    """Names (sorted by start) grouped by start millisecond: candidates for one audio."""
    out: list[list[naming.ObjectName]] = []
    for name in names:
        if out and out[-1][0].start_us // 1000 == name.start_us // 1000:
            out[-1].append(name)
        else:
            out.append([name])
    return out


def iter_merged_audio(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    sample_rate: int | None = None,
    *,
    skip_broken: bool = False,
    context: StorageContext | None = None,
) -> MergedAudioStream:
    """The conversation's audio as a stream of PCM16LE blocks at one rate, with that rate
    (``MergedAudioStream``): the same audio as ``download_merged_audio``, never held whole.

    The rate is the recording's own: new and Opus objects carry theirs; legacy raw PCM is
    at ``sample_rate`` when the caller gives it, otherwise at the rate its names and
    lengths tell (docs/FORMATS.md §6; inferred up front from sizes and record framing,
    no full download), ``SampleRateUnknownError`` naming the conversation when they do
    not. The output is at ``sample_rate`` when given, else at the recording's own rate,
    and a conversation recorded at several rates comes out at the highest of them: audio
    at another rate is resampled with soxr, keeping its place on the timeline.

    Objects with the same start (to the millisecond) are candidates for the same audio
    (``X.bin`` and ``X.enc``, a legacy object and a new one): when one fails to download,
    open, parse or decode and another reads, the others are used and the failed one is
    logged and listed in ``skipped`` with what replaced it, as far as the others reach (a
    failed object whose name ends past their audio, no other object starting before that
    end, raises unless ``skip_broken``: they do not replace it). When all fail, the first
    one's typed error (naming the object and the record) is raised; with
    ``skip_broken=True`` they are listed in ``skipped`` and their audio is a gap like any
    other. ``ConfigError`` (sealed objects and no secret) is never skipped.

    With ``fill_gaps``, a gap longer than ``AUDIOSYNC_MAX_GAP_FILL_SECONDS`` raises
    ``GapTooLongError`` naming the objects on either side: before any download when the
    listing shows it, else when the stream reaches it. Refused rather than capped: a
    capped gap would silently place everything after it at the wrong time.
    """
    ctx = context or default_context()
    rate = checked_rate(sample_rate)
    conversation = _conversation(uid, conversation_id)
    objects = _objects(ctx, uid, conversation_id)
    wanted = _selected([n for n, _ in objects], timestamps)
    chosen = {n.path for n in wanted}
    pairs = [(n, stored) for n, stored in objects if n.path in chosen]
    raw_rate, raw_samples = rate, {}
    if any(legacy_pcm.is_raw(n) for n, _ in pairs):
        raws, _ = _raw_objects(ctx, objects, {}) if rate is None else ([], {})
        if rate is None:
            raw_rate = legacy_pcm.infer_sample_rate(raws, conversation=conversation)
        raw_samples = {r.name.path: r.sample_count for r in raws}
    listed = {
        raw_rate if legacy_pcm.is_raw(n) else _metadata_rate(n, stored.metadata)
        for n, stored in pairs
    }
    out_rate = _output_rate({r for r in listed if r is not None}, sample_rate)
    spans = [_span(n, stored, raw_samples.get(n.path), raw_rate) for n, stored in pairs]
    max_gap = ctx.settings.max_gap_fill_seconds
    if fill_gaps:
        check_gap_bound(spans, max_gap)
    default_rate = out_rate or container.LEGACY_RATE
    return MergedAudioStream(
        ctx,
        uid,
        conversation,
        _groups(wanted),
        TimelineMerger(out_rate, fill_gaps=fill_gaps, max_gap_seconds=max_gap),
        raw_rate=raw_rate,
        default_rate=default_rate,
        skip_broken=skip_broken,
        size_hint=estimated_pcm_bytes(spans, default_rate, fill_gaps),
    )


def download_merged_audio(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    sample_rate: int | None = None,
    *,
    skip_broken: bool = False,
    context: StorageContext | None = None,
) -> MergedAudio:
    """The conversation's audio as PCM16LE mono at one rate, with that rate: the blocks
    of ``iter_merged_audio`` (every rule and error is its) written into one ``bytes``
    object sized from the listing, filled in place (backend_hooks/read/pcm_buffer.py) and
    handed out without a copy (peak memory about the output's size, docs/BENCHMARKS.md
    "Read").

    ``missing`` lists the chunks each session lacks (a dropped record or object, or a
    quarantined chunk): they are logged as a warning and, like any gap, filled with zeros
    when ``fill_gaps``. With ``timestamps`` selecting objects that are not neighbours,
    the chunks of the objects left out between them are listed too. ``skipped`` lists the
    objects not used (replaced by another of their start, or skipped with
    ``skip_broken``), each with its path and why.

    An object the listing named that is gone when it is downloaded (``ObjectGoneError``:
    a backfill ``--delete`` or a delete finished meanwhile, its audio now elsewhere or
    deleted) makes the merge start again from a new listing, up to ``READ_ATTEMPTS``
    times in all; then the error is raised.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return _merged_once(
                uid, conversation_id, timestamps, fill_gaps, sample_rate, skip_broken, context
            )
        except ObjectGoneError as exc:
            if attempt == READ_ATTEMPTS:
                raise
            log.info("%s; reading the conversation again from a new listing", exc)
    raise AssertionError("unreachable")


#: Merges of one ``download_merged_audio`` call at most: objects deleted between its
#: listing and its downloads make it list again (a conversation being compacted).
READ_ATTEMPTS = 3


def _merged_once(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None,
    fill_gaps: bool,
    sample_rate: int | None,
    skip_broken: bool,
    context: StorageContext | None,
) -> MergedAudio:
    with iter_merged_audio(
        uid,
        conversation_id,
        timestamps,
        fill_gaps,
        sample_rate,
        skip_broken=skip_broken,
        context=context,
    ) as stream:
        with PcmBuffer(stream.size_hint) as out:  # past the estimate, it grows
            for block in stream:
                out.write(block)
            pcm = out.finish()
        if stream.gone:  # skip_broken read around them: their audio may be elsewhere now
            raise stream.gone[0]
        return MergedAudio(
            pcm=pcm,
            sample_rate=stream.sample_rate,
            start_us=stream.start_us,
            missing=stream.missing,
            skipped=stream.skipped,
        )


def download_audio_chunks_and_merge(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    sample_rate: int | None = None,
    *,
    skip_broken: bool = False,
    context: StorageContext | None = None,
) -> bytes:
    """PCM16LE mono (see ``download_merged_audio`` for the rate, ``sample_rate`` and
    ``skip_broken``): one ``bytes`` object filled in place, handed out without a copy."""
    return download_merged_audio(
        uid,
        conversation_id,
        timestamps,
        fill_gaps,
        sample_rate,
        skip_broken=skip_broken,
        context=context,
    ).pcm


class _BinaryWriter(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write_merged_wav(
    uid: str,
    conversation_id: str,
    fileobj: _BinaryWriter,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    sample_rate: int | None = None,
    *,
    skip_broken: bool = False,
    context: StorageContext | None = None,
) -> MergedAudioStream:
    """Write the conversation's audio to ``fileobj`` as a WAV (PCM16LE mono at the rate
    of ``iter_merged_audio``, whose rules and errors these are), streaming: memory is a
    few objects. A seekable file gets its sizes patched at the end; a non-seekable one,
    or one open for appending (a seek there does not move the writes), gets the "length
    unknown" sizes ``0xFFFFFFFF`` (``backend_hooks/read/wav.py``), which
    ffmpeg, sox and Python's ``wave`` read to the end. Audio longer than a WAV can state
    (4 GiB of PCM: 37 h at 16 kHz) raises ``UnsupportedFormatError`` when it gets there.
    Returns the exhausted stream: ``sample_rate``, ``start_us``, ``sample_count``,
    ``missing``, ``skipped``. On an error the file holds what was written before it."""
    with iter_merged_audio(
        uid,
        conversation_id,
        timestamps,
        fill_gaps,
        sample_rate,
        skip_broken=skip_broken,
        context=context,
    ) as stream:
        seekable = _patchable(fileobj)
        begin = fileobj.tell() if seekable else 0  # type: ignore[attr-defined]
        _write_all(fileobj, wav.header(stream.sample_rate, 0 if seekable else None))
        written = 0
        for block in stream:
            written += len(block)
            if written > wav.MAX_DATA_BYTES:
                raise UnsupportedFormatError(
                    f"{_conversation(uid, conversation_id)}: its audio is longer than a WAV "
                    f"can hold ({wav.MAX_DATA_BYTES} bytes of PCM); read it with "
                    "iter_merged_audio, or a part of it with timestamps="
                )
            _write_all(fileobj, block)
        if seekable:
            end = fileobj.tell()  # type: ignore[attr-defined]
            riff, data = wav.size_fields(written)
            fileobj.seek(begin + wav.RIFF_SIZE_OFFSET)  # type: ignore[attr-defined]
            _write_all(fileobj, struct.pack("<I", riff))
            fileobj.seek(begin + wav.DATA_SIZE_OFFSET)  # type: ignore[attr-defined]
            _write_all(fileobj, struct.pack("<I", data))
            fileobj.seek(end)  # type: ignore[attr-defined]
    return stream


def _write_all(fileobj: _BinaryWriter, data: bytes) -> None:
    """All of ``data``: a raw (unbuffered) file, socket or pipe may take part of a write
    and return how much (``RawIOBase.write``); the rest is written again. A writer that
    returns something else (``None``, its own object) is taken to have taken it all."""
    while data:
        taken = fileobj.write(data)
        if isinstance(taken, bool) or not isinstance(taken, int) or taken >= len(data):
            return
        if taken <= 0:
            raise InvalidInputError(
                f"fileobj.write took {taken} of {len(data)} bytes: a closed or non-blocking "
                "sink; write the WAV to a blocking binary file"
            )
        data = data[taken:]  # a copy of the rest: only after a partial write


def _patchable(fileobj: object) -> bool:
    """Whether the WAV's sizes can be patched in place at the end: the file is seekable
    and not open for appending (``"a"`` in its mode, or ``O_APPEND`` on its descriptor),
    where a seek is allowed but every write lands at the end: the patch would be appended
    to the audio as two stray samples, the header left saying 0 bytes."""
    if not bool(getattr(fileobj, "seekable", lambda: False)()):
        return False
    if "a" in str(getattr(fileobj, "mode", "")):
        return False
    try:
        descriptor = fileobj.fileno()  # type: ignore[attr-defined]
        return not fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_APPEND
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return True  # no descriptor (BytesIO): a seek means what it says


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
