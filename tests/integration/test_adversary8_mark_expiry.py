"""Adversary 8: audio held longer than the deleted mark lives (design gap, xfail).

``delete_conversation_audio``'s mark expires after ``AUDIOSYNC_DELETED_MARK_SECONDS``
(30 days). Audio of the conversation that Redis still holds after that is uploaded into
the deleted conversation: a quarantined chunk (quarantines have no lifetime; an operator
replays them when the cause is fixed, maybe months later) or a parked session. Here the
mark's expiry is simulated by deleting its key; the audio waits in the session stream as
it would wait in the quarantine before a replay. Closing it needs a mark that outlives
what Redis holds (no TTL, or one refreshed by what still holds the conversation's audio),
or the delete purging the conversation's held entries: a design question for the lead.
"""

from __future__ import annotations

import time

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, naming
from backend_hooks.redis_store import deleted_conversation_key, mark_conversation_deleted
from tests.integration.flushing import FakeClock, flush
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))


@pytest.mark.xfail(
    strict=True,
    reason="the deleted mark expires (30 days) while a quarantine may hold the "
    "conversation's audio longer; design question: a lasting tombstone or a purge",
)
def test_audio_held_past_the_marks_life_is_not_uploaded_into_the_deleted_conversation(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("adv8-exp", "gone-conv", 16000, "standard")
    session.push(speech_like(2, 16000, seed=1), T0)
    session.close()
    clock.sync(ctx.store.client)
    mark_conversation_deleted(ctx.store.client, "adv8-exp", "gone-conv", ttl_seconds=3600)
    ctx.store.client.delete(deleted_conversation_key("adv8-exp", "gone-conv"))  # 30 days on
    flush(ctx, session.session_id)
    client.close()
    prefix = naming.conversation_prefix("adv8-exp", "gone-conv")
    assert [o.name for o in ctx.bucket.list(prefix)] == []
