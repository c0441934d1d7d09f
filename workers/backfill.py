"""Backfill: rewrite a conversation's legacy 5 s objects into new 60 s objects (the I/O).

What goes where is decided by workers/backfill_plan.py (pure); this module lists, reads,
encodes, uploads, verifies and deletes. Per conversation, in this order:

1. List the conversation's prefix once. Objects an earlier run wrote (found by their
   ``audiosync-backfill-sources`` metadata) are **resumed**: the sources they claim that
   are still there are read, the object is downloaded and decoded with the reader's own
   code (``object_reader.read_object``) and checked to hold every chunk of them; only then, with
   ``delete``, are those sources deleted. Copies of one group written by two runs at once
   (same session id) are checked equal and, with ``delete``, the extra copy goes.
2. The other sources (old enough, docs in backfill_plan) are read in time order and
   grouped; each group is encoded, uploaded create-only, downloaded back and verified
   (same chunk starts and exact sample counts; repackaged legacy Opus: the same PCM as
   the legacy decode).
3. Only then, with ``delete``, the sources of every verified object are deleted (at the
   end of the conversation, so the rate rule below sees every deletion at once).

A process killed anywhere leaves a state step 1 finishes: an object stored but not
verified is verified, sources not yet deleted are deleted; a source is never deleted
unless a verified object holds all of its audio. A raw source is also kept when deleting
it would leave the conversation's other raw objects unable to tell their sample rate.

Raw PCM is re-encoded with the pusher's encoder settings (``AUDIOSYNC_OPUS_BITRATES``,
``AUDIOSYNC_OPUS_COMPLEXITY``); legacy Opus packets are repackaged as they are
(``pre_skip=0``), so they decode to exactly what the legacy decode gave. Sealed sources
are resealed as envelope v1 under the current ``ENCRYPTION_SECRET``.

Needs libopus (opuslib, the ``reader`` extras) and the key: it runs in the operator's
shell or on a worker of the ``audiosync.backfill`` queue, never on the key-less flush fleet.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from backend_hooks.adapters import gcs
from backend_hooks.contract import container, envelope, legacy_pcm, naming
from backend_hooks.contract.errors import (
    AudioSyncError,
    ConfigError,
    FormatError,
    InvalidInputError,
    ObjectConflictError,
    SampleRateUnknownError,
    StorageError,
    UnsupportedFormatError,
)
from backend_hooks.contract.ids import validate_id
from backend_hooks.contract.settings import Settings
from backend_hooks.read import conversations, object_reader, reader
from workers import backfill_plan as plan
from workers.flush import content_type

log = logging.getLogger(__name__)
#: Legacy Opus packets are repackaged only when each is one 20 ms frame (what the legacy
#: encoder wrote), so the new container's page granules are right; others are re-encoded.
_FRAME_48K = 960
#: Objects a GCS list request returns per page (the JSON API's default and maximum).
LIST_PAGE = 1000

Checkpoint = Callable[[str, str], None]  # (stage, object path): tests inject failures here


class _Deleted(Exception):
    """The conversation was marked deleted: stop writing into it."""


def load_codec() -> ModuleType:
    """backend_hooks.contract.codec, or ``ConfigError`` saying what to install: the fleet's image
    has no libopus (``pip install '.[fleet]'``), and backfill decodes and encodes."""
    try:
        from backend_hooks.contract import codec
    except (ImportError, OSError) as exc:
        raise ConfigError(
            "backfill encodes and decodes Opus and needs opuslib and libopus: run it where "
            "the reader extras are installed (pip install '.[fleet,reader]' and libopus0), "
            f"e.g. a worker of the 'audiosync.backfill' queue; here: {exc}"
        ) from None
    return codec


class CountingBucket(gcs.GcsBucket):
    """The bucket, counting the GCS requests made through it: ``list`` (one a page of
    ``LIST_PAGE`` objects), ``get`` (downloads, ranged reads, metadata reads such as the
    check after a 412), ``put`` and ``delete``."""

    def __init__(self, inner: gcs.GcsBucket) -> None:
        self.client = inner.client
        self.bucket = inner.bucket
        self.ops: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, op: str, n: int = 1) -> None:
        with self._lock:
            self.ops[op] += n

    def list(self, prefix: str) -> list[gcs.StoredObject]:
        found = super().list(prefix)
        self._count("list", max(1, -(-len(found) // LIST_PAGE)))
        return found

    def download(self, name: str) -> bytes:
        self._count("get")
        return super().download(name)

    def download_range(self, name: str, start: int, length: int) -> bytes:
        self._count("get")
        return super().download_range(name, start, length)

    def stored(self, name: str, *, deadline: float = gcs.DEFAULT_DEADLINE) -> Any:
        self._count("get")
        return super().stored(name, deadline=deadline)

    def create_only(
        self,
        name: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str],
        deadline: float = gcs.DEFAULT_DEADLINE,
    ) -> gcs.UploadOutcome:
        self._count("put")
        return super().create_only(
            name, data, content_type=content_type, metadata=metadata, deadline=deadline
        )

    def delete(self, name: str, *, deadline: float | None = None) -> None:
        self._count("delete")
        super().delete(name, deadline=deadline)


@dataclass
class Report:
    """What a backfill did (or, dry, would do); ``add`` sums conversations."""

    dry_run: bool = False
    conversations: int = 0
    objects_before: int = 0
    bytes_before: int = 0
    legacy_objects_before: int = 0
    legacy_bytes_before: int = 0
    objects_after: int = 0
    bytes_after: int = 0
    legacy_objects_after: int = 0
    legacy_bytes_after: int = 0
    written: list[str] = field(default_factory=list)  # objects created by this run
    already_stored: list[str] = field(default_factory=list)  # same bytes found (a 412)
    would_write: list[str] = field(default_factory=list)  # dry run: one line per object
    verified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[plan.Skipped] = field(default_factory=list)  # verified, deliberately kept
    skipped: list[plan.Skipped] = field(default_factory=list)
    failed: list[plan.Skipped] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)

    def add(self, other: Report) -> None:
        for name, value in vars(other).items():
            if name == "dry_run":
                continue
            mine = getattr(self, name)
            if isinstance(mine, list):
                mine.extend(value)
            elif isinstance(mine, Counter):
                mine.update(value)
            else:
                setattr(self, name, mine + value)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if isinstance(value, Counter):
                out[name] = {k: value.get(k, 0) for k in ("list", "get", "put", "delete")}
            elif isinstance(value, list):
                out[name] = [
                    {"path": v.path, "reason": v.reason} if isinstance(v, plan.Skipped) else v
                    for v in value
                ]
            else:
                out[name] = value
        return out

    def lines(self) -> list[str]:
        verb = "would write" if self.dry_run else "wrote"
        ops = self.as_dict()["ops"]
        out = [
            f"{self.conversations} conversation(s): {self.objects_before} objects, "
            f"{self.bytes_before:,} bytes before ({self.legacy_objects_before} legacy, "
            f"{self.legacy_bytes_before:,} bytes); {self.objects_after} objects, "
            f"{self.bytes_after:,} bytes after ({self.legacy_objects_after} legacy, "
            f"{self.legacy_bytes_after:,} bytes)",
            f"{verb} {len(self.would_write if self.dry_run else self.written)} object(s), "
            f"{len(self.already_stored)} already stored; verified {len(self.verified)}; "
            f"deleted {len(self.deleted)}; kept {len(self.kept)}; skipped "
            f"{len(self.skipped)}; failed {len(self.failed)}",
            "GCS operations: " + ", ".join(f"{k} {v}" for k, v in ops.items()),
        ]
        out += [f"  would write {w}" for w in self.would_write]
        for title, items in (("kept", self.kept), ("skipped", self.skipped)):
            out += [f"  {title} {s.path}: {s.reason}" for s in items]
        out += [f"  FAILED {s.path}: {s.reason}" for s in self.failed]
        return out


@dataclass
class Backfill:
    """What a backfill runs with: the (counting) bucket, the keys, the policy."""

    bucket: CountingBucket
    keys: envelope.UserKeys | None
    settings: Settings
    options: plan.Options
    _storage: reader.StorageContext | None = field(default=None, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, min_age_seconds: float = plan.DEFAULT_MIN_AGE_SECONDS
    ) -> Backfill:
        return cls(
            bucket=CountingBucket(gcs.GcsBucket.from_settings(settings)),
            keys=envelope.UserKeys(settings.encryption_secret, settings.encryption_secret_previous)
            if settings.encryption_secret
            else None,
            settings=settings,
            options=plan.Options(
                object_seconds=settings.object_seconds,
                max_bytes=settings.batch_max_bytes,
                piece_seconds=settings.chunk_seconds,
                min_age_seconds=plan.checked_min_age(min_age_seconds),
                bitrates=settings.opus_bitrates,
            ),
        )

    def storage_context(self) -> reader.StorageContext:
        """The reader's context on this bucket (one, so its Redis connection is reused)."""
        if self._storage is None:
            self._storage = reader.StorageContext(self.settings, self.bucket, self.keys)
        return self._storage

    def conversation_deleted(self, uid: str, cid: str) -> bool:
        """Whether ``delete_conversation_audio`` marked the conversation deleted: nothing
        may be uploaded into it. ``StorageError`` when Redis cannot say: then nothing is
        uploaded either."""
        return self.storage_context().conversation_deleted(
            uid, cid, then="nothing is uploaded until it answers"
        )


def conversations_of(
    listing: Iterable[gcs.StoredObject], uid: str
) -> dict[str, list[gcs.StoredObject]]:
    """A user's listing (``chunks/{uid}/``) split by conversation id."""
    prefix = f"chunks/{uid}/"
    out: dict[str, list[gcs.StoredObject]] = {}
    for stored in listing:
        rest = stored.name[len(prefix) :] if stored.name.startswith(prefix) else ""
        cid, slash, filename = rest.partition("/")
        if slash and cid and filename and "/" not in filename:
            out.setdefault(cid, []).append(stored)
    return out


# --- reading sources ----------------------------------------------------------------------


def _plaintexts(bf: Backfill, uid: str, name: naming.ObjectName, data: bytes) -> list[bytes]:
    if not name.sealed:
        return [data]
    if bf.keys is None:
        raise ConfigError(f"{name.path} is sealed: set ENCRYPTION_SECRET to backfill it")
    records = envelope.open_records(bf.keys, uid, data, name=name.path)
    for record in records:
        if record.info is not None:
            raise FormatError(
                f"{name.path}: sealed record {record.index} is envelope v1; a legacy object "
                "holds only v0 records, so it is corrupt or misnamed"
            )
    return [r.plaintext for r in records]


def _opus_chunks(name: naming.ObjectName, payload: bytes) -> list[plan.SourceChunk]:
    if payload[:4] == b"OggS":
        raise UnsupportedFormatError(
            f"{name.path} has a legacy name but holds new (Ogg) chunks; left as it is"
        )
    packets, pcm_length = container.parse_legacy_chunk(payload)
    chunks = plan.legacy_opus_chunk(name, packets, pcm_length)
    sound = bool(packets) and all(container.opus_packet_samples(p) == _FRAME_48K for p in packets)
    if chunks and not (sound and len(packets) * 320 >= chunks[0].samples):
        # Not the legacy encoder's 20 ms frames: decode and re-encode (lengths stay exact).
        c = chunks[0]
        pcm = load_codec().decode_packets(
            list(packets), c.sample_rate, pre_skip=0, sample_count=c.samples
        )
        chunks = [plan.SourceChunk(c.start_us, c.sample_rate, c.samples, pcm=pcm)]
    return chunks


def read_source(bf: Backfill, uid: str, name: naming.ObjectName, rate: int | None) -> plan.Source:
    """A legacy object downloaded, opened and cut into its chunks."""
    data = bf.bucket.download(name.path)
    plaintexts = _plaintexts(bf, uid, name, data)
    if legacy_pcm.is_raw(name):
        assert rate is not None
        chunks = plan.raw_chunks(name, plaintexts, rate, bf.options.piece_seconds)
    else:
        chunks = _opus_chunks(name, b"".join(plaintexts))
    return plan.Source(name, len(data), plan.content_digest(data), tuple(chunks))


def _legacy_decoded(sources: Iterable[plan.Source]) -> dict[tuple[str, int], bytes]:
    """The legacy decode of every repackaged Opus chunk, keyed by (source path, start)."""
    out = {}
    for s in sources:
        for c in s.chunks:
            if c.packets is not None:
                out[(s.name.path, c.start_us)] = load_codec().decode_packets(
                    list(c.packets), c.sample_rate, pre_skip=0, sample_count=c.samples
                )
    return out


# --- writing a group ----------------------------------------------------------------------


def build_object(bf: Backfill, uid: str, group: plan.Group) -> bytes:
    """The new object's bytes, as the fleet would have written them (docs/FORMATS.md
    §1-§3): one Ogg Opus chunk per source chunk, sealed as v1 records when enhanced."""
    codec = load_codec()
    encoder = codec.ChunkEncoder.from_settings(group.rate, bf.settings)
    parts = []
    for info, chunk in zip(group.infos(), group.chunks, strict=True):
        if chunk.packets is not None:
            packets, pre_skip = list(chunk.packets), 0
        else:
            assert chunk.pcm is not None
            packets, pre_skip = encoder.encode(chunk.pcm), encoder.pre_skip
        body = container.build_chunk(info, packets, pre_skip)
        if group.sealed:
            if bf.keys is None:
                raise ConfigError("sealed sources need ENCRYPTION_SECRET")
            body = envelope.seal(bf.keys, uid, info, body)
        parts.append(body)
    return b"".join(parts)


def _decode(bf: Backfill, uid: str, path: str) -> list[container.Segment]:
    """A new object as the reader decodes it (its records opened and checked)."""
    name = naming.parse_object_name(path)
    return object_reader.read_object(bf.bucket, bf.keys, uid, name, None).segments


class _Conversation:
    """One conversation's backfill: the state its steps share."""

    def __init__(
        self,
        bf: Backfill,
        uid: str,
        cid: str,
        *,
        delete: bool,
        dry_run: bool,
        sample_rate: int | None,
        checkpoint: Checkpoint | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.bf, self.uid, self.cid = bf, uid, cid
        self.delete, self.dry_run, self.sample_rate = delete, dry_run, sample_rate
        self.checkpoint = checkpoint or (lambda stage, path: None)
        self.progress = progress or (lambda n: None)
        self.report = Report(dry_run=dry_run, conversations=1)
        self.sizes: dict[str, int] = {}
        self.raw_objects: list[legacy_pcm.RawObject] = []
        self.gone: set[str] = set()  # sources deleted so far
        self.pending: list[tuple[str, list[str]]] = []  # (verified object, its sources)

    def describe(self) -> str:
        return f"conversation {self.cid} of user {self.uid}"

    def _raw_evidence(self, raw: list[tuple[naming.ObjectName, int]]) -> None:
        """The raw objects' chunk lengths (plain: the size; sealed: their record framing,
        read with ranged reads), for the rate rule."""
        for name, size in raw:
            if not name.sealed:
                self.raw_objects.append(legacy_pcm.RawObject(name, (size,)))
                continue
            path = name.path

            def read(at: int, n: int, path: str = path) -> bytes:
                return self.bf.bucket.download_range(path, at, n)

            try:
                lengths = legacy_pcm.sealed_chunk_lengths(read, size, path)
            except FormatError as exc:
                log.warning("%s; left out of the sample-rate evidence", exc)
                continue
            self.raw_objects.append(legacy_pcm.RawObject(name, tuple(lengths)))

    def rate(self, raw: list[tuple[naming.ObjectName, int]]) -> int | None:
        """The raw objects' rate: ``sample_rate`` when given, else the one they tell.
        Given, it must not contradict the one they tell (``SampleRateUnknownError``, the
        conversation skipped): an 8 kHz conversation backfilled as 16 kHz would play at
        twice the speed, and with ``delete`` nothing would be left to read it right."""
        if not raw:
            return None
        self._raw_evidence(raw)
        try:
            told: int | None = legacy_pcm.infer_sample_rate(
                self.raw_objects, conversation=self.describe()
            )
        except SampleRateUnknownError:
            if self.sample_rate is None:
                raise
            told = None  # the objects do not tell: the operator's rate is taken
        if self.sample_rate is not None and told is not None and told != self.sample_rate:
            raise SampleRateUnknownError(
                f"{self.describe()}: its raw objects tell {told} Hz, not the --sample-rate "
                f"{self.sample_rate} given; nothing written or deleted (run it with "
                f"--sample-rate {told}, or without --sample-rate)"
            )
        return self.sample_rate if self.sample_rate is not None else told

    def delete_sources(self, sources: list[plan.Source], held_by: str) -> None:
        """Note that a verified ``held_by`` holds ``sources``: they are deleted at the end
        of the conversation (``delete_verified``), so the rate rule sees all of them."""
        if self.delete:
            self.pending.append((held_by, [s.name.path for s in sources]))

    def delete_verified(self, rate: int | None) -> None:
        """Delete the sources noted by ``delete_sources``. A raw source goes only if the
        raw objects left still tell the conversation's rate (or none are left): all at
        once when that holds, otherwise object by object in time order, keeping those whose
        deletion would not (a later run, once the rest is backfilled, deletes them)."""
        raw = {p for _, paths in self.pending for p in paths if self._is_raw(p)}
        at_once = rate is None or plan.rate_still_told(self.raw_objects, raw, rate)
        for held_by, paths in self.pending:
            mine = {p for p in paths if self._is_raw(p)}
            if mine and not at_once:
                assert rate is not None
                if not plan.rate_still_told(self.raw_objects, self.gone | mine, rate):
                    self.report.kept += [
                        plan.Skipped(
                            path,
                            f"verified in {held_by}, kept: deleting it would leave the "
                            "conversation's other raw objects unable to tell their sample "
                            "rate (a later run deletes it)",
                        )
                        for path in sorted(mine)
                    ]
                    paths = [p for p in paths if p not in mine]
            for path in paths:
                self.bf.bucket.delete(path)
                self.report.deleted.append(path)
                self.gone.add(path)
                self.checkpoint("deleted", path)
        self.pending.clear()

    @staticmethod
    def _is_raw(path: str) -> bool:
        return legacy_pcm.is_raw(naming.parse_object_name(path))

    def read(
        self, names: Iterable[naming.ObjectName], rate: int | None
    ) -> list[plan.Source | plan.Skipped]:
        out: list[plan.Source | plan.Skipped] = []
        for name in names:
            try:
                source = read_source(self.bf, self.uid, name, rate)
            except AudioSyncError as exc:
                out.append(plan.Skipped(name.path, f"not readable, left as it is: {exc}"))
            else:
                out.append(source if source.chunks else plan.Skipped(name.path, "holds no audio"))
            self.progress(1)
        return out

    # -- step 1: objects of earlier runs --

    def resume(self, earlier: plan.Earlier, rate: int | None, by_path: dict[str, Any]) -> None:
        where = earlier.name.path
        if earlier.duplicate_of is not None:
            self._drop_copy(earlier)
            return
        if not earlier.present:
            return  # its sources are gone: verified and deleted by an earlier run
        levels = plan.level_problems(earlier, by_path)
        if levels:
            self._failed(where, levels)
            return
        read = self.read((by_path[p] for p in earlier.present), rate)
        sources = [s for s in read if isinstance(s, plan.Source)]
        self.report.skipped += [s for s in read if isinstance(s, plan.Skipped)]
        rewritten = plan.identity_problems(earlier, sources)
        if rewritten:
            self._failed(where, rewritten)
            return
        try:
            segments = _decode(self.bf, self.uid, where)
            problems = plan.verify_holds(
                segments,
                earlier.session_id,
                sources,
                where=where,
                legacy_decoded=_legacy_decoded(sources),
            )
        except AudioSyncError as exc:
            problems = [f"{where}: does not read back: {exc}"]
        if problems:
            self._failed(where, problems)
            return
        self.report.verified.append(where)
        self.checkpoint("verified", where)
        if not self.dry_run:
            self.delete_sources(sources, where)

    def _drop_copy(self, earlier: plan.Earlier) -> None:
        """A second object of the same session (two runs at once): with ``delete``, gone
        once it decodes to exactly the chunks of the one kept."""
        assert earlier.duplicate_of is not None
        if not self.delete or self.dry_run:
            self.report.kept.append(
                plan.Skipped(
                    earlier.name.path,
                    f"a copy of {earlier.duplicate_of} (same session; the reader plays it "
                    "once); --delete removes it",
                )
            )
            return
        try:
            mine = _decode(self.bf, self.uid, earlier.name.path)
            kept = _decode(self.bf, self.uid, earlier.duplicate_of)
        except AudioSyncError as exc:
            self._failed(earlier.name.path, [f"copy check failed: {exc}"])
            return
        layout = [(s.key, s.start_us, s.sample_rate, s.sample_count) for s in mine]
        if layout != [(s.key, s.start_us, s.sample_rate, s.sample_count) for s in kept]:
            self._failed(
                earlier.name.path, [f"same session as {earlier.duplicate_of}, other chunks"]
            )
            return
        self.bf.bucket.delete(earlier.name.path)
        self.report.deleted.append(earlier.name.path)

    def _failed(self, where: str, problems: list[str]) -> None:
        log.error("backfill of %s: %s; its sources are kept", where, "; ".join(problems))
        self.report.failed.append(
            plan.Skipped(
                where,
                "; ".join(problems[:5])
                + " -- its sources are kept; look at it, delete it to backfill them again",
            )
        )

    # -- step 2: new groups --

    def write(self, group: plan.Group) -> None:
        bf = self.bf
        first, last = group.chunks[0], max(group.chunks, key=plan.chunk_end_us)
        label = (
            f"{naming.conversation_prefix(self.uid, self.cid)}{naming.format_time(first.start_us)}-"
            f"{naming.format_time(plan.chunk_end_us(last))}: {len(group.sources)} sources, "
            f"{len(group.chunks)} chunks, {group.samples / group.rate:.1f} s at {group.rate} Hz"
            f"{', enhanced' if group.sealed else ''}"
        )
        if self.dry_run:
            self.report.would_write.append(label)
            return
        if bf.conversation_deleted(self.uid, self.cid):
            raise _Deleted()
        try:
            data = build_object(bf, self.uid, group)
        except AudioSyncError as exc:
            self._failed(label, [f"cannot build: {exc}"])
            return
        path = naming.object_name(
            self.uid,
            self.cid,
            start_us=first.start_us,
            end_us=plan.chunk_end_us(last),
            sealed=group.sealed,
            data=data,
        )
        outcome = bf.bucket.create_only(
            path, data, content_type=content_type(group.sealed), metadata=group.metadata()
        )
        (self.report.written if outcome == "created" else self.report.already_stored).append(path)
        self.sizes[path] = len(data)
        self.checkpoint("uploaded", path)
        if bf.conversation_deleted(self.uid, self.cid):  # deleted while uploading
            bf.bucket.delete(path)
            self.report.deleted.append(path)
            # An abandoned attempt of the upload may land later: listed again then.
            conversations.recheck_later(bf.storage_context(), self.uid, self.cid)
            raise _Deleted()
        decoded = _legacy_decoded(group.sources)
        exact = {  # seq -> the legacy decode of a repackaged Opus chunk
            seq: decoded[(source.name.path, chunk.start_us)]
            for seq, (source, chunk) in enumerate(group.placed())
            if chunk.packets is not None
        }
        try:
            problems = plan.verify_segments(
                group.infos(), _decode(bf, self.uid, path), where=path, exact_pcm=exact
            )
        except AudioSyncError as exc:
            problems = [f"{path}: does not read back: {exc}"]
        if problems:
            self._failed(path, problems)
            return
        self.report.verified.append(path)
        self.checkpoint("verified", path)
        self.delete_sources(group.sources, path)

    def run(self, listing: list[gcs.StoredObject], now_us: int) -> Report:
        objects = []
        for stored in listing:
            try:
                objects.append((naming.parse_object_name(stored.name), stored))
            except UnsupportedFormatError:
                continue  # not a chunk object: the reader leaves it out too
        self.sizes = {n.path: s.size for n, s in objects}
        by_path = {n.path: n for n, _ in objects}
        legacy_names = [n for n, _ in objects if not n.is_new]
        r = self.report
        r.objects_before = len(objects)
        r.bytes_before = sum(s.size for _, s in objects)
        r.legacy_objects_before = len(legacy_names)
        r.legacy_bytes_before = sum(self.sizes[n.path] for n in legacy_names)
        try:
            self._run(objects, by_path, now_us)
        except StorageError as exc:  # GCS or Redis failed: what was done stays, and counts
            r.failed.append(
                plan.Skipped(
                    naming.conversation_prefix(self.uid, self.cid),
                    f"stopped: {exc} (what is listed above was done; a rerun resumes)",
                )
            )
        except _Deleted:
            r.skipped.append(
                plan.Skipped(
                    naming.conversation_prefix(self.uid, self.cid),
                    "the conversation was deleted (delete_conversation_audio) while it was "
                    "being backfilled: what this run wrote into it is deleted, nothing more",
                )
            )
        finally:
            self._tally_after(legacy_names)
        return r

    def _run(
        self,
        objects: list[tuple[naming.ObjectName, gcs.StoredObject]],
        by_path: dict[str, naming.ObjectName],
        now_us: int,
    ) -> None:
        r = self.report
        earlier, bad = plan.earlier_objects([(n, s.size, s.metadata) for n, s in objects])
        r.skipped += bad
        claimed = plan.claimed_paths(earlier)
        candidates, young = plan.select_sources(
            (n for n, _ in objects), now_us=now_us, min_age_seconds=self.bf.options.min_age_seconds
        )
        r.skipped += young
        raw = [(n, s.size) for n, s in objects if not n.is_new and legacy_pcm.is_raw(n)]
        touched = {n.path for n in candidates} | claimed
        try:  # the rate of the raw objects, when any is to be read
            rate = self.rate(raw) if any(n.path in touched for n, _ in raw) else None
        except SampleRateUnknownError as exc:
            r.skipped.append(
                plan.Skipped(
                    naming.conversation_prefix(self.uid, self.cid),
                    f"conversation skipped, nothing written or deleted: {exc} "
                    "(backfill --sample-rate)",
                )
            )
            return
        for e in earlier:
            self.resume(e, rate, by_path)
        grouper = plan.Grouper(self.bf.options)
        fresh = [n for n in candidates if n.path not in claimed]
        for item in self.read_lazily(fresh, rate):
            if isinstance(item, plan.Skipped):
                r.skipped.append(item)
                continue
            for group in grouper.add(item):
                self.write(group)
        for group in grouper.finish():
            self.write(group)
        self.delete_verified(rate)

    def read_lazily(
        self, names: list[naming.ObjectName], rate: int | None
    ) -> Iterable[plan.Source | plan.Skipped]:
        for name in names:  # one at a time: memory is the open groups, not the conversation
            yield from self.read([name], rate)

    def _tally_after(self, legacy_names: list[naming.ObjectName]) -> None:
        r = self.report
        gone = set(r.deleted)
        legacy = [n.path for n in legacy_names if n.path not in gone]
        alive = [p for p in self.sizes if p not in gone]
        r.objects_after = len(alive)
        r.bytes_after = sum(self.sizes[p] for p in alive)
        r.legacy_objects_after = len(legacy)
        r.legacy_bytes_after = sum(self.sizes[p] for p in legacy)


def backfill_conversation(
    bf: Backfill,
    uid: str,
    cid: str,
    *,
    now_us: int,
    delete: bool = False,
    dry_run: bool = False,
    sample_rate: int | None = None,
    listing: list[gcs.StoredObject] | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Backfill one conversation (the module docstring); its ``Report``. ``listing`` is
    the conversation's objects when the caller listed them already (a user's run lists
    once); ``checkpoint(stage, path)`` is called after each upload, verification and
    deletion (tests raise there to kill a run)."""
    validate_id(uid, "uid")
    validate_id(cid, "conversation_id")
    if sample_rate is not None:
        reader.checked_rate(sample_rate)
    load_codec()  # fail at once, with what to install, not half-way
    before = Counter(bf.bucket.ops)
    if listing is None:
        listing = bf.bucket.list(naming.conversation_prefix(uid, cid))
    job = _Conversation(
        bf,
        uid,
        cid,
        delete=delete and not dry_run,
        dry_run=dry_run,
        sample_rate=sample_rate,
        checkpoint=checkpoint,
        progress=progress,
    )
    try:
        return job.run(listing, now_us)
    finally:
        job.report.ops = Counter(bf.bucket.ops) - before


def backfill_user(
    bf: Backfill,
    uid: str,
    conversations: Iterable[str] = (),
    *,
    now_us: int,
    delete: bool = False,
    dry_run: bool = False,
    sample_rate: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Report:
    """Backfill the named conversations of ``uid``, or all of them (one listing of
    ``chunks/{uid}/``), one after another; the summed ``Report``. ``on_total`` is told how
    many legacy objects there are (for a progress bar), ``progress`` each one read. A
    storage failure stops a conversation (reported as failed, with what it had done by
    then: its objects written, verified and deleted count); a rerun resumes it."""
    validate_id(uid, "uid")
    wanted = [validate_id(cid, "conversation_id") for cid in conversations]
    before = Counter(bf.bucket.ops)
    if wanted:
        listings = {cid: bf.bucket.list(naming.conversation_prefix(uid, cid)) for cid in wanted}
    else:
        listings = conversations_of(bf.bucket.list(f"chunks/{uid}/"), uid)
    if on_total is not None:
        on_total(sum(1 for objs in listings.values() for o in objs if _is_legacy(o.name)))
    total = Report(dry_run=dry_run)
    for cid in sorted(listings):
        try:
            total.add(
                backfill_conversation(
                    bf,
                    uid,
                    cid,
                    now_us=now_us,
                    delete=delete,
                    dry_run=dry_run,
                    sample_rate=sample_rate,
                    listing=listings[cid],
                    progress=progress,
                )
            )
        except InvalidInputError as exc:  # a prefix that is no conversation id of ours
            total.skipped.append(plan.Skipped(naming.conversation_prefix(uid, cid), str(exc)))
        except (StorageError, ObjectConflictError) as exc:
            total.conversations += 1
            total.failed.append(
                plan.Skipped(naming.conversation_prefix(uid, cid), f"stopped: {exc}")
            )
    total.ops = Counter(bf.bucket.ops) - before
    return total


def _is_legacy(path: str) -> bool:
    try:
        return not naming.parse_object_name(path).is_new
    except UnsupportedFormatError:
        return False
