"""Sessions opened while ``AudioSyncClient.close()`` runs.

``close()`` closes the sessions it saw when it started, then stops the maintenance thread
and shuts the pool down. A session opened meanwhile (a websocket that connected during a
slow close, with Redis stalled) was neither refused nor closed: ``close()`` returned
success, its audio never left memory, and its next push raised ``RuntimeError: cannot
schedule new futures after shutdown``. Real valkey, SIGSTOPped and resumed."""

from __future__ import annotations

import threading

import pytest

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import AudioSyncClient, EnqueueError, SessionClosedError
from tests.integration.pusher.pusher_outage import (
    RATE,
    T0,
    noise,
    quick_client,
    settings_for,
    stream,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_session_opened_during_close_is_refused_or_closed(
    stack: StackInfo, own_redis: StandaloneValkey
) -> None:
    settings = settings_for(stack.env(), own_redis.url, None, AUDIOSYNC_CLOSE_SECONDS="5")
    client = AudioSyncClient(settings, redis_client=quick_client(own_redis.url))
    first = client.open_session("u1", "c1", RATE, "standard")
    first.push(noise(1000), T0)
    own_redis.pause()  # the first session's tail stalls: close() takes a while
    outcome: list[BaseException | None] = []

    def close() -> None:
        try:
            client.close()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    closer = threading.Thread(target=close)
    closer.start()
    late = None
    try:
        assert wait_for(lambda: first._tail_staged, 5)  # close() is under way
        try:
            late = client.open_session("u2", "c1", RATE, "standard")
            late.push(noise(1000, seed=2), T0)
        except SessionClosedError:
            late = None  # refused while the client closes: a clear answer
    finally:
        own_redis.resume()
        closer.join(20)
    assert outcome and first.closed
    if late is None:
        return
    if isinstance(outcome[0], EnqueueError):  # not closed yet: a retry closes it
        client.close()
    else:
        assert outcome[0] is None
    # close() said every session is closed: the late one too, its audio in Redis.
    assert late.closed, "close() succeeded and left a session open, its audio in memory"
    assert wait_for(
        lambda: stream(own_redis.url, late.redis_keys) == [("chunk", 0, 1000), ("end", -1, 0)], 3
    )
