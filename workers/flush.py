"""Flushing one session: plan, upload create-only, and only then delete from the stream.

What if the process is killed here?
- before the intent is written: nothing changed; the sweep retries after the lease time.
- after the intent, during uploads: the entries are still in the stream; the next flush
  cuts at the same entry, so it writes the same bytes under the same names; objects
  already stored answer 412 and are checked equal.
- after the uploads, before the commit: the same, with every object answering 412.
- the commit is one script: stored entries, intent and the new due time change together.
  Entries a pusher appended after the read make the session due now, so the next sweep
  plans them; an empty stream takes its due entry with it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from backend_hooks.gcs import GcsBucket
from backend_hooks.redis_store import WorkerStore
from workers.planner import Policy, next_look, plan_flush

log = logging.getLogger(__name__)
READ_LIMIT = 2000  # entries per flush: about 2 h 45 min of 5 s chunks


@dataclass(frozen=True)
class FlushResult:
    session_id: str
    objects_created: int = 0
    objects_already_stored: int = 0
    entries_deleted: int = 0
    next_due: float | None = None
    skipped: str | None = None


def content_type(sealed: bool) -> str:
    return "application/octet-stream" if sealed else "audio/ogg"


def flush_session(
    session_id: str,
    *,
    store: WorkerStore,
    bucket: GcsBucket,
    policy: Policy,
    clock: Callable[[], float],
    lease_seconds: float,
) -> FlushResult:
    token = uuid.uuid4().hex
    if not store.acquire_lease(session_id, token, lease_seconds):
        return FlushResult(session_id, skipped="another worker holds the lease")
    try:
        entries = store.read_entries(session_id, READ_LIMIT)
        complete = len(entries) < READ_LIMIT
        plan = plan_flush(
            entries,
            clock(),
            policy,
            complete=complete,
            pinned_last_id=store.read_intent(session_id),
        )
        created = already = 0
        if plan.objects:
            store.write_intent(session_id, plan.objects[-1].entries[-1].entry_id)
        for obj in plan.objects:
            data = obj.data()
            outcome = bucket.create_only(
                obj.name(data),
                data,
                content_type=content_type(obj.sealed),
                metadata=obj.metadata(session_id),
            )
            created += outcome == "created"
            already += outcome == "already_stored"
        deleted = set(plan.delete_ids)
        remaining = [e for e in entries if e.entry_id not in deleted]
        now = clock()
        due = next_look(remaining, now, policy, complete=complete)
        store.commit(
            session_id,
            plan.delete_ids,
            last_read_id=entries[-1].entry_id if entries else None,
            next_due=due,
            now=now,
        )
        return FlushResult(session_id, created, already, len(plan.delete_ids), due)
    finally:
        store.release_lease(session_id, token)
