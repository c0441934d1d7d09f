"""The drain phase: the faults are off, and the run waits until the fleet has left
nothing in Redis (or has stopped changing anything); ``RedisLeft`` is what is left."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import cast

import redis

from audiosync_dev.chaos.store import due_members, scan_keys, session_of_key
from backend_hooks.adapters.redis_store import RedisClient
from backend_hooks.contract import redis_keys

STUCK_SECONDS = 30.0  # a drain that changes nothing for this long has stopped for good


@dataclass(frozen=True)
class RedisLeft:
    streams: int = 0
    entries: int = 0
    plans: int = 0
    intents: int = 0
    due: int = 0
    chunk_ids: frozenset[tuple[str, int]] = frozenset()  # (session, seq) still in streams

    @property
    def empty(self) -> bool:
        return not (self.streams or self.entries or self.plans or self.intents or self.due)

    def signature(self) -> tuple[int, ...]:
        return (self.streams, self.entries, self.plans, self.intents, self.due)


def _count(r: RedisClient, pattern: str) -> int:
    return len(scan_keys(r, pattern))


def redis_left(r: RedisClient, *, with_ids: bool = False) -> RedisLeft:
    streams = scan_keys(r, redis_keys.session_key_pattern("chunks"))
    entries = 0
    ids: set[tuple[str, int]] = set()
    for key in streams:
        entries += r.xlen(key)
        if with_ids:
            raw = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(key))
            for _, fields in raw:
                with contextlib.suppress(KeyError, ValueError):
                    if b"poison" not in fields and fields.get(b"kind") == b"chunk":
                        ids.add((session_of_key(key), int(fields[b"seq"])))
    return RedisLeft(
        streams=len(streams),
        entries=entries,
        plans=_count(r, redis_keys.session_key_pattern("plan")),
        intents=_count(r, redis_keys.session_key_pattern("intent")),
        due=due_members(r),
        chunk_ids=frozenset(ids),
    )


def wait_drained(r: RedisClient, timeout: float) -> tuple[bool, float]:
    """Until nothing is left in Redis; False after ``timeout`` or once stuck (no change)."""
    started = time.monotonic()
    last: tuple[int, ...] | None = None
    changed = started
    while True:
        now = time.monotonic()
        try:
            left = redis_left(r)
        except redis.RedisError:
            left = None
        if left is not None and left.empty:
            return True, now - started
        if left is not None and left.signature() != last:
            last, changed = left.signature(), now
        if now - started > timeout or now - changed > STUCK_SECONDS:
            return False, now - started
        time.sleep(0.3)
