"""Quarantine for operators: what is there and why, and putting it back (``replay``).

Entries reach a session's quarantine stream in one atomic step with their removal from the
session stream (workers/store.py): an entry that failed validation, a chunk repeating a
seq with other content, or every entry of a session parked after
``AUDIOSYNC_FLUSH_MAX_ATTEMPTS`` failed flushes. Nothing else ever leaves a stream except
into a stored object. ``replay`` moves entries back to the end of their session stream,
again one atomic step per batch, and makes the session due now; an entry that is still bad
comes straight back with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.store import WorkerStore

REPLAY_BATCH = 200


def replay(store: WorkerStore, session_id: str, quarantine_ids: Sequence[bytes] = ()) -> int:
    """Put a session's quarantined entries (all, or those ids) back; returns how many."""
    moved = 0
    if quarantine_ids:
        for start in range(0, len(quarantine_ids), REPLAY_BATCH):
            batch = quarantine_ids[start : start + REPLAY_BATCH]
            moved += store.replay_batch(session_id, REPLAY_BATCH, batch)[0]
    else:
        while True:
            count, left = store.replay_batch(session_id, REPLAY_BATCH)
            moved += count
            if count == 0 or left == 0:
                break
    store.forget_if_empty(session_id)
    return moved
