"""Thin Celery tasks: they only deal with being tasks; the logic is in drain/flush/planner.

Flow control (docs/ARCHITECTURE.md "Shards and flow control"):
- ``audiosync.sweep`` (beat, every AUDIOSYNC_SWEEP_INTERVAL_SECONDS) sends one
  ``audiosync.flush_shard`` per shard that has a due session and no task queued or running
  (the shard's dispatch hold, workers/store.py). However long the backlog, a shard has at
  most one task in the queue: a sweep never multiplies work, and a sweep that waited past
  its interval expires (the next one does the same, from fresh state).
- ``audiosync.flush_shard`` drains its shard with bounded concurrency for at most
  AUDIOSYNC_SHARD_TASK_SECONDS, then sends its own shard again if it is still due, and
  runs the sweep's dispatch itself when no one did within the interval: a pool busy with
  shard tasks keeps dispatching even while beat's sweeps wait behind them in the queue.
- ``audiosync.flush_session`` flushes one session (operators, benchmarks, tests).
- ``audiosync.backfill_conversation`` (queue ``audiosync.backfill``, workers with the reader
  extras and the key) compacts one conversation's legacy objects (workers/backfill.py).
- ``audiosync.recheck_deletions`` (beat, every AUDIOSYNC_SWEEP_INTERVAL_SECONDS) lists
  deleted conversations again and resolves blind uploads (workers/deletions.py).
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from typing import TYPE_CHECKING, Any

from backend_hooks.contract import redis_keys
from backend_hooks.contract.errors import AudioSyncError, ConfigError, InvalidInputError
from backend_hooks.contract.settings import Settings
from workers import backfill_plan, deletions, drain, flush, metrics, shutdown
from workers.celery_app import app
from workers.context import WorkerContext, get_context
from workers.flush import FlushResult

if TYPE_CHECKING:
    from workers import backfill

log = logging.getLogger(__name__)
#: Shard tasks one sweep sends at most (about 2 ms of broker work each): more than a fleet
#: can start in one interval; the shards left are sent by the next sweep or task end.
DISPATCH_LIMIT = 1024


def dispatch_due(ctx: WorkerContext, shards: list[int] | None = None) -> int:
    """Send a flush task for every shard (of ``shards``; default all) that has a due
    session and no task; returns how many were sent."""
    hold = ctx.settings.shard_task_seconds + 2 * ctx.settings.lease_seconds
    if shards is None:
        ctx.store.take_sweep(ctx.settings.sweep_interval_seconds)
        shards = ctx.store.all_shards()
    start = random.randrange(len(shards))  # a capped sweep favours no shard
    tokens = {shard: uuid.uuid4().hex for shard in shards[start:] + shards[:start]}
    chosen = ctx.store.dispatch(tokens, hold, limit=DISPATCH_LIMIT)
    with app.producer_or_acquire() as producer:  # one connection for the whole batch
        for shard in chosen:
            flush_shard.apply_async((shard,), task_id=tokens[shard], producer=producer)
    metrics.record_dispatch(len(chosen))
    return len(chosen)


@app.task(name="audiosync.sweep", ignore_result=True)  # type: ignore[untyped-decorator]
def sweep() -> int:
    """Send a flush task for every shard with due sessions (one per shard at most)."""
    return dispatch_due(get_context())


def _flush_one(ctx: WorkerContext, shard: int, session_id: str) -> FlushResult:
    started = time.monotonic()
    try:
        result = flush.flush_session(
            session_id,
            store=ctx.store.in_shard(shard),
            bucket=ctx.bucket,
            policy=ctx.policy,
            config=ctx.config,
            clock=ctx.clock_of(shard),
            should_stop=shutdown.stop_requested,
        )
    except Exception as exc:  # Redis refusing the lease, say: counted, then raised
        metrics.record_error(exc, time.monotonic() - started)
        raise
    metrics.record_flush(result, time.monotonic() - started)
    log.info("flushed %s: %s", session_id, result)
    return result


@app.task(name="audiosync.flush_shard", ignore_result=True, bind=True)  # type: ignore[untyped-decorator]
def flush_shard(self: Any, shard: int) -> dict[str, Any]:
    """Flush the due sessions of one shard, several at a time (workers/drain.py)."""
    ctx = get_context()
    settings = ctx.settings
    result = drain.drain_shard(
        shard,
        store=ctx.store,
        token=self.request.id or uuid.uuid4().hex,
        flush_one=lambda session_id: _flush_one(ctx, shard, session_id),
        concurrency=settings.flush_concurrency,
        budget_seconds=settings.shard_task_seconds,
        lease_seconds=settings.lease_seconds,
        clock=ctx.clock_of(shard),
        should_stop=shutdown.stop_requested,
    )
    log.info(
        "shard %s: %d flushes, %d objects, %d errors, stopped: %s",
        shard,
        result.flushes,
        result.objects,
        result.errors,
        "held by another task" if result.held_elsewhere else result.stopped,
    )
    if not shutdown.stop_requested() and not result.held_elsewhere:
        # Its own shard, if still due (its budget ran out: behind the shards queued); every
        # shard when no sweep walked them within the interval (beat's sweeps may be stuck
        # behind shard tasks in the queue). A late duplicate does neither.
        if ctx.store.take_sweep(settings.sweep_interval_seconds):
            dispatch_due(ctx, ctx.store.all_shards())
        elif result.stopped == "budget":
            dispatch_due(ctx, [shard])
    return {
        "shard": shard,
        "flushes": result.flushes,
        "objects": result.objects,
        "errors": result.errors,
        "stopped": result.stopped,
    }


@app.task(
    name="audiosync.flush_session", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)  # type: ignore[untyped-decorator]
def flush_session(session_id: str, shard: int | None = None) -> dict[str, Any]:
    """Flush one session now (in ``shard``; default: the one its id hashes to)."""
    ctx = get_context()
    if shard is None:  # a message of the release before shards, or an operator's
        shard = _shard_of_message(ctx, session_id)
    return _flush_one(ctx, shard, session_id).__dict__


def _shard_of_message(ctx: WorkerContext, session_id: str) -> int:
    """The release before shards sent ``flush_session(S)`` for sessions with its keys:
    those, when they hold S; otherwise the shard S hashes to."""
    legacy = ctx.store.in_shard(redis_keys.LEGACY_SHARD)
    if not ctx.store.is_cluster and ctx.store.client.exists(legacy.keys(session_id).chunks):
        return redis_keys.LEGACY_SHARD
    return ctx.store.keys(session_id).shard


#: The queue of backfill tasks: its workers need the reader extras (opuslib, libopus) and
#: ENCRYPTION_SECRET, which the flush fleet never holds, so they are a deployment of their
#: own: ``celery -A workers worker -Q audiosync.backfill`` (docs/ARCHITECTURE.md,
#: "Backfill"). The route is workers.celeryconfig's ``task_routes``; the prefix keeps it
#: apart from an adopter's own queues on a shared broker. The task is registered on every
#: worker (``inspect registered`` lists it everywhere), but workers/backfill.py, which
#: loads the read side (reader, object_reader, merge...), is imported when one runs:
#: a flush worker starts without the reader's code (docs/ARCHITECTURE.md, "Who imports
#: whom").
BACKFILL_QUEUE = "audiosync.backfill"


@app.task(
    name="audiosync.backfill_conversation",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)  # type: ignore[untyped-decorator]
def backfill_conversation(
    uid: str,
    conversation_id: str,
    delete: bool = False,
    sample_rate: int | None = None,
    min_age_seconds: float = backfill_plan.DEFAULT_MIN_AGE_SECONDS,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Backfill one conversation (workers/backfill.py). Idempotent and safe twice at once:
    uploads are create-only, sources are deleted only once a verified object holds them,
    and a run resumes whatever an earlier one left. Where opuslib or the secret is missing
    it logs why and returns the error (no retry: the worker is misdeployed)."""
    from workers import backfill  # the read side: loaded by a backfill worker only

    try:
        for flag, value in (("delete", delete), ("dry_run", dry_run)):
            if not isinstance(value, bool):  # "false" from a producer is truthy: delete
                raise InvalidInputError(f"{flag} must be true or false, got {value!r}")
        bf = _backfill_context(backfill_plan.checked_min_age(min_age_seconds))
        report = backfill.backfill_conversation(
            bf,
            uid,
            conversation_id,
            now_us=time.time_ns() // 1000,
            delete=delete,
            dry_run=dry_run,
            sample_rate=sample_rate,
        )
    except (ConfigError, InvalidInputError) as exc:
        log.error("backfill of conversation %s of user %s refused: %s", conversation_id, uid, exc)
        return {"uid": uid, "conversation_id": conversation_id, "error": str(exc)}
    except AudioSyncError as exc:  # GCS failed: what was done stays, a rerun resumes
        log.error("backfill of conversation %s of user %s stopped: %s", conversation_id, uid, exc)
        return {"uid": uid, "conversation_id": conversation_id, "error": str(exc)}
    for line in report.lines():
        log.info("backfill %s/%s: %s", uid, conversation_id, line)
    return report.as_dict()


@functools.lru_cache(maxsize=8)
def _backfill_context(min_age_seconds: float) -> backfill.Backfill:
    from workers import backfill

    return backfill.Backfill.from_settings(
        Settings.from_env(role="backfill"), min_age_seconds=min_age_seconds
    )


@app.task(name="audiosync.recheck_deletions", ignore_result=True)  # type: ignore[untyped-decorator]
def recheck_deletions() -> dict[str, Any]:
    """List deleted conversations again once abandoned uploads must have landed, and settle
    uploads made while their deleted mark could not be read (workers/deletions.py)."""
    ctx = get_context()
    result = deletions.run(
        ctx.store,
        ctx.bucket,
        recheck_seconds=ctx.settings.delete_recheck_seconds,
        backoff_cap_seconds=ctx.settings.flush_backoff_max_seconds,
    )
    metrics.record_deletion_run(result)
    if result != deletions.DeletionRun():
        log.info("deletion work: %s", result)
    return result.__dict__
