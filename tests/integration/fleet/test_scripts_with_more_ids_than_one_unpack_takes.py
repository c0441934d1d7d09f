"""The fleet's scripts take as many ids as the caller passes, more than one Lua ``unpack``
returns: Redis's Lua refuses to unpack more values than its C stack holds (LUAI_MAXCSTACK,
8000), so a script that unpacks a caller's whole list into one command fails with "too many
results to unpack" and writes nothing. Each script unpacks such a list in bounded chunks
(workers/lua/*.lua), and still does all of it in one atomic step."""

from __future__ import annotations

import pytest
import redis

from workers.store import WorkerStore

pytestmark = pytest.mark.integration
MANY = 20_000  # well past what one unpack takes
TOKEN = "the-flush"


def _store_with_entries(
    client: redis.Redis, session_id: str, count: int
) -> tuple[WorkerStore, list[bytes]]:
    store = WorkerStore(client, 4)
    chunks = store.keys(session_id).chunks
    ids: list[bytes] = []
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + 1000, count)):
            pipe.xadd(chunks, {"n": n})
        ids += pipe.execute()
    assert store.acquire_lease(session_id, TOKEN, 60)
    return store, ids


def test_a_plan_of_more_objects_than_one_unpack_takes_is_recorded_in_order(
    redis_client: redis.Redis,
) -> None:
    store, _ = _store_with_entries(redis_client, "many-objects", 0)
    objects = [f"object-{i}" for i in range(MANY)]
    store.record_plan("many-objects", TOKEN, objects, lease_seconds=60)
    assert store.read_plan("many-objects") == [o.encode() for o in objects]


def test_an_object_committing_more_entries_than_one_unpack_takes_deletes_them_all(
    redis_client: redis.Redis,
) -> None:
    store, ids = _store_with_entries(redis_client, "many-entries", MANY + 1)
    store.record_plan("many-entries", TOKEN, ["the-object"])
    seqs = list(range(MANY))
    left = store.commit_object("many-entries", TOKEN, "the-object", ids[:MANY], seqs)
    assert left == 0
    assert store.read_raw("many-entries", MANY + 10) == [(ids[MANY], {b"n": str(MANY).encode()})]
    stored = store.stored_seqs("many-entries")
    assert all(seq in stored for seq in seqs) and MANY not in stored


def test_a_finish_dropping_more_entries_than_one_unpack_takes_drops_them_all(
    redis_client: redis.Redis,
) -> None:
    store, ids = _store_with_entries(redis_client, "many-drops", MANY + 1)
    now = store.time()
    store.finish(
        "many-drops", TOKEN, drop_ids=ids[:MANY], last_read_id=ids[-1], next_due=now + 60, now=now
    )
    assert store.read_raw("many-drops", MANY + 10) == [(ids[MANY], {b"n": str(MANY).encode()})]
    due = redis_client.zscore(store.keys("many-drops").due, "many-drops")
    assert due is not None and due > now
