"""``celery -A workers audiosync status``: how far behind the fleet is, and what Redis
holds (workers/operations.py reads it); with ``--max-lag``, a probe."""

from __future__ import annotations

import sys

import click

from workers import operations
from workers.cli.base import emit, seconds
from workers.context import redis_only_store
from workers.store import eviction_warnings


@click.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--max-lag",
    type=float,
    default=None,
    callback=seconds,
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
def status_command(as_json: bool, max_lag: float | None, scan_limit: int) -> None:
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
    emit(as_json, data, lines)
    if max_lag is not None and report.lag_seconds > max_lag:
        sys.exit(2)
