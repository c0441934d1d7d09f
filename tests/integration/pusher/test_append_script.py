"""The append script at its dangerous lines (backend_hooks/contract/lua/append.lua).

The mark is read and set by one ``SET ... GET``: it is written before the script knows
which entries are new, so a retry of older entries must put the higher mark back, a mark
that is not a number must stay as it was, and an ``XADD`` refused (its stream key holding
another type) must leave the mark at the last entry added, or as it was. The due time
comes from the first added entry's id (no ``TIME``) and only lowers; with nothing added,
or an id run ahead of the server's clock, it comes from ``TIME``. A mark
written by the previous script (``GET``/``SET``: the same integer) is honoured both ways,
as pushers of both releases drain each other's spools during a rolling upgrade.
"""

from __future__ import annotations

from typing import cast

import pytest
import redis

from audiosync_dev.previous_append import PREVIOUS_APPEND
from backend_hooks.adapters.redis_store import NodeScript, redis_time
from backend_hooks.contract.entries import KIND_CHUNK, KIND_END, NewEntry, id_millis
from backend_hooks.contract.lua_scripts import SCRIPTS
from backend_hooks.contract.redis_keys import APPENDED_MARK_TTL_MS, SessionKeys
from backend_hooks.pusher.appender import Appender

pytestmark = pytest.mark.integration
MAX_AGE = 60.0
KEYS = SessionKeys("append-script", 3)



def chunk(seq: int) -> NewEntry:
    return NewEntry(
        kind=KIND_CHUNK, uid="u", cid="c", enq_us=1, level="standard", rate=16000, seq=seq
    )


def append(
    appender: Appender, first: int, last: int, *, urgent: bool = False, keys: SessionKeys = KEYS
) -> int:
    """Entries ``first`` to ``last`` (their append numbers are their seqs)."""
    entries = [chunk(seq) for seq in range(first, last + 1)]
    return appender.append(keys, entries, first_n=first, urgent=urgent, max_age_seconds=MAX_AGE)


def stream(client: redis.Redis, keys: SessionKeys = KEYS) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.chunks))


def seqs(client: redis.Redis, keys: SessionKeys = KEYS) -> list[int]:
    return [int(fields[b"seq"]) for _, fields in stream(client, keys)]


def mark(client: redis.Redis) -> bytes | None:
    value = client.get(KEYS.appended)
    assert value is None or isinstance(value, bytes)
    return value


def due(client: redis.Redis, keys: SessionKeys = KEYS) -> float | None:
    return client.zscore(keys.due, keys.session_id)


@pytest.fixture
def appender(redis_client: redis.Redis) -> Appender:
    return Appender(redis_client)


def test_a_retry_of_older_entries_after_newer_ones_landed_keeps_the_higher_mark(
    appender: Appender, redis_client: redis.Redis
) -> None:
    assert append(appender, 0, 1) == 2
    assert append(appender, 2, 2) == 1
    # The reply of the first append was lost and it comes again, after the second landed:
    # its SET ... GET writes 1 over 2 and must put 2 back.
    assert append(appender, 0, 1) == 0
    assert mark(redis_client) == b"2"
    assert append(appender, 2, 3) == 1  # entry 2 is not added a second time
    assert seqs(redis_client) == [0, 1, 2, 3]
    assert mark(redis_client) == b"3"
    assert int(redis_client.pttl(KEYS.appended)) > APPENDED_MARK_TTL_MS - 60_000


def test_a_batch_sent_again_with_a_new_entry_adds_only_the_new_one(
    appender: Appender, redis_client: redis.Redis
) -> None:
    assert append(appender, 0, 1) == 2
    assert append(appender, 0, 2) == 1
    assert seqs(redis_client) == [0, 1, 2]
    assert mark(redis_client) == b"2"


def test_the_due_time_is_the_added_entrys_redis_time_and_only_lowers(
    appender: Appender, redis_client: redis.Redis
) -> None:
    append(appender, 0, 0)
    [(first_id, _)] = stream(redis_client)
    assert due(redis_client) == pytest.approx(id_millis(first_id) / 1000 + MAX_AGE, abs=1e-3)
    append(appender, 1, 1, urgent=True)  # an object's worth, or a conversation's end
    urgent_id = stream(redis_client)[-1][0]
    urgent_due = due(redis_client)
    assert urgent_due == pytest.approx(id_millis(urgent_id) / 1000, abs=1e-3)
    append(appender, 2, 2)  # never raised: LT
    assert due(redis_client) == urgent_due


@pytest.mark.parametrize("urgent", [True, False], ids=["urgent", "by-age"])
def test_a_stream_whose_top_id_is_ahead_of_the_clock_still_makes_the_session_due_by_it(
    appender: Appender, redis_client: redis.Redis, urgent: bool
) -> None:
    """A stream id ahead of the server's clock (the clock stepped back, a failover to a
    replica whose clock is behind): ``XADD *`` then numbers after it, so the added entry's
    id time is the top id's, not the server's; an urgent append (a conversation's end)
    must still be due now, not when the clock reaches that id."""
    ahead_ms = int(redis_time(redis_client) * 1000) + 3_600_000  # an hour ahead
    redis_client.xadd(KEYS.chunks, {"seq": "0"}, id=f"{ahead_ms}-0")
    redis_client.set(KEYS.appended, 0)
    before = redis_time(redis_client)
    assert append(appender, 1, 2, urgent=urgent) == 2
    after = redis_time(redis_client)
    assert all(id_millis(entry_id) >= ahead_ms for entry_id, _ in stream(redis_client))
    score = due(redis_client)
    wait = 0.0 if urgent else MAX_AGE
    assert score is not None and before + wait - 1e-3 <= score <= after + wait + 1e-3


def test_an_append_that_adds_nothing_still_makes_the_session_due_by_redis_time(
    appender: Appender, redis_client: redis.Redis
) -> None:
    append(appender, 0, 1)
    redis_client.zrem(KEYS.due, KEYS.session_id)  # as a flush that emptied the stream does
    before = redis_time(redis_client)
    assert append(appender, 0, 1, urgent=True) == 0  # no entry id to take the time from
    after = redis_time(redis_client)
    score = due(redis_client)
    assert score is not None and before - 1e-3 <= score <= after + 1e-3


def test_a_mark_that_is_not_a_number_refuses_the_append_and_stays(
    appender: Appender, redis_client: redis.Redis
) -> None:
    redis_client.set(KEYS.appended, b"garbage")
    with pytest.raises(redis.ResponseError, match="not a number"):
        append(appender, 0, 1)
    assert mark(redis_client) == b"garbage"
    assert seqs(redis_client) == []
    assert due(redis_client) is None


def test_an_empty_batch_leaves_the_mark_alone(
    appender: Appender, redis_client: redis.Redis
) -> None:
    assert appender.append(KEYS, [], first_n=5, urgent=False, max_age_seconds=MAX_AGE) == 0
    assert mark(redis_client) is None
    assert append(appender, 0, 0) == 1  # entries below the empty batch's n still go in


def test_a_mark_of_the_previous_script_is_honoured_and_it_honours_ours(
    appender: Appender, redis_client: redis.Redis
) -> None:
    previous = Appender(redis_client)
    previous._script = NodeScript(redis_client, PREVIOUS_APPEND)
    assert append(previous, 0, 2) == 3  # an old pusher's spool, drained by an old process
    assert append(appender, 1, 3) == 1  # the same entries sent again by a new one
    assert append(previous, 3, 4) == 1  # and back
    assert seqs(redis_client) == [0, 1, 2, 3, 4]
    assert mark(redis_client) == b"4"


def test_an_end_marker_batch_after_its_chunks_landed_adds_only_the_marker(
    appender: Appender, redis_client: redis.Redis
) -> None:
    """A close retried: its chunk landed before the reply was lost; the batch now ends
    with the end marker, urgent."""
    assert append(appender, 0, 0) == 1
    end = NewEntry(kind=KIND_END, uid="u", cid="c", enq_us=2)
    added = appender.append(KEYS, [chunk(0), end], first_n=0, urgent=True, max_age_seconds=MAX_AGE)
    assert added == 1
    kinds = [fields[b"kind"] for _, fields in stream(redis_client)]
    assert kinds == [KIND_CHUNK.encode(), KIND_END.encode()]
    end_id = stream(redis_client)[-1][0]
    assert due(redis_client) == pytest.approx(id_millis(end_id) / 1000, abs=1e-3)


@pytest.mark.parametrize("marked_before", [False, True], ids=["no-mark", "mark"])
def test_a_stream_key_of_another_type_refuses_the_append_and_leaves_the_mark(
    appender: Appender, redis_client: redis.Redis, marked_before: bool
) -> None:
    if marked_before:
        assert append(appender, 0, 0) == 1
        redis_client.delete(KEYS.chunks)
    redis_client.set(KEYS.chunks, b"not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        append(appender, 1, 2)
    assert mark(redis_client) == (b"0" if marked_before else None)
    redis_client.delete(KEYS.chunks)  # the operator clears the collision
    assert append(appender, 1, 2) == 2  # the retry adds what was refused
    assert seqs(redis_client) == [1, 2]
    assert mark(redis_client) == b"2"


def test_an_entry_refused_mid_batch_leaves_the_mark_at_the_last_one_added(
    redis_client: redis.Redis, appender: Appender
) -> None:
    """Entry 1 of the batch has no fields: its XADD is refused after entry 0 went in."""
    script = NodeScript(redis_client, SCRIPTS["append"])
    args: list[str | bytes | int | float] = [KEYS.session_id, 1, "60.0", APPENDED_MARK_TTL_MS]
    args += [0, 2, 1, "seq", "0", 0]  # first n 0, 2 entries: seq 0, then nothing
    with pytest.raises(redis.ResponseError, match=r"(?i)wrong number of arg"):
        script(keys=[KEYS.chunks, KEYS.appended, KEYS.due], args=args)
    assert seqs(redis_client) == [0]
    assert mark(redis_client) == b"0"
    [(entry_id, _)] = stream(redis_client)
    assert due(redis_client) == pytest.approx(id_millis(entry_id) / 1000, abs=1e-3)
    assert append(appender, 0, 1) == 1  # sent again, whole: only entry 1 goes in
    assert seqs(redis_client) == [0, 1]
