"""``celery -A workers audiosync backfill``: compact a user's legacy objects, here or on
the fleet's ``audiosync.backfill`` queue.

The backfill itself is the reader's code (workers/backfill.py, the codec): it is imported
inside the command only, so that loading the ``audiosync`` plugin, which Celery does for
every ``celery`` command, a flush worker's included, loads none of the read side.
"""

from __future__ import annotations

import sys
import time

import click

from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.errors import AudioSyncError, ConfigError, InvalidInputError
from backend_hooks.contract.ids import validate_id
from backend_hooks.contract.settings import Settings
from workers import backfill_plan
from workers.cli.base import emit

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


@click.command(name="backfill")
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
        emit(
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
    emit(as_json, report.as_dict(), report.lines())
    if report.failed:
        sys.exit(1)
