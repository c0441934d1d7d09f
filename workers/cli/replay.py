"""``celery -A workers audiosync replay``: flush sessions now, or requeue their
quarantined entries after a fix (workers/operations.py does it)."""

from __future__ import annotations

import sys

import click

from workers import operations
from workers.cli.base import emit
from workers.context import redis_only_store


@click.command(name="replay")
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
def replay_command(
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
        emit(
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
    emit(
        as_json,
        {"dry_run": dry_run, "flush_now": found, "not_in_redis": sorted(set(wanted) - set(found))},
        [f"{verb} make {len(found)} of {len(wanted)} sessions due now"],
    )
