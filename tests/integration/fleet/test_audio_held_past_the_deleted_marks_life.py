"""Audio held longer than the deleted mark lives.

``delete_conversation_audio``'s mark expires after ``AUDIOSYNC_DELETED_MARK_SECONDS``
(30 days). Audio of the conversation that Redis still holds after that is uploaded into
the deleted conversation: a quarantined chunk (quarantines have no lifetime; an operator
replays them when the cause is fixed, maybe months later) or a parked session. Here the
mark's expiry is simulated by deleting its key; the audio waits in the session stream as
it would wait in the quarantine before a replay.

Decided: the fleet does not upload a chunk first appended longer ago than the mark lives
(the flush quarantines it with that reason; a replay meets the same verdict until
AUDIOSYNC_DELETED_MARK_SECONDS is raised on the fleet), so no forgotten delete can be
undone by old audio. The clock is moved on past the mark's life, as 30 days would.
"""

from __future__ import annotations

import time

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient
from backend_hooks.adapters.redis_store import mark_conversation_deleted
from backend_hooks.contract import naming
from backend_hooks.contract.redis_keys import deleted_conversation_key
from tests.integration.flushing import FakeClock, flush
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))


def test_audio_held_past_the_marks_life_is_not_uploaded_into_the_deleted_conversation(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("held-exp", "gone-conv", 16000, "standard")
    session.push(speech_like(2, 16000, seed=1), T0)
    session.close()
    clock.sync(ctx.store.client)
    mark_conversation_deleted(ctx.store.client, "held-exp", "gone-conv", ttl_seconds=3600)
    ctx.store.client.delete(deleted_conversation_key("held-exp", "gone-conv"))  # 30 days on
    clock.now += ctx.settings.deleted_mark_seconds + 60
    result = flush(ctx, session.session_id)
    client.close()
    prefix = naming.conversation_prefix("held-exp", "gone-conv")
    assert [o.name for o in ctx.bucket.list(prefix)] == []
    assert result.quarantined == 1 and result.objects_created == 0  # kept, not uploaded
    [held] = ctx.store.read_quarantine(session.session_id, 10)
    assert "AUDIOSYNC_DELETED_MARK_SECONDS" in held.reason


def test_audio_younger_than_the_marks_life_is_uploaded(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("held-young", "kept-conv", 16000, "standard")
    session.push(speech_like(2, 16000, seed=2), T0)
    session.close()
    clock.sync(ctx.store.client)
    clock.now += ctx.settings.deleted_mark_seconds - 3600  # a Redis outage of 29 days
    result = flush(ctx, session.session_id)
    client.close()
    assert result.objects_created == 1 and result.quarantined == 0
