"""Finishing conversation deletes: what the fleet does after ``delete_conversation_audio``.

The delete marks the conversation, then deletes what it lists; a flush looks at the mark
before and after each upload. Two things can still leave an object in a deleted
conversation, and ``run`` (the ``audiosync.recheck_deletions`` task, on beat every
AUDIOSYNC_SWEEP_INTERVAL_SECONDS) finds them:

- **An upload attempt its client gave up on lands late.** google-cloud-storage abandons an
  attempt after its per-attempt timeout and retries; the abandoned request may still reach
  GCS and be stored later, after the delete listed the conversation, or after the flush
  deleted the retry's object. So the delete, and a flush that dropped an object of a
  deleted conversation, queue a *re-check* in a shard: AUDIOSYNC_DELETE_RECHECK_SECONDS
  later the conversation's prefixes are listed again and what is found is deleted.
- **A flush could not read the mark** (on a Redis Cluster it may live on a node that is
  out while the session's serves). It uploaded anyway, with a *note* in its shard naming
  the object. Once the mark can be read: deleted, the object is deleted and a re-check
  queued (attempts of that upload may land later); not deleted, the note is dropped.

Bounded: at most ``limit`` items a run, shards taken from a random one on. On a cluster a
node that does not answer stops only its own shards' items, and, for the notes, those
whose mark lives on it: a run reads past the notes waiting for their mark's node (at most
``WAITING_LIMIT`` a run, one look at each silent node) without spending ``limit`` on
them, so the notes behind them, whose mark answers, are resolved. A failing item stays,
with its attempts and last error in the shard's ``deletion-failures`` hash (status and
metrics show them); a failing re-check is due again after a backoff (1 s doubling,
capped). Nothing is dropped unresolved.

What if the process is killed here? A claimed re-check comes due again when its claim
ends; a note stays until resolved. Every step is idempotent (deleting what is gone is not
an error), so a second run redoes at most one item's GCS requests.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from backend_hooks.adapters import redis_store
from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.contract import naming, redis_keys
from workers.store import WorkerStore

log = logging.getLogger(__name__)
#: Items (re-checks and notes) one run carries out at most: a run every sweep interval
#: (5 s) then takes about 40 deletes a second, far more than conversations are deleted.
RUN_LIMIT = 200
#: The longest a re-check is claimed by a run before another run may take it again.
CLAIM_SECONDS = 300.0
BACKOFF_BASE_SECONDS = 1.0
#: Notes waiting for their mark's node that one run reads past at most (they cost a read
#: in a page of ``NOTES_PAGE``, no request of their own).
WAITING_LIMIT = 10 * RUN_LIMIT
NOTES_PAGE = RUN_LIMIT


@dataclass
class DeletionRun:
    rechecks: int = 0  # re-checks carried out
    late_objects: int = 0  # objects they found in deleted conversations (and deleted)
    blind_resolved: int = 0  # notes whose mark could be read
    blind_deleted: int = 0  # ... of a deleted conversation: their object deleted
    blind_waiting: int = 0  # notes whose mark still cannot be read
    failed: int = 0  # items that failed this run (they stay, retried)
    left_over: bool = False  # stopped at the limit with work left

    def items(self) -> int:
        """Items this run has carried out or tried (what its ``limit`` counts; a note
        still waiting for its mark is bounded by ``WAITING_LIMIT`` instead)."""
        return self.rechecks + self.blind_resolved + self.failed


def run(
    store: WorkerStore,
    bucket: GcsBucket,
    *,
    recheck_seconds: float,
    backoff_cap_seconds: float,
    limit: int = RUN_LIMIT,
) -> DeletionRun:
    """Carry out the due re-checks and the blind-upload notes of every shard (see the
    module docstring), at most ``limit`` of them."""
    result = DeletionRun()
    shards = store.all_shards()
    start = random.randrange(len(shards))  # a capped run favours no shard
    worker = _Run(store, bucket, recheck_seconds, backoff_cap_seconds, result)
    for shard in store.shards_with_deletion_work(shards[start:] + shards[:start]):
        left = limit - result.items()
        if left <= 0:
            result.left_over = True
            break
        try:
            worker.shard(shard, left)
        except redis_store.REDIS_ERRORS as exc:
            if not store.is_cluster:
                raise
            log.warning("deletion work of shard %s: its node does not answer: %s", shard, exc)
    return result


class _Run:
    def __init__(
        self,
        store: WorkerStore,
        bucket: GcsBucket,
        recheck_seconds: float,
        backoff_cap_seconds: float,
        result: DeletionRun,
    ) -> None:
        self.store, self.bucket, self.result = store, bucket, result
        self.recheck_seconds = recheck_seconds
        self.backoff_cap = backoff_cap_seconds
        self.silent_nodes: set[str | None] = set()  # mark nodes that did not answer

    def shard(self, shard: int, limit: int) -> None:
        claim = min(CLAIM_SECONDS, self.recheck_seconds / 2)  # a claim ends before any
        claimed, members = self.store.claim_rechecks(shard, limit, claim)  # new due time
        for member in members:
            self.recheck(shard, member, claimed)
        self.notes(shard, limit - len(members))

    def notes(self, shard: int, budget: int) -> None:
        """Resolve up to ``budget`` of the shard's notes, oldest first, reading past those
        left in place (waiting for their mark's node, failed, noted again): the next page
        starts after them, since the resolved ones leave the sorted set."""
        stayed = 0
        while budget > 0:
            page = self.store.blind_uploads(shard, NOTES_PAGE, offset=stayed)
            for member, score in page:
                if budget <= 0:
                    return
                if self.result.blind_waiting >= WAITING_LIMIT:
                    self.result.left_over = True
                    return
                before = self.result.items()
                stayed += self.resolve(shard, member, score)
                budget -= self.result.items() - before
            if len(page) < NOTES_PAGE:
                return

    def recheck(self, shard: int, member: bytes, claimed: bytes) -> None:
        try:
            uid, cid = redis_keys.parse_deletion_item(member, 2)
            prefixes = naming.conversation_prefixes(uid, cid)
            found = sum(self.bucket.delete_prefix(p) for p in prefixes.values())
        except Exception as exc:  # GCS failing, an unreadable item: it stays, retried
            self.failed(shard, "recheck", member, exc, claimed)
            return
        self.store.recheck_done(shard, member, claimed)
        self.result.rechecks += 1
        self.result.late_objects += found
        if found:
            log.warning(
                "deleted conversation %s of user %s: listed again, %d object(s) found and "
                "deleted (upload attempts that landed after the delete)",
                cid,
                uid,
                found,
            )

    def resolve(self, shard: int, member: bytes, score: bytes) -> bool:
        """Settle one note; True if it stays in the queue (waiting, failed, noted again)."""
        try:
            uid, cid, name = redis_keys.parse_deletion_item(member, 3)
        except ValueError as exc:
            self.failed(shard, "blind", member, exc, None)
            return True
        node = self.store.mark_node(uid, cid)
        if node in self.silent_nodes:
            self.result.blind_waiting += 1
            return True
        deleted = self.store.deletion_mark(uid, cid)
        if deleted is None:  # its node still does not answer: the note waits
            self.silent_nodes.add(node)
            self.result.blind_waiting += 1
            return True
        if deleted:
            try:
                self.bucket.delete(name)
            except Exception as exc:
                self.failed(shard, "blind", member, exc, None)
                return True
            log.warning(
                "%s, uploaded while the deleted mark could not be read, belongs to deleted "
                "conversation %s of user %s: deleted",
                name,
                cid,
                uid,
            )
            self.result.blind_deleted += 1
        recheck = redis_keys.deletion_item(uid, cid) if deleted else None
        went = self.store.resolve_blind_upload(
            shard, member, score, recheck=recheck, after_seconds=self.recheck_seconds
        )
        self.result.blind_resolved += 1
        return not went

    def failed(
        self, shard: int, kind: str, member: bytes, exc: Exception, claimed: bytes | None
    ) -> None:
        line = f"{type(exc).__name__}: {exc}"
        attempts = self.store.deletion_work_failed(
            shard,
            kind,
            member,
            line,
            claimed=claimed,
            base=BACKOFF_BASE_SECONDS,
            cap=self.backoff_cap,
        )
        self.result.failed += 1
        log.warning(
            "deletion %s %s of shard %s failed (attempt %d; it stays and is tried again): %s",
            kind,
            member.decode(errors="replace"),
            shard,
            attempts,
            line,
        )
