"""The release before shards, during a rolling upgrade.

The previous release's sweep claimed a legacy session (``audiosync:due:{0}``, claim: one
lease) and queued ``audiosync.flush_session`` with the session id as its only argument.
Such messages are still in the queue when the new workers start (and an old beat still
running keeps sending them). The new ``flush_session(session_id, shard=None)`` takes the
shard the id hashes to *now*, so it flushes that shard's (empty) keys: nothing of the
legacy session is written, and the old sweep's claim keeps the session out of the legacy
shard's dispatch for a lease. With an old beat still sweeping every interval, the old
claims keep landing on new workers that flush the wrong keys.
"""

from __future__ import annotations

import time

import pytest
import redis

from audiosync_dev.localstack import StackInfo
from backend_hooks import AudioSyncClient
from backend_hooks.adapters import redis_store
from backend_hooks.contract import redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import CHUNK, RATE
from workers import tasks

pytestmark = pytest.mark.integration


def test_a_first_release_flush_session_message_flushes_the_legacy_session(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    """A queued previous-release message ``flush_session(S)`` for a session S with legacy
    keys flushes S's legacy stream, not the keys of shard_of(S) (which would delay legacy
    sessions during the upgrade window)."""
    client = AudioSyncClient(Settings.from_env(stack.env()))
    session = client.open_session("shard-legacy", "conv", RATE, "standard")
    session.redis_keys = redis_keys.SessionKeys(session.session_id, redis_keys.LEGACY_SHARD)
    session.push(CHUNK * 2, time.time() - 10)
    session.close()
    client.close()
    legacy = redis_keys.SessionKeys(session.session_id, redis_keys.LEGACY_SHARD)
    assert redis_client.xlen(legacy.chunks) == 3
    # What the previous release's sweep did before queueing the message: claim it.
    claim = redis_store.redis_time(redis_client) + 30
    redis_client.zadd(legacy.due, {session.session_id: claim}, xx=True)

    result = tasks.flush_session(session.session_id)  # the old message: one argument

    assert not redis_client.exists(legacy.chunks), (
        f"the legacy stream still holds {redis_client.xlen(legacy.chunks)} entries after "
        f"flush_session({session.session_id!r}): {result}"
    )
