"""``celery -A workers audiosync status|replay|backfill|exporter``: the fleet's operator
commands, and the exporter of the fleet-wide gauges.

Registered as a Celery command plugin (the ``celery.commands`` entry point in
pyproject.toml), so it shows in ``celery --help`` and takes Celery's ``-A``. The logic is in
workers/operations.py; this module only reads options and prints.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from typing import Any

import click
import redis

from backend_hooks.audio_format import SUPPORTED_RATES
from backend_hooks.build_info import __version__
from backend_hooks.errors import AudioSyncError, ConfigError, InvalidInputError
from backend_hooks.ids import validate_id
from backend_hooks.settings import Settings, shown_url
from workers import backfill_plan, metrics, operations
from workers.context import redis_only_store
from workers.store import eviction_warnings


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except redis.RedisError as exc:  # one line, not a traceback
            url = shown_url(Settings.from_env(role="fleet").redis_url)
            raise click.ClickException(f"Redis at {url} is not answering: {exc}") from None


def _emit(as_json: bool, data: Any, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        for line in lines:
            click.echo(line)


#: How long ``backfill --fleet`` waits for the workers' answers to "which queues?".
INSPECT_TIMEOUT = 2.0


def _consumers(queue: str, timeout: float) -> tuple[int, list[str]]:
    """How many workers answered within ``timeout`` (Celery's ``inspect active_queues``,
    a broadcast over the broker), and the names of those that consume ``queue``."""
    from workers import app

    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    consuming = [
        name
        for name, queues in replies.items()
        if any(q.get("name") == queue for q in queues or [])
    ]
    return len(replies), sorted(consuming)


def _no_consumer(queue: str, answered: int, timeout: float) -> str:
    return (
        f"no worker consumes the '{queue}' queue ({answered} worker(s) answered within "
        f"{timeout:g} s): the tasks wait in it until one does, e.g. "
        f"`celery -A workers worker -Q {queue}` with the reader extras and ENCRYPTION_SECRET"
    )


@click.group(name="audiosync", cls=_Group)
@click.version_option(__version__, prog_name="audiosync", message="%(prog)s %(version)s")
def audiosync() -> None:
    """audiosync fleet operations: lag and Redis holdings, flushing now, replays, backfill,
    the fleet-wide gauges' exporter."""


def _seconds(_ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A number of seconds: finite and not negative (``nan`` would pass every comparison)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"must be a finite number of seconds >= 0, got {value!r}")
    return value


@audiosync.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--max-lag",
    type=float,
    default=None,
    callback=_seconds,
    help="Exit with status 2 when the lag (the longest a due session has waited, or the age "
    "of the oldest audio in Redis) is longer than this (seconds): a probe.",
)
@click.option(
    "--scan-limit",
    type=click.IntRange(1, operations.MAX_SCAN_LIMIT),
    default=operations.SCAN_LIMIT,
    show_default=True,
    help="Sessions read at most (and as many quarantined ones); counts past it are shown "
    "with a '+'.",
)
def status(as_json: bool, max_lag: float | None, scan_limit: int) -> None:
    """How far behind the fleet is, and what Redis holds."""
    report = operations.fleet_status(redis_only_store(), scan_limit=scan_limit)
    busy = [s for s in report.shards if s.sessions]
    lines = [
        f"{len(report.shards)} shards: {sum(s.sessions for s in report.shards)} sessions, "
        f"{sum(s.due for s in report.shards)} due",
        *(
            f"  shard {'legacy' if s.shard < 0 else s.shard}: {s.sessions} sessions, {s.due} "
            f"due, oldest due waited {s.oldest_due_seconds:.1f} s"
            for s in busy
        ),
    ]
    more = "+" if report.truncated else ""
    lines += [
        f"oldest audio in Redis: {report.oldest_entry_seconds:.1f} s old; "
        f"lag {report.lag_seconds:.1f} s",
        f"streams held: {report.streams}{more}, {report.entries}{more} entries, "
        f"{report.bytes_held:,}{more} bytes; plans in flight: {report.plans}",
        f"quarantine: {report.quarantined_entries} entries in {report.quarantined_sessions} "
        f"sessions, {report.parked_sessions} parked",
        *(f"  {count} x {reason}..." for reason, count in sorted(report.reasons.items())),
        f"deleted conversations: {report.deletions.rechecks} re-checks queued (most overdue "
        f"{report.deletions.recheck_overdue_seconds:.1f} s), {report.deletions.blind_uploads} "
        f"blind uploads to settle (oldest {report.deletions.blind_oldest_seconds:.1f} s), "
        f"{report.deletions.failing} failing",
    ]
    policies = redis_only_store().memory_policies()  # noeviction, or audio can be dropped
    warnings = eviction_warnings(policies)
    lines += [f"WARNING: {line}" for line in warnings]
    data = {**report.as_dict(), "maxmemory_policy": policies, "warnings": warnings}
    _emit(as_json, data, lines)
    if max_lag is not None and report.lag_seconds > max_lag:
        sys.exit(2)


@audiosync.command()
@click.option("--session", "sessions", multiple=True, help="A session id (repeatable).")
@click.option("--user", "uid", default=None, help="Every session of this user in Redis.")
@click.option("--conversation", "cid", default=None, help="With --user: of this conversation.")
@click.option(
    "--quarantined",
    is_flag=True,
    help="Requeue quarantined entries (of the sessions named, or all) instead.",
)
@click.option("--reason", default=None, help="With --quarantined: only reasons containing this.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def replay(
    sessions: tuple[str, ...],
    uid: str | None,
    cid: str | None,
    quarantined: bool,
    reason: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Flush sessions now, or requeue their quarantined entries after a fix.

    Running it twice writes nothing new: flushing is idempotent, and requeued entries are
    no longer in quarantine.
    """
    store = redis_only_store()
    if cid is not None and uid is None:
        raise click.UsageError("--conversation goes with --user")
    named = bool(sessions) or uid is not None  # a selection that matches nothing is nothing
    chosen: list[operations.SessionRef] = []
    missing = []
    for session_id in sessions:
        found_in = operations.locate(store, session_id)
        chosen += [r for r in found_in if r not in chosen]
        if not found_in:
            missing.append(session_id)
    if uid is not None:
        find = operations.quarantined_sessions_of if quarantined else operations.sessions_of
        chosen += [r for r in find(store, uid, cid) if r not in chosen]
    verb = "would" if dry_run else "did"
    if quarantined:
        targets = chosen if named else operations.quarantined_refs(store, operations.SCAN_LIMIT)
        items = []
        with click.progressbar(targets, label="requeueing", file=sys.stderr) as bar:
            for ref in bar:
                moved = operations.requeue_session(store, ref, reason=reason, dry_run=dry_run)
                if moved:
                    items.append(operations.ReplayItem(ref.session_id, moved))
        total = sum(i.entries for i in items)
        _emit(
            as_json,
            {"dry_run": dry_run, "sessions": {i.session_id: i.entries for i in items}},
            [f"{i.session_id}: {i.entries} entries" for i in items]
            + [f"{verb} requeue {total} entries of {len(items)} sessions"],
        )
        return
    if not named:
        raise click.UsageError("name sessions (--session, --user) or pass --quarantined")
    found = [r.session_id for r in operations.flush_now(store, chosen, dry_run=dry_run)]
    wanted = sorted({r.session_id for r in chosen} | set(missing))
    _emit(
        as_json,
        {"dry_run": dry_run, "flush_now": found, "not_in_redis": sorted(set(wanted) - set(found))},
        [f"{verb} make {len(found)} of {len(wanted)} sessions due now"],
    )


@audiosync.command(name="backfill")
@click.option("--uid", required=True, help="The user whose legacy objects are compacted.")
@click.option(
    "--conversation",
    "conversations",
    multiple=True,
    help="Only this conversation (repeatable); default: every conversation of the user.",
)
@click.option(
    "--delete",
    is_flag=True,
    help="Delete each legacy object once a verified new object holds all of its audio.",
)
@click.option("--dry-run", is_flag=True, help="Read and plan; write and delete nothing.")
@click.option(
    "--sample-rate",
    type=click.Choice([str(r) for r in SUPPORTED_RATES]),
    default=None,
    help="The rate of the raw legacy PCM (default: inferred per conversation; a "
    "conversation whose rate cannot be told is skipped).",
)
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=backfill_plan.DEFAULT_MIN_AGE_SECONDS,
    show_default=True,
    help="Seconds: legacy objects whose newest chunk is younger are left alone (a legacy "
    "uploader may still be writing).",
)
@click.option(
    "--fleet",
    is_flag=True,
    help="Enqueue one task per conversation on the 'audiosync.backfill' queue instead of "
    "working here; warns when no worker consumes that queue.",
)
@click.option(
    "--inspect-timeout",
    type=click.FloatRange(min=0.1, max=600),
    default=INSPECT_TIMEOUT,
    show_default=True,
    help="With --fleet: seconds to wait for the workers to say which queues they consume.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backfill_command(
    uid: str,
    conversations: tuple[str, ...],
    delete: bool,
    dry_run: bool,
    sample_rate: str | None,
    min_age: float,
    fleet: bool,
    inspect_timeout: float,
    as_json: bool,
) -> None:
    """Compact a user's legacy 5 s objects into 60 s objects of the new format.

    Same protection level, verified (same chunk starts, exact sample counts) before any
    legacy object is deleted, and only with --delete. Resumable and idempotent: a second
    run writes nothing new. Needs opuslib and ENCRYPTION_SECRET (the reader's extras).
    """
    from workers import backfill  # the reader's code: only this command loads it

    try:
        validate_id(uid, "uid")
        for cid in conversations:
            validate_id(cid, "conversation_id")
        settings = Settings.from_env(role="backfill")
        if not fleet:
            backfill.load_codec()
        bf = backfill.Backfill.from_settings(settings, min_age_seconds=min_age)
    except (ConfigError, InvalidInputError) as exc:
        raise click.ClickException(str(exc)) from None
    rate = None if sample_rate is None else int(sample_rate)
    now_us = time.time_ns() // 1000
    if fleet:
        from workers.tasks import BACKFILL_QUEUE, backfill_conversation

        if conversations:
            chosen = sorted(set(conversations))
        else:
            try:
                listing = bf.bucket.list(f"chunks/{uid}/")
            except AudioSyncError as exc:
                raise click.ClickException(str(exc)) from None
            chosen = sorted(backfill.conversations_of(listing, uid))
        for cid in chosen:
            backfill_conversation.delay(uid, cid, delete, rate, min_age, dry_run)
        answered, consumers = _consumers(BACKFILL_QUEUE, inspect_timeout)
        warnings = [] if consumers else [_no_consumer(BACKFILL_QUEUE, answered, inspect_timeout)]
        for line in warnings:
            click.echo(f"WARNING: {line}", err=True)
        _emit(
            as_json,
            {
                "enqueued": chosen,
                "queue": BACKFILL_QUEUE,
                "consumers": consumers,
                "warnings": warnings,
            },
            [
                f"enqueued {len(chosen)} conversation(s) on the '{BACKFILL_QUEUE}' queue",
                *(f"consumed by {name}" for name in consumers),
            ],
        )
        return
    with click.progressbar(length=0, label="backfilling", file=sys.stderr) as bar:

        def on_total(n: int) -> None:
            bar.length = n

        try:
            report = backfill.backfill_user(
                bf,
                uid,
                conversations,
                now_us=now_us,
                delete=delete,
                dry_run=dry_run,
                sample_rate=rate,
                progress=bar.update,
                on_total=on_total,
            )
        except AudioSyncError as exc:  # the listing failed: nothing was done
            raise click.ClickException(str(exc)) from None
    _emit(as_json, report.as_dict(), report.lines())
    if report.failed:
        sys.exit(1)


@audiosync.command(name="exporter")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve /metrics on this port (default: AUDIOSYNC_METRICS_PORT, else 9808).",
)
@click.option("--address", default="0.0.0.0", show_default=True, help="The address to listen on.")
def exporter_command(port: int | None, address: str) -> None:
    """Serve the fleet-wide gauges on /metrics until SIGTERM: one per deployment.

    The lag per shard (due sessions, oldest due age), the audio held, the quarantine and
    Redis up, read from Redis at most once per AUDIOSYNC_EXPORTER_CACHE_SECONDS and within
    AUDIOSYNC_EXPORTER_READ_SECONDS (a node that does not answer by then is reported out).
    The workers' metrics port serves only their own counters.
    """
    from workers import exporter

    try:
        settings = Settings.from_env(role="fleet")
        chosen = port or metrics.metrics_port() or exporter.DEFAULT_PORT
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    collector = exporter.FleetCollector.from_settings(settings)

    def ready() -> None:
        click.echo(
            f"audiosync exporter: the fleet-wide gauges on http://{address}:{chosen}/metrics "
            f"(Redis {shown_url(settings.redis_url)}, read at most every "
            f"{settings.exporter_cache_seconds:g} s, within "
            f"{settings.exporter_read_seconds:g} s)",
            err=True,
        )

    try:
        exporter.serve_until(stop, collector, chosen, address, on_ready=ready)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {address}:{chosen}: {exc}") from None
    click.echo("audiosync exporter: stopped", err=True)
