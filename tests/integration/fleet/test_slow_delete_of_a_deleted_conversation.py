"""A flush dropping a deleted conversation's object is bounded by its lease, as an upload is.

The flush deletes the object of a deleted conversation before it commits its entries
(``_drop_deleted``). Uploads get half the lease, retries included; the delete had
google-cloud-storage's defaults (60 s a request, retried for 120 s). With GCS answering
deletes slowly (here: a proxy in front of the real emulator holds each DELETE longer than
the lease), the delete completed after the lease had run out, the commit was refused,
and the flush ended "lease lost": no failure counted, no backoff, no parking, and the
next flush did the same, every lease, for as long as deletes were slow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from audiosync_dev.faults import GcsFaultProxy
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.adapters.redis_store import mark_conversation_deleted
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import FakeClock, flush
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
LEASE = 6
DELETE_HELD_SECONDS = 2 * LEASE  # each DELETE reaches the emulator only after this
T0 = float(int(time.time()))


@pytest.fixture
def slow_deletes(stack: StackInfo) -> Iterator[GcsFaultProxy]:
    with GcsFaultProxy(
        stack.gcs_url,
        stall_before_rate=1.0,
        stall_seconds=(DELETE_HELD_SECONDS, DELETE_HELD_SECONDS),
        match=lambda method, _path: method == "DELETE",
    ) as proxy:
        yield proxy


def test_a_slow_delete_of_a_dropped_object_is_a_counted_failure_not_a_lost_lease(
    stack: StackInfo, redis_client: redis.Redis, clock: FakeClock, slow_deletes: GcsFaultProxy
) -> None:
    env = {
        **stack.env(),
        "STORAGE_EMULATOR_HOST": slow_deletes.url,
        "AUDIOSYNC_LEASE_SECONDS": str(LEASE),
    }
    ctx = WorkerContext.from_settings(Settings.from_env(env), clock=clock)
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("slow-del-user", "slow-del-conv", 16000, "standard")
    session.push(speech_like(7, 16000, seed=12), T0)
    session.close()
    client.close()
    clock.sync(ctx.store.client)
    mark_conversation_deleted(ctx.store.client, "slow-del-user", "slow-del-conv", ttl_seconds=600)

    result = flush(ctx, session.session_id)

    assert result.skipped is None and result.failed is not None, result
    assert "delete" in result.failed
    assert ctx.store.failures(session.session_id).count == 1  # counted, backed off
    assert slow_deletes.stats.stalls_before >= 1  # the delete was the slow request
