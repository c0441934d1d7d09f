"""``celery -A workers audiosync status|replay``: the fleet's operator commands.

Registered as a Celery command plugin (the ``celery.commands`` entry point in
pyproject.toml), so it shows in ``celery --help`` and takes Celery's ``-A``. The logic is in
workers/operations.py; this module only reads options and prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from workers import operations
from workers.context import get_context


def _emit(as_json: bool, data: Any, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        for line in lines:
            click.echo(line)


@click.group(name="audiosync")
def audiosync() -> None:
    """audiosync fleet operations: lag and Redis holdings, flushing now, replays."""


@audiosync.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--max-lag",
    type=float,
    default=None,
    help="Exit with status 2 when a due session has waited longer than this (seconds): a probe.",
)
@click.option("--scan-limit", type=int, default=operations.SCAN_LIMIT, show_default=True)
def status(as_json: bool, max_lag: float | None, scan_limit: int) -> None:
    """How far behind the fleet is, and what Redis holds."""
    report = operations.fleet_status(get_context().store, scan_limit=scan_limit)
    lines = [
        f"shard {s.shard}: {s.sessions} sessions, {s.due} due, oldest due waited "
        f"{s.oldest_due_seconds:.1f} s"
        for s in report.shards
    ]
    more = "+" if report.truncated else ""
    lines += [
        f"streams held: {report.streams}{more}, {report.entries}{more} entries, "
        f"{report.bytes_held:,}{more} bytes; plans in flight: {report.plans}",
        f"quarantine: {report.quarantined_entries} entries in {report.quarantined_sessions} "
        f"sessions, {report.parked_sessions} parked",
        *(f"  {count} x {reason}..." for reason, count in sorted(report.reasons.items())),
    ]
    _emit(as_json, report.as_dict(), lines)
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
    store = get_context().store
    chosen = list(sessions)
    if uid is not None:
        chosen += operations.sessions_of(store, uid, cid)
    elif cid is not None:
        raise click.UsageError("--conversation goes with --user")
    verb = "would" if dry_run else "did"
    if quarantined:
        targets = chosen or store.quarantined_sessions(operations.SCAN_LIMIT)
        items = []
        with click.progressbar(targets, label="requeueing", file=sys.stderr) as bar:
            for session_id in bar:
                moved = operations.requeue_session(
                    store, session_id, reason=reason, dry_run=dry_run
                )
                if moved:
                    items.append(operations.ReplayItem(session_id, moved))
        total = sum(i.entries for i in items)
        _emit(
            as_json,
            {"dry_run": dry_run, "sessions": {i.session_id: i.entries for i in items}},
            [f"{i.session_id}: {i.entries} entries" for i in items]
            + [f"{verb} requeue {total} entries of {len(items)} sessions"],
        )
        return
    if not chosen:
        raise click.UsageError("name sessions (--session, --user) or pass --quarantined")
    found = operations.flush_now(store, chosen, dry_run=dry_run)
    _emit(
        as_json,
        {"dry_run": dry_run, "flush_now": found, "not_in_redis": sorted(set(chosen) - set(found))},
        [f"{verb} make {len(found)} of {len(chosen)} sessions due now"],
    )
