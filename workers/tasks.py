"""Thin Celery tasks: they only deal with being tasks; the logic is in flush/planner."""

from __future__ import annotations

import logging
import time
from typing import Any

from workers import flush, metrics, shutdown
from workers.celery_app import app
from workers.context import get_context

log = logging.getLogger(__name__)
SWEEP_BATCH = 500  # sessions claimed per sweep and shard


@app.task(name="audiosync.sweep", ignore_result=True)  # type: ignore[untyped-decorator]
def sweep() -> int:
    """Dispatch a flush for every session whose due time has come."""
    ctx = get_context()
    now = ctx.clock()
    sessions = ctx.store.claim_due(now, SWEEP_BATCH, now + ctx.settings.lease_seconds)
    for session_id in sessions:
        flush_session.delay(session_id)
    if len(sessions) == SWEEP_BATCH:
        sweep.delay()  # more are due: keep going without waiting for the next beat
    return len(sessions)


@app.task(
    name="audiosync.flush_session", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)  # type: ignore[untyped-decorator]
def flush_session(session_id: str) -> dict[str, Any]:
    ctx = get_context()
    started = time.monotonic()
    try:
        result = flush.flush_session(
            session_id,
            store=ctx.store,
            bucket=ctx.bucket,
            policy=ctx.policy,
            config=ctx.config,
            clock=ctx.clock,
            should_stop=shutdown.stop_requested,
        )
    except Exception as exc:  # Redis refusing the lease, say: counted, then Celery's
        metrics.record_error(exc, time.monotonic() - started)
        raise
    metrics.record_flush(result, time.monotonic() - started)
    log.info("flushed %s: %s", session_id, result)
    return result.__dict__
