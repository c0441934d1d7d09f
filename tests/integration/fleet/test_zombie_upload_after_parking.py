"""Parking settles the plan against the bucket, but a zombie's upload can land after it. A
documented gap (docs/ARCHITECTURE.md, "Known gaps"), kept here
as a strict xfail: it needs a flush frozen through ``AUDIOSYNC_FLUSH_MAX_ATTEMPTS``
consecutive failures (about 39 minutes with the defaults).

Invariant 3 (docs/ARCHITECTURE.md): "a zombie's late upload is an object the plan holds
anyway" and "Parking settles the plan against the bucket first ... so a replay never
re-cuts stored chunks". ``_settle_plan`` asks the bucket once; an upload by a flush that
stalled past its lease (SIGSTOP, a GC pause, a frozen VM: the chaos run's "zombies") can
still land afterwards. Parking then deletes the plan, so the object is held by no plan and
its seqs are in no bitmap; when the operator replays, the entries are cut anew, and if the
new cut differs (here: more chunks had arrived behind the old, aged tail), the chunks are
stored a second time under another name.

``max_attempts=1`` stands for AUDIOSYNC_FLUSH_MAX_ATTEMPTS failures in a row (16 with
backoff up to 300 s): the zombie only has to stay stalled through them.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

import pytest

from backend_hooks.contract.errors import StorageError
from tests.integration.flushing import (
    CHUNK,
    CueBucket,
    FakeClock,
    flush,
    in_thread,
    lease_expires,
    push_chunks,
    read_entries,
    stall_until,
    stored_seqs,
)
from workers import quarantine
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def _gcs_down() -> None:
    raise StorageError("upload failed: 503 (the successor's GCS trouble)")


@pytest.mark.xfail(
    strict=True,
    reason="known gap: a zombie upload landing after its session was parked is re-cut by "
    "a replay (docs/ARCHITECTURE.md)",
)
def test_a_zombie_upload_landing_after_parking_is_not_stored_again_on_replay(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    ctx.config = replace(ctx.config, max_attempts=1)
    uid = f"park-zombie-{uuid.uuid4().hex[:8]}"
    session = push_chunks(ctx, FakeClock(time.time()), uid, 6, close=False)  # seq 0-5, 30 s
    sid = session.session_id
    clock.sync(ctx.store.client)
    clock.now += 61  # the tail has aged: flush A plans [0..5]

    a_stalled, a_resume = threading.Event(), threading.Event()
    bucket_a = CueBucket(ctx.bucket, before={0: stall_until(a_stalled, a_resume)})
    thread_a, result_a = in_thread(lambda: flush(ctx, sid, bucket_a))
    assert a_stalled.wait(10)  # A renewed its lease and is inside its upload: SIGSTOPped
    assert len(ctx.store.read_plan(sid)) == 1
    lease_expires(ctx, sid)

    session.push(CHUNK * 6, time.time() + 30)  # seq 6-11 arrive meanwhile
    session.close()

    b = flush(ctx, sid, CueBucket(ctx.bucket, before={0: _gcs_down}))
    assert b.failed and b.parked == 13  # plan head not in the bucket: every entry parked

    a_resume.set()  # A wakes: its upload of [0..5] lands; its commit is refused
    thread_a.join(10)
    assert result_a[0].skipped == "lease lost"
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 2, 3, 4, 5]

    assert quarantine.replay(ctx.store, sid) == 13  # the cause is fixed
    clock.now += 3600
    for _ in range(5):
        if not read_entries(ctx, sid):
            break
        assert flush(ctx, sid).failed is None
    # Observed: [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, ..., 11]: A's object [0..5] and the
    # replay's [0..11].
    assert stored_seqs(ctx, uid, "conv") == list(range(12))
