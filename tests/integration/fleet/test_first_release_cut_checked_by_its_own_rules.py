"""The upgrade path (FORMATS.md 5.5) still validates a first-release cut by this release's
rules: a legacy cut is checked only as the first release checked it, by parsing, and an
emptied cut drops ``:intent``.

While ``:intent`` exists the flush reads up to the pinned entry and plans "by the first
release's rules" so it "writes the same objects byte for byte", but ``_checked`` still runs
every *new* entry check (``validate_entry``: timestamp window, Opus sample count, seq
range, ...) and quarantines what fails. The first release (git b05fc9c) checked nothing
beyond parsing, so a chunk it put into an object can now be taken out of the cut:

- the rest of the group is rebuilt without it: other bytes, other name, so the chunks the
  first release already stored are stored a second time;
- if nothing of the cut is left, nothing is recorded, ``:intent`` is never deleted, and
  every later flush reads up to the same pin, finds nothing, and makes the session due
  now again: a livelock, and the entries after the pin are never stored.

The trigger used is a device clock in 1970 (no RTC before NTP), which the first-release
pusher accepted (``timestamp_to_us`` only wants a finite number >= 0) and which this
release's 7-day timestamp window refuses.
"""

from __future__ import annotations

import time
import uuid

import pytest

from backend_hooks import AudioSyncClient
from backend_hooks.contract.entries import ChunkEntry
from tests.integration.fleet.test_first_release_cut_resumed import _first_release_flush_died
from tests.integration.flushing import (
    CHUNK,
    RATE,
    FakeClock,
    flush,
    keys,
    read_entries,
    stored_seqs,
)
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def _session(ctx: WorkerContext, uid: str, clock: FakeClock):  # type: ignore[no-untyped-def]
    client = AudioSyncClient(ctx.settings, clock=clock)
    return client.open_session(uid, "conv", RATE, "standard")


def _clock_in_1970() -> FakeClock:
    """The first release stored a device's 1970 time as pushed; today's pusher places a
    timestamp that far from its own clock at its clock (AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_
    SECONDS), so to write such a chunk this pusher's clock says 1970 too, until NTP."""
    return FakeClock(1.0)


def test_a_first_release_cut_with_a_chunk_the_new_checks_refuse_is_rebuilt_whole(
    ctx: WorkerContext,
) -> None:
    """seq 0 stamped in 1970 (before NTP), seq 1-3 at the right time, all one group.

    The first release stored [0, 1, 2, 3] and died before its commit (``:intent`` = seq 3).
    The new flush quarantines seq 0 (timestamp window) and writes [1, 2, 3]: a new name,
    so seq 1-3 are in two objects.
    """
    uid = f"legacy-1970-{uuid.uuid4().hex[:8]}"
    clock = _clock_in_1970()
    session = _session(ctx, uid, clock)
    session.push(CHUNK, 1.0)  # the device's clock: 1970-01-01T00:00:01
    clock.now = time.time()
    session.push(CHUNK * 3, time.time())  # NTP synced: a gap, a new run, seq 1-3
    sid = session.session_id
    chunks = [e for e in read_entries(ctx, sid) if isinstance(e, ChunkEntry)]
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    _first_release_flush_died(ctx, sid, [chunks], chunks[-1].entry_id)
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 2, 3]

    for _ in range(5):
        if not ctx.store.read_raw(sid, 1):
            break
        assert flush(ctx, sid).failed is None
    # What the first release stored, and nothing more: observed [0, 1, 1, 2, 2, 3, 3].
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 2, 3]


def test_a_first_release_cut_the_new_checks_empty_does_not_stall_the_session(
    ctx: WorkerContext,
) -> None:
    """The first release stored [seq 0] (stamped 1970) and died: ``:intent`` = seq 0.
    Then the pusher sent seq 1-3 (clock synced) and closed.

    Each new flush reads up to the pin, quarantines seq 0, has nothing to write, so it
    records no plan (``:intent`` stays) and finishes "due now". Seq 1-3 are never stored.
    """
    uid = f"legacy-stall-{uuid.uuid4().hex[:8]}"
    clock = _clock_in_1970()
    session = _session(ctx, uid, clock)
    session.push(CHUNK, 1.0)
    sid = session.session_id
    [first] = [e for e in read_entries(ctx, sid) if isinstance(e, ChunkEntry)]
    _first_release_flush_died(ctx, sid, [[first]], first.entry_id)
    clock.now = time.time()
    session.push(CHUNK * 3, time.time())
    session.close()

    results = [flush(ctx, sid) for _ in range(5)]
    assert all(r.failed is None for r in results)
    # Observed: :intent still set after 5 flushes, each writing and deleting nothing after
    # the first (next_due = now every time), seq 1-3 and the end marker still in the stream.
    assert ctx.store.client.get(keys(sid).legacy_intent) is None
    assert stored_seqs(ctx, uid, "conv") == [0, 1, 2, 3]
    assert read_entries(ctx, sid) == []
