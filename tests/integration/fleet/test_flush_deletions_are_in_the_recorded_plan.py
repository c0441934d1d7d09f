"""Every deletion of a flush that uploads is part of the recorded plan (in some object's
commit), ``drop_ids`` included. The fault this guards against:

A repeat (a retried append of a chunk already in the read) that lies after the last
written object's last chunk is not in any object's ``also``: it goes to
``FlushPlan.drop_ids``, deleted only by the flush's final step (finish). Nothing records
it. So whenever finish does not run for the flush that planned it, the repeat stays while
its original is committed and deleted, and the next flush stores it a second time:

- killed (or any failure) between the last commit and finish, and
- killed between upload and commit, resumed by a successor: ``_resume`` finishes with
  ``drop_ids=[]`` by design, so the successor drops nothing either.

flush.py's docstring says a kill at any point of step 5 is carried out by the successor
exactly; the successor here stores a chunk twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from tests.integration.flushing import (
    CueBucket,
    Died,
    FakeClock,
    assert_exactly_once,
    die,
    flush,
    push_chunks,
    raw_xadd,
)
from workers.context import WorkerContext
from workers.flush import flush_session
from workers.store import WorkerStore

pytestmark = pytest.mark.integration


class FinishDies(WorkerStore):
    """The real store; its first ``finish`` call dies (the process is killed right there)."""

    def __init__(self, inner: WorkerStore) -> None:
        super().__init__(inner.client, inner.shards, pinned=inner.pinned)
        self.died = False

    def finish(self, *args: object, **kwargs: object) -> None:
        if not self.died:
            self.died = True
            raise Died("killed between the last commit and finish")
        super().finish(*args, **kwargs)  # type: ignore[arg-type]


def _killed_before_finish(ctx: WorkerContext, sid: str) -> None:
    store = FinishDies(ctx.store)
    result = flush_session(
        sid, store=store, bucket=ctx.bucket, policy=ctx.policy, config=ctx.config, clock=ctx.clock
    )
    assert store.died and result.failed and result.objects_created == 1


def _killed_after_upload(ctx: WorkerContext, sid: str) -> None:
    result = flush(ctx, sid, CueBucket(ctx.bucket, after={0: die}))
    assert result.failed and ctx.store.read_plan(sid)


@pytest.mark.parametrize(
    "kill",
    [
        pytest.param(_killed_before_finish, id="between-last-commit-and-finish"),
        pytest.param(_killed_after_upload, id="between-upload-and-commit-then-resumed"),
    ],
)
def test_a_repeat_after_the_last_object_is_deleted_by_its_commit_despite_a_kill(
    ctx: WorkerContext, kill: Callable[[WorkerContext, str], None]
) -> None:
    """Stream: seq 0-11, a retried append of seq 5, end. One object [0..11]; drop [5', end]."""
    uid = f"drop-ids-{uuid.uuid4().hex[:8]}"
    session = push_chunks(ctx, FakeClock(time.time()), uid, 12, close=False)
    sid = session.session_id
    raw_xadd(ctx, sid, ctx.store.read_raw(sid, 100)[5][1])  # identical: a retried append
    session.close()

    kill(ctx, sid)
    for _ in range(3):  # successors, until the stream is empty
        if not ctx.store.read_raw(sid, 1):
            break
        assert flush(ctx, sid).failed is None
    assert_exactly_once(ctx, uid, sid, 12)  # seq 5 once (it was stored twice)
