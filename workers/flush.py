"""Flushing one session: exactly once under every fault, and always making progress.

1. Take the session's lease (a random token with a TTL; every later Redis write of this
   flush is fenced by it, workers/store.py).
2. If a recorded plan exists, a flush before this one died or lost its lease while
   carrying it out: carry out that plan, object by object, byte for byte (step 5).
3. Otherwise read up to ``READ_LIMIT`` entries; validate each (workers/validate.py) and
   move the bad ones, chunks repeating a seq with other content, chunks first appended
   longer ago than a deleted conversation's mark lives, and envelope v0 chunks of a
   session whose pusher seals v1, to quarantine with their reason in one atomic step;
   plan the rest (workers/planner.py, pure).
4. Record the plan (the objects in order: name, chunk ids, the other ids each deletes)
   before the first upload. It is never overwritten; it shrinks only as objects commit.
5. For each object: renew the lease, upload create-only within a deadline shorter than
   the lease, then commit it (delete its entries, pop it off the plan). Before and after
   the upload the conversation's deleted mark is looked at (``delete_conversation_audio``
   sets it before deleting), one attempt within a short timeout each: a deleted
   conversation's object is deleted, never left, its entries are committed without it,
   and the conversation is queued to be listed again once an abandoned attempt of the
   upload must have landed (workers/deletions.py). A mark that cannot be read (on a Redis
   Cluster it may live on a node that is out while the session's serves) does not stop
   the flush: the object is uploaded with a note in the session's own shard, and the
   fleet deletes it if the mark, once it can be read, says deleted.
6. Finish: drop what no object holds, clear the failure count, set the next due time.

What if the process is killed (or stalls past its lease) here?
- before the plan is recorded: nothing changed but quarantine moves, which are atomic.
- after the plan, at any point of step 5: the successor adopts the plan; objects already
  stored answer 412 and are checked equal; entries are deleted only by the commit of the
  object that holds them. A stalled flush that wakes up finds its lease gone: its writes
  change nothing, and its late upload is an object the plan holds anyway. Into a
  conversation deleted meanwhile, such an upload (or an attempt the client gave up on)
  is found by the re-check the delete queued, or the one a flush that dropped the object
  queued, if it lands within AUDIOSYNC_DELETE_RECHECK_SECONDS of them; the lease bounds
  nothing there (docs/ARCHITECTURE.md, "Deleted conversations").
- the worker is shutting down (``should_stop``, workers/shutdown.py): before each upload
  the flush looks; once told, it hands the session back (due now, lease released, the
  recorded plan left for the next flush) instead of starting another upload.
- any other exception: the failure is counted in Redis; the session is due again after an
  exponential backoff; after ``max_attempts`` it is parked (its entries are moved to
  quarantine with the reason) and new entries flow again. The first failure logs a
  traceback, later ones one line. A flush that fails after its lease ran out is counted
  too: with the lease free it takes it again and backs off (or parks) as above; while
  another flush holds it, it only adds to the count and leaves the session to that one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from backend_hooks.adapters.gcs import GcsBucket, UploadOutcome
from backend_hooks.contract.entries import BadEntry, ChunkEntry, Entry
from backend_hooks.contract.errors import ObjectConflictError, StorageError
from backend_hooks.contract.settings import DELETE_RECHECK_SECONDS
from workers.planner import (
    FlushPlan,
    ObjectPlan,
    PlanError,
    Policy,
    RecordedObject,
    conflicting_repeats,
    plan_flush,
)
from workers.store import Begun, LeaseLostError, StoredSeqs, WorkerStore
from workers.validate import (
    Limits,
    foreign_v0_entries,
    parse_only,
    v1_session_sign,
    validate_entry,
)

log = logging.getLogger(__name__)
#: Entries read per flush: about 41 min of 5 s chunks; at most 256 MiB of chunk data
#: (workers/validate.MAX_CHUNK_BYTES each), typically ~4 MB.
READ_LIMIT = 500
#: What the first release read per flush: a cut it recorded lies within this many entries.
LEGACY_READ_LIMIT = 2000
PARK_BATCH = 200
BACKOFF_BASE_SECONDS = 1.0
#: Fraction of the lease one upload may take (its retries included): the lease is renewed
#: before each upload, so an upload can never outlast it unless the process stalls.
UPLOAD_SHARE_OF_LEASE = 0.5


@dataclass(frozen=True)
class FlushConfig:
    lease_seconds: float
    limits: Limits
    max_attempts: int
    backoff_cap_seconds: float
    read_limit: int = READ_LIMIT
    #: AUDIOSYNC_DELETED_MARK_SECONDS: a chunk first appended longer ago than a deleted
    #: conversation's mark lives is quarantined, not uploaded (None: no such bound)
    max_entry_age_seconds: float | None = None
    #: AUDIOSYNC_DELETE_RECHECK_SECONDS: a deleted conversation whose object this flush
    #: dropped is listed again this long after (its abandoned upload attempts may land)
    recheck_seconds: float = float(DELETE_RECHECK_SECONDS)


class HandBack(Exception):
    """The worker is shutting down: give the session back instead of going on."""


@dataclass(frozen=True)
class FlushResult:
    session_id: str
    objects_created: int = 0
    objects_already_stored: int = 0
    entries_deleted: int = 0
    quarantined: int = 0
    repeats_dropped: int = 0
    resumed_plan: bool = False
    next_due: float | None = None
    skipped: str | None = None
    failed: str | None = None
    parked: int = 0
    chunks_stored: int = 0  # in the objects this flush committed
    bytes_stored: int = 0
    upload_seconds: tuple[float, ...] = ()  # each upload's wall time (metrics)
    #: chunks of a deleted conversation (``delete_conversation_audio``) dropped unstored
    chunks_dropped_deleted: int = 0
    #: uploads made while the deleted mark could not be read (noted for the fleet)
    blind_uploads: int = 0
    #: uploads that met their object name taken by other bytes (ObjectConflictError)
    object_conflicts: int = 0


def content_type(sealed: bool) -> str:
    return "application/octet-stream" if sealed else "audio/ogg"


def _id_key(entry_id: bytes) -> tuple[int, int]:
    millis, _, seq = entry_id.partition(b"-")
    return int(millis), int(seq or 0)


def flush_session(
    session_id: str,
    *,
    store: WorkerStore,
    bucket: GcsBucket,
    policy: Policy,
    config: FlushConfig,
    clock: Callable[[], float],
    should_stop: Callable[[], bool] = lambda: False,
) -> FlushResult:
    if should_stop():  # claimed by a sweep but not started: due again now, for another worker
        store.schedule(session_id, clock())
        return FlushResult(session_id, skipped="handed back: the worker is shutting down")
    token = uuid.uuid4().hex
    begun = store.begin(session_id, token, config.lease_seconds, config.read_limit)
    if begun is None:
        return FlushResult(session_id, skipped="another flush holds the lease")
    flush = _Flush(session_id, token, store, bucket, policy, config, clock, should_stop)
    try:
        return flush.run(begun)
    except HandBack:
        return flush.hand_back()
    except LeaseLostError:
        log.warning("flush of %s lost its lease; it wrote nothing more", session_id)
        return flush.result(skipped="lease lost")
    except Exception as exc:  # counted, backed off, parked at the limit: never a crash loop
        return flush.failed(exc)
    finally:
        if not flush.released:
            store.release_lease(session_id, token)


class _Flush:
    def __init__(
        self,
        session_id: str,
        token: str,
        store: WorkerStore,
        bucket: GcsBucket,
        policy: Policy,
        config: FlushConfig,
        clock: Callable[[], float],
        should_stop: Callable[[], bool],
    ) -> None:
        self.session_id, self.token = session_id, token
        self.store, self.bucket, self.policy, self.config = store, bucket, policy, config
        self.clock, self.should_stop = clock, should_stop
        self.counts = {
            "created": 0,
            "already_stored": 0,
            "deleted": 0,
            "quarantined": 0,
            "chunks": 0,
            "bytes": 0,
            "dropped_deleted": 0,
            "blind": 0,
        }
        self.upload_seconds: list[float] = []
        self.repeats = 0
        self.resumed = False
        self.next_due: float | None = None
        self.released = False  # the finish gave the lease up with its last write
        self.lease_fresh = False  # renewed by the plan's record: the first upload needs none
        self.stored = StoredSeqs(b"")

    def result(self, **extra: object) -> FlushResult:
        c = self.counts
        return FlushResult(
            self.session_id,
            objects_created=c["created"],
            objects_already_stored=c["already_stored"],
            entries_deleted=c["deleted"],
            quarantined=c["quarantined"],
            repeats_dropped=self.repeats,
            resumed_plan=self.resumed,
            next_due=self.next_due,
            chunks_stored=c["chunks"],
            bytes_stored=c["bytes"],
            chunks_dropped_deleted=c["dropped_deleted"],
            blind_uploads=c["blind"],
            upload_seconds=tuple(self.upload_seconds),
            **extra,  # type: ignore[arg-type]
        )

    def run(self, begun: Begun) -> FlushResult:
        now = self.clock()
        self.stored = begun.stored
        recorded = begun.plan
        if recorded:
            self.resumed = True
            self._resume(recorded)
            self.next_due = now
            self._finish(drop_ids=[], last_read_id=None, next_due=now, now=now)
            return self.result()

        pinned = begun.intent
        raw: list[tuple[bytes, dict[bytes, bytes]]] = begun.entries
        if pinned is not None:  # a first-release flush's cut: read up to it, as it did
            raw = self.store.read_raw(self.session_id, LEGACY_READ_LIMIT, pinned)
            if not raw or raw[-1][0] != pinned:  # its entry is gone: the cut is moot
                log.warning("session %s: dropping a stale first-release intent", self.session_id)
                self.store.drop_legacy_intent(self.session_id, self.token)
                pinned = None
                raw = self.store.read_raw(self.session_id, self.config.read_limit)
        complete = pinned is not None or len(raw) < self.config.read_limit
        good = self._checked(
            raw, legacy=pinned is not None, now=now, appended_mark=begun.appended_mark
        )
        plan = plan_flush(good, now, self.policy, complete=complete, pinned_last_id=pinned)
        if pinned is not None and not plan.objects:  # nothing of the old cut is left to redo
            self.store.drop_legacy_intent(self.session_id, self.token)
        self.repeats = plan.repeats
        self._carry_out(plan)
        self.next_due = plan.next_due
        self._finish(
            drop_ids=plan.drop_ids,
            last_read_id=good[-1].entry_id if good else None,
            next_due=plan.next_due,
            now=now,
        )
        self.counts["deleted"] += len(plan.drop_ids)
        return self.result()

    def _finish(
        self,
        *,
        drop_ids: list[bytes],
        last_read_id: bytes | None,
        next_due: float | None,
        now: float,
    ) -> None:
        self.store.finish(
            self.session_id,
            self.token,
            drop_ids=drop_ids,
            last_read_id=last_read_id,
            next_due=next_due,
            now=now,
            release=True,
        )
        self.released = True

    def _checked(
        self,
        raw: list[tuple[bytes, dict[bytes, bytes]]],
        *,
        legacy: bool = False,
        now: float | None = None,
        appended_mark: bool = False,
    ) -> list[Entry]:
        """The valid entries; the others are quarantined with their reasons. ``legacy``: a
        first release's cut, which kept repeats (its objects may be stored already).
        ``appended_mark``: the session's ``:appended`` mark exists; with it, or with v1
        records in the read, the pusher seals v1 and a v0 chunk in the stream is
        quarantined (workers/validate.foreign_v0_entries).

        A chunk first appended longer ago than ``max_entry_age_seconds`` (the deleted
        mark's lifetime) is quarantined too: its conversation may have been deleted and
        the mark gone since, so it is not uploaded (a replay brings it back to the same
        verdict until AUDIOSYNC_DELETED_MARK_SECONDS is raised for it). Only a fresh plan
        checks this; a recorded plan is carried out as recorded."""
        limits = self.config.limits
        checked = [
            parse_only(eid, fields)
            if legacy
            else validate_entry(self.session_id, eid, fields, limits)
            for eid, fields in raw
        ]
        good: list[Entry] = [e for e in checked if not isinstance(e, BadEntry)]
        chunks = not legacy and any(isinstance(e, ChunkEntry) for e in good)
        stored = self.stored if chunks else StoredSeqs(b"")
        again = [
            BadEntry(
                e.entry_id,
                f"seq {e.seq} of this session is in a stored object already (appended or "
                "replayed again after its original was stored)",
            )
            for e in good
            if isinstance(e, ChunkEntry) and e.seq in stored
        ]
        bad = [e for e in checked if isinstance(e, BadEntry)] + again
        if not legacy:  # (a first release's cut is redone as it was cut)
            again_ids = {b.entry_id for b in again}
            old = self._too_old([e for e in good if e.entry_id not in again_ids], now)
            taken = again_ids | {b.entry_id for b in old}
            sign = v1_session_sign(appended_mark, good)
            foreign = foreign_v0_entries([e for e in good if e.entry_id not in taken], sign)
            taken |= {b.entry_id for b in foreign}
            bad += old + foreign + conflicting_repeats([e for e in good if e.entry_id not in taken])
        if bad:
            for entry in bad:
                log.warning(
                    "session %s: entry %s quarantined: %s",
                    self.session_id,
                    entry.entry_id.decode(errors="replace"),
                    entry.reason,
                )
            self.counts["quarantined"] += self.store.quarantine(
                self.session_id, self.token, [(b.entry_id, b.reason) for b in bad]
            )
            quarantined = {b.entry_id for b in bad}
            good = [e for e in good if e.entry_id not in quarantined]
        return good

    def _too_old(self, good: list[Entry], now: float | None) -> list[BadEntry]:
        limit = self.config.max_entry_age_seconds
        if limit is None or now is None:
            return []
        oldest_ms = (now - limit) * 1000
        return [
            BadEntry(
                e.entry_id,
                f"first appended {(now * 1000 - e.first_appended_ms) / 86_400_000:.1f} days "
                f"ago, longer than a deleted conversation's mark lives "
                f"(AUDIOSYNC_DELETED_MARK_SECONDS={limit:g}): its conversation may have been "
                "deleted since; replay it with that setting raised on the fleet once you "
                "know it was not",
            )
            for e in good
            if isinstance(e, ChunkEntry) and e.first_appended_ms < oldest_ms
        ]

    def _carry_out(self, plan: FlushPlan) -> None:
        if not plan.objects:
            return
        prepared = []
        for obj in plan.objects:
            data = obj.data()
            record = obj.record(obj.name(data))
            prepared.append((obj, data, record, record.dumps()))
        lease = self.config.lease_seconds
        texts = [text for *_, text in prepared]
        self.store.record_plan(self.session_id, self.token, texts, lease_seconds=lease)
        self.lease_fresh = True
        for obj, data, record, text in prepared:
            self._store_object(obj, data, record, text, named=True)

    def _entries_of(self, objects: list[RecordedObject]) -> dict[bytes, dict[bytes, bytes]]:
        """The stream entries a recorded plan names: it spans at most one flush's read."""
        ids = [i for o in objects for i in o.ids]
        first, last = min(ids, key=_id_key), max(ids, key=_id_key)
        span = max(self.config.read_limit, LEGACY_READ_LIMIT)
        return dict(self.store.read_raw(self.session_id, span, last, first_id=first))

    def _resume(self, recorded: list[bytes]) -> None:
        """Carry out a plan recorded by an earlier flush, exactly as recorded."""
        objects = [RecordedObject.loads(text) for text in recorded]
        raw = self._entries_of(objects)
        for rec, text in zip(objects, recorded, strict=True):
            entries: list[ChunkEntry] = []
            for entry_id in rec.ids:
                fields = raw.get(entry_id)
                if fields is None:
                    raise PlanError(f"entry {entry_id!r} of recorded object {rec.name} is gone")
                entry = validate_entry(self.session_id, entry_id, fields, self.config.limits)
                if not isinstance(entry, ChunkEntry):
                    raise PlanError(f"entry {entry_id!r} of recorded object {rec.name} is bad")
                entries.append(entry)
            obj = ObjectPlan(entries=entries, also_delete=list(rec.also))
            self._store_object(obj, obj.data(), rec, text)

    def _store_object(
        self,
        obj: ObjectPlan,
        data: bytes,
        rec: RecordedObject,
        text: str | bytes,
        *,
        named: bool = False,
    ) -> None:
        """Upload and commit one object of the plan. ``named``: ``rec`` was named from
        these very bytes by this flush (a fresh plan), so its name is not hashed again; a
        recorded plan's object is rebuilt from its entries and must come out as named."""
        name = rec.name if named else obj.name(data)
        if name != rec.name:
            raise PlanError(f"recorded object {rec.name} rebuilds as {name}")
        if self.should_stop():
            raise HandBack
        lease = self.config.lease_seconds
        if not self.lease_fresh:
            self.store.renew_lease(self.session_id, self.token, lease)
        self.lease_fresh = False
        first = obj.entries[0]
        deleted = self.store.deletion_mark(first.uid, first.cid)
        if deleted:  # not uploaded by this flush; by a predecessor only if its plan is ours
            self._drop_deleted(obj, name, rec, text, attempted=self.resumed)
            return
        if deleted is None:  # the mark's node does not answer: upload, noted for the fleet
            self._note_blind(first, name)
        started = time.monotonic()  # measured for metrics only; no decision uses it
        outcome: UploadOutcome = self.bucket.create_only(
            name,
            data,
            content_type=content_type(obj.sealed),
            metadata=obj.metadata(self.session_id),
            deadline=lease * UPLOAD_SHARE_OF_LEASE,
        )
        self.upload_seconds.append(time.monotonic() - started)
        deleted_since = self.store.deletion_mark(first.uid, first.cid)
        if deleted_since:  # deleted while uploading
            self._drop_deleted(obj, name, rec, text, attempted=True)
            return
        if deleted_since is None and deleted is not None:  # a delete may have missed it
            self._note_blind(first, name)
        seqs = [e.seq for e in obj.entries]
        self.store.commit_object(self.session_id, self.token, text, rec.delete_ids, seqs)
        self.counts[outcome] += 1
        self.counts["deleted"] += len(rec.delete_ids)
        self.counts["chunks"] += len(obj.entries)
        self.counts["bytes"] += len(data)

    def _note_blind(self, first: ChunkEntry, name: str) -> None:
        """The deleted mark cannot be read (on a cluster its node may be out while the
        session's serves): the object is stored anyway, and a note in the session's own
        shard names it, for the fleet to delete it once the mark says deleted."""
        self.store.note_blind_upload(self.session_id, self.token, first.uid, first.cid, name)
        self.counts["blind"] += 1

    def _drop_deleted(
        self,
        obj: ObjectPlan,
        name: str,
        rec: RecordedObject,
        text: str | bytes,
        *,
        attempted: bool,
    ) -> None:
        """The object's conversation was deleted (``delete_conversation_audio`` marks it
        before deleting its objects): delete the object in case this flush, or one before
        it that died after its upload, stored it after the delete had listed the prefix;
        then commit it as if stored, so its entries go and are never uploaded.

        An upload attempt the client gave up on (this flush's, or a dead predecessor's)
        can still land after that delete, at any time: first the conversation is queued
        to be listed again once such an attempt must have landed
        (AUDIOSYNC_DELETE_RECHECK_SECONDS, workers/deletions.py). Only when an attempt may
        exist (``attempted``: this flush uploaded, or it carries out a recorded plan whose
        flush may have): the queue keeps one re-check per conversation at the latest time
        asked, so a flush that uploaded nothing would only push the delete's re-check
        back, an hour with each flush of a device still streaming into the conversation."""
        first = obj.entries[0]
        if attempted:
            self.store.schedule_recheck(
                self.session_id, first.uid, first.cid, after_seconds=self.config.recheck_seconds
            )
        # renewed and bounded as an upload is: a delete outliving the lease would end the
        # flush "lease lost", uncounted, again with every flush while GCS deletes slowly
        lease = self.config.lease_seconds
        self.store.renew_lease(self.session_id, self.token, lease)
        self.bucket.delete(name, deadline=lease * UPLOAD_SHARE_OF_LEASE)
        seqs = [e.seq for e in obj.entries]
        self.store.commit_object(self.session_id, self.token, text, rec.delete_ids, seqs)
        self.counts["dropped_deleted"] += len(obj.entries)
        self.counts["deleted"] += len(rec.delete_ids)
        log.info(
            "session %s: %d chunk(s) of deleted conversation %s of user %s dropped, not uploaded",
            self.session_id,
            len(obj.entries),
            obj.entries[0].cid,
            obj.entries[0].uid,
        )

    def hand_back(self) -> FlushResult:
        """Due now, lease released; a recorded plan stays for the next flush to carry out."""
        try:
            self.store.hand_back(self.session_id, self.token, now=self.clock())
        except LeaseLostError:
            log.warning("flush of %s lost its lease before handing back", self.session_id)
            return self.result(skipped="lease lost")
        log.info("flush of %s handed back: the worker is shutting down", self.session_id)
        return self.result(skipped="handed back: the worker is shutting down")

    def failed(self, exc: Exception) -> FlushResult:
        """Count the failure, even past the lease (``WorkerStore.record_failure``). With
        the lease (its own, or free and taken again) back off, and park at the limit; when
        another flush holds the lease, only count: the session is that flush's now."""
        line = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        conflicts = int(isinstance(exc, ObjectConflictError))  # a name taken by other bytes
        now = self.clock()
        counted = self.store.record_failure(
            self.session_id,
            self.token,
            line,
            now=now,
            base=BACKOFF_BASE_SECONDS,
            cap=self.config.backoff_cap_seconds,
            lease_seconds=self.config.lease_seconds,
        )
        count = counted.count
        if not counted.holds_lease:
            log.warning(
                "flush of %s failed (attempt %d) after another flush took its lease: %s",
                self.session_id,
                count,
                line,
                exc_info=count == 1,
            )
            return self.result(skipped="lease lost", failed=line, object_conflicts=conflicts)
        if count == 1:
            log.exception("flush of %s failed (attempt 1): %s", self.session_id, line)
        else:
            log.warning("flush of %s failed (attempt %d): %s", self.session_id, count, line)
        parked = 0
        if count >= self.config.max_attempts:
            try:
                parked = self._park(f"parked after {count} failed flushes; last: {line}")
            except LeaseLostError:
                log.warning("flush of %s lost its lease while parking", self.session_id)
                return self.result(skipped="lease lost", failed=line)
            except StorageError as exc:  # cannot tell what is stored: parking could duplicate
                log.warning(
                    "session %s not parked: which objects of its plan are stored is unknown "
                    "(%s); it keeps backing off",
                    self.session_id,
                    exc,
                )
            except Exception as exc:  # Redis away: the next failure tries again
                log.warning("session %s: parking failed: %s", self.session_id, exc)
        return self.result(failed=line, parked=parked, object_conflicts=conflicts)

    def _settle_plan(self) -> None:
        """Before parking, commit the objects of the recorded plan that are stored already.

        Only the plan's head can be stored and not committed (each upload waits for the
        commit before it). Parking its entries instead would have a replay cut them anew
        into another object: the same chunks stored twice. An object of the plan's name is
        taken as stored when it holds exactly the bytes its entries rebuild (or, if some
        entries are gone, when it exists). Raises ``StorageError`` if the bucket cannot be
        asked; a plan that does not parse is left to the park (which deletes it).
        """
        recorded = self.store.read_plan(self.session_id)
        try:
            objects = [RecordedObject.loads(text) for text in recorded]
        except PlanError as exc:
            log.error(
                "session %s: parking with a plan that does not parse: %s", self.session_id, exc
            )
            return
        if not objects:
            return
        raw = self._entries_of(objects)
        deadline = self.config.lease_seconds * UPLOAD_SHARE_OF_LEASE
        for rec, text in zip(objects, recorded, strict=True):
            self.store.renew_lease(self.session_id, self.token, self.config.lease_seconds)
            entries = [
                validate_entry(self.session_id, i, raw[i], self.config.limits)
                for i in rec.ids
                if i in raw
            ]
            chunks = [e for e in entries if isinstance(e, ChunkEntry)]
            if len(chunks) == len(rec.ids):
                obj = ObjectPlan(entries=chunks)
                data = obj.data()
                stored = obj.name(data) == rec.name and self.bucket.holds(
                    rec.name, data, deadline=deadline
                )
            else:  # entries gone or changed: only the name can tell
                stored = self.bucket.stored(rec.name, deadline=deadline) is not None
            if not stored:
                return
            seqs = [e.seq for e in chunks]
            self.store.commit_object(self.session_id, self.token, text, rec.delete_ids, seqs)
            self.counts["already_stored"] += 1
            self.counts["deleted"] += len(rec.delete_ids)

    def _park(self, reason: str) -> int:
        """Move every entry the session has now to quarantine; new ones flow again."""
        self._settle_plan()
        up_to = self.store.last_entry_id(self.session_id) or b"0-0"  # 0-0: nothing to move
        moved, done = 0, False
        while not done:
            self.store.renew_lease(self.session_id, self.token, self.config.lease_seconds)
            batch, done = self.store.park_batch(
                self.session_id, self.token, reason, up_to, PARK_BATCH
            )
            moved += batch
        now = self.clock()
        self.store.finish(
            self.session_id, self.token, drop_ids=[], last_read_id=None, next_due=None, now=now
        )
        log.error(
            "session %s parked: %d entries moved to quarantine (%s); put them back with "
            "workers.quarantine.replay() once the cause is fixed",
            self.session_id,
            moved,
            reason,
        )
        return moved
