"""backend_hooks.contract.redis_keys key layout: one hash tag per shard, names that parse back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend_hooks.contract.redis_keys import (
    LEGACY_SHARD,
    SessionKeys,
    due_key,
    quarantine_index_key,
    session_of_key,
    shard_of,
)

IDS = st.from_regex(r"[A-Za-z0-9._:@+=-]{1,64}", fullmatch=True).filter(lambda s: ".." not in s)
SUFFIXES = ("chunks", "appended", "lease", "plan", "legacy_intent", "stored", "failures")


def _tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


def test_a_sessions_keys_and_its_shards_indexes_share_one_hash_tag() -> None:
    keys = SessionKeys("abc", 7)
    names = [getattr(keys, s) for s in SUFFIXES] + [keys.quarantine, keys.due]
    names.append(keys.quarantine_index)
    assert {_tag(n) for n in names} == {"s7"}
    assert keys.chunks == "audiosync:{s7}:abc:chunks"
    assert keys.due == due_key(7) == "audiosync:{s7}:due"
    assert keys.quarantine_index == quarantine_index_key(7)


def test_the_legacy_layout_is_the_release_before_shards() -> None:
    keys = SessionKeys("abc", LEGACY_SHARD)
    assert keys.chunks == "audiosync:{abc}:chunks"
    assert keys.legacy_intent == "audiosync:{abc}:intent"
    assert keys.due == "audiosync:due:{0}"
    assert keys.quarantine_index == "audiosync:quarantined"


def test_shard_of_is_stable_and_spreads() -> None:
    # CRC-32: the same on every machine and Python (no hash randomization).
    assert shard_of("abc", 16) == 0x352441C2 % 16
    counts = [0] * 16
    for i in range(16_000):
        counts[shard_of(f"{i:032x}", 16)] += 1
    assert min(counts) > 800 and max(counts) < 1200


def test_shards_and_shard_counts_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("abc", 0)
    with pytest.raises(ValueError, match="shard must be"):
        _ = SessionKeys("abc", -2).chunks


@given(IDS, st.integers(0, 4095), st.sampled_from(SUFFIXES))
def test_every_session_key_parses_back(session_id: str, shard: int, suffix: str) -> None:
    assert session_of_key(getattr(SessionKeys(session_id, shard), suffix)) == (shard, session_id)
    legacy = getattr(SessionKeys(session_id, LEGACY_SHARD), suffix)
    assert session_of_key(legacy) == (LEGACY_SHARD, session_id)


@given(IDS, IDS, st.sampled_from(SUFFIXES), st.sampled_from(SUFFIXES))
def test_two_sessions_never_share_a_key(a: str, b: str, x: str, y: str) -> None:
    if a != b:
        assert getattr(SessionKeys(a, 1), x) != getattr(SessionKeys(b, 1), y)
        assert getattr(SessionKeys(a, LEGACY_SHARD), x) != getattr(SessionKeys(b, 1), y)


def test_shard_keys_are_not_session_keys() -> None:
    assert session_of_key(due_key(3)) is None
    assert session_of_key("audiosync:due:{0}") is None
    assert session_of_key("other:{x}:chunks") is None


def test_what_counts_as_redis_away() -> None:
    """The pusher's breaker opens for an outage, not for one command refused on one key."""
    import redis

    from backend_hooks.adapters.redis_store import is_outage

    for away in (
        redis.ConnectionError("refused"),
        redis.TimeoutError("timed out"),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.ResponseError("MISCONF Errors writing to the AOF file"),
        redis.exceptions.RedisClusterException("Redis Cluster cannot be connected"),
    ):
        assert is_outage(away), away
    for one_key in (
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
        redis.exceptions.ResponseError("ERR Error running script"),
        ValueError("not Redis at all"),
    ):
        assert not is_outage(one_key), one_key
