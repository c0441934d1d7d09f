"""A flush that fails after its lease ran out is still counted (workers/flush.py).

A flush stalled past its lease (an upload or a Redis call hanging on a node that is out)
and then failing used to record nothing: its failure script was fenced by the lease, so
no count, no backoff, no parking, and the session was retried silently every lease. Now
the failure is counted whoever holds the lease; with the lease free the flush takes it
again (as a new flush would) and backs off and parks as usual; while another flush holds
it, the count is all it writes (docs/ARCHITECTURE.md, "Invariants", rule 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.integration.flushing import (
    CueBucket,
    Died,
    FakeClock,
    flush,
    keys,
    lease_expires,
    push_chunks,
)
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def _fails_past_its_lease(
    ctx: WorkerContext, sid: str, then: Callable[[], None] = lambda: None
) -> CueBucket:
    """A bucket whose every upload hangs until the flush's lease has run out, then fails."""

    def hang_then_fail() -> None:
        lease_expires(ctx, sid)  # what the lease's TTL does while the upload hangs
        then()
        raise Died("the upload failed after the lease ran out")

    return CueBucket(ctx.bucket, before={i: hang_then_fail for i in range(10)})


def test_a_flush_failing_past_its_lease_is_counted_backs_off_and_parks(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    ctx.config = replace(ctx.config, max_attempts=3)
    sid = push_chunks(ctx, clock, "past-lease", 2).session_id
    late = _fails_past_its_lease(ctx, sid)
    for attempt, delay in ((1, 1), (2, 2)):
        result = flush(ctx, sid, late)
        assert result.failed == "Died: the upload failed after the lease ran out"
        assert result.skipped is None and result.parked == 0
        assert ctx.store.failures(sid).count == attempt
        assert ctx.store.client.zscore(keys(sid).due, sid) == pytest.approx(clock.now + delay)
        assert not ctx.store.client.exists(keys(sid).lease)  # given up again at the end

    parked = flush(ctx, sid, late)
    assert parked.parked == 3  # two chunks and the end marker
    assert all("parked after 3 failed flushes" in q.reason for q in ctx.store.read_quarantine(sid))
    for key in (keys(sid).chunks, keys(sid).plan, keys(sid).failures, keys(sid).lease):
        assert not ctx.store.client.exists(key)


def test_a_late_failure_is_counted_but_leaves_the_session_to_the_flush_holding_it(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    ctx.config = replace(ctx.config, max_attempts=1)
    sid = push_chunks(ctx, clock, "taken-over", 2).session_id
    due = ctx.store.client.zscore(keys(sid).due, sid)

    def successor_takes_the_lease() -> None:
        assert ctx.store.acquire_lease(sid, "successor", 30)

    result = flush(ctx, sid, _fails_past_its_lease(ctx, sid, successor_takes_the_lease))
    assert result.failed == "Died: the upload failed after the lease ran out"
    assert result.skipped == "lease lost" and result.parked == 0
    assert ctx.store.failures(sid).count == 1  # counted, at the limit, yet not parked:
    assert ctx.store.client.get(keys(sid).lease) == b"successor"  # the successor's session,
    assert ctx.store.client.zscore(keys(sid).due, sid) == due  # its due time,
    assert len(ctx.store.read_plan(sid)) == 1  # its plan to carry out,
    assert ctx.store.read_quarantine(sid) == []
    assert len(ctx.store.read_raw(sid, 10)) == 3  # and its entries
