"""A flush that loses its lease while parking returns ``skipped="lease lost"`` instead of
raising out of flush_session. The fault this guards against:

flush.py: "any other exception: the failure is counted ... never a crash loop"; the
lease-lost case is meant to end in ``FlushResult(skipped="lease lost")``. ``failed()``
catches ``LeaseLostError`` only around ``record_failure``; the renewals and park batches
of ``_park`` raise it out of the ``except`` handler, so flush_session itself raises (the
Celery task fails with a traceback). Redis state stays consistent (every batch is fenced):
cosmetic, but the one path where the flush does not return a result.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest

from tests.integration.flushing import CueBucket, FakeClock, die, lease_expires, push_chunks
from workers.context import WorkerContext
from workers.flush import flush_session
from workers.store import WorkerStore

pytestmark = pytest.mark.integration


class LeaseRunsOutWhileParking(WorkerStore):
    def __init__(self, inner: WorkerStore, ctx: WorkerContext, sid: str) -> None:
        super().__init__(inner.client, inner.shards, pinned=inner.pinned)
        self.ctx, self.sid = ctx, sid

    def park_batch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        lease_expires(self.ctx, self.sid)  # the process stalled here past its lease
        return super().park_batch(*args, **kwargs)


def test_losing_the_lease_while_parking_returns_a_result(ctx: WorkerContext) -> None:
    ctx.config = replace(ctx.config, max_attempts=1)
    uid = f"park-lease-{uuid.uuid4().hex[:8]}"
    sid = push_chunks(ctx, FakeClock(time.time()), uid, 2).session_id
    store = LeaseRunsOutWhileParking(ctx.store, ctx, sid)
    result = flush_session(  # raises LeaseLostError today
        sid,
        store=store,
        bucket=CueBucket(ctx.bucket, before={0: die}),
        policy=ctx.policy,
        config=ctx.config,
        clock=ctx.clock,
    )
    assert result.skipped == "lease lost"
