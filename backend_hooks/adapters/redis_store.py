"""The one module of audiosync that speaks Redis: the connection, what counts as Redis
being away, the scripts' runner, Redis time, and the few writes and reads of shared keys
that both the reader and the fleet make (the deleted mark, the re-check queue, the shard
counts).

Keys are named in backend_hooks/contract/redis_keys.py (docs/FORMATS.md §5 has the table with who
writes what, and under which fence); the pusher's append is backend_hooks/pusher/appender.py; the
fleet's Redis operations are in workers/store.py. The Lua scripts are ``.lua`` files, the
ones of backend_hooks in backend_hooks/contract/lua, the fleet's in workers/lua
(backend_hooks/contract/lua_scripts.py says how they are kept and loaded).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any, Union

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend_hooks.contract.lua_scripts import SCRIPTS
from backend_hooks.contract.redis_keys import (
    SHARD_COUNTS_KEY,
    deleted_conversation_key,
    deletion_item,
    deletion_recheck_key,
)

#: What a Redis that is away raises: a cluster client whose every node is unreachable
#: raises ``RedisClusterException`` ("Redis Cluster cannot be connected"), not a RedisError.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.RedisError,
    redis.exceptions.RedisClusterException,
)

#: Replies that mean the server as a whole cannot take writes now (full, loading, a
#: replica, a cluster reconfiguring), as opposed to a refusal of one command on one key.
_OUTAGE_REPLIES = (
    "OOM",
    "LOADING",
    "MASTERDOWN",
    "READONLY",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MISCONF",
    "BUSY",
    "MOVED",
    "ASK",
)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis is away (unreachable, stalled, full, loading) rather than
    that it refused one command on one key (``WRONGTYPE``, a script error): the pusher's
    breaker opens only for the former, so one poisoned session cannot stop the others."""
    outage_classes = (
        redis.exceptions.OutOfMemoryError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.TryAgainError,
        redis.exceptions.MovedError,
        redis.exceptions.AskError,
    )
    if isinstance(exc, outage_classes):
        return True
    if isinstance(exc, redis.exceptions.ResponseError):
        return str(exc).split(" ", 1)[0].upper() in _OUTAGE_REPLIES
    return isinstance(exc, REDIS_ERRORS)


SOCKET_TIMEOUT = 5.0  # seconds; a stalled Redis is an error, never a hang


def mark_conversation_deleted(
    client: RedisClient, uid: str, conversation_id: str, *, ttl_seconds: int
) -> None:
    """Mark a conversation deleted (before its objects are deleted, so that no flush
    uploads into it afterwards: workers/flush.py checks the mark before and after each
    upload). Idempotent; the mark expires after ``ttl_seconds``."""
    client.set(
        deleted_conversation_key(uid, conversation_id),
        f"{uid}/{conversation_id}".encode(),
        ex=ttl_seconds,
    )


def conversation_deleted(client: RedisClient, uid: str, conversation_id: str) -> bool:
    return bool(client.exists(deleted_conversation_key(uid, conversation_id)))


def schedule_deletion_recheck(
    client: RedisClient, shard: int, uid: str, conversation_id: str, *, after_seconds: float
) -> None:
    """Have the fleet list the conversation again ``after_seconds`` from now (Redis time of
    the shard's node) and delete what it finds. Never moves one earlier; one already due
    that late or later moves 1 ms on (so a run listing it now keeps it for this request)."""
    run_script(
        client,
        SCRIPTS["schedule_recheck"],
        [deletion_recheck_key(shard)],
        [deletion_item(uid, conversation_id), max(1, round(after_seconds * 1000))],
    )


@functools.cache
def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def run_script(
    client: RedisClient,
    source: str,
    keys: Sequence[str],
    args: Sequence[str | bytes | int | float],
) -> object:
    """Run a Lua script on the node of its keys: EVALSHA, or EVAL of the source where that
    node does not have it yet. Never ``SCRIPT LOAD``, which a cluster client sends to every
    primary: with one of them out it fails, and the script could not run anywhere."""
    try:
        return client.evalsha(_sha1(source), len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.eval(source, len(keys), *keys, *args)


class NodeScript:
    """A Lua script called as redis-py's ``Script`` is (``script(keys=..., args=...)``) but
    run by ``run_script``: on the node of its keys only. redis-py's ``register_script``
    answers a node's empty script cache (a restart, a failover) with ``SCRIPT LOAD`` to
    every primary, which fails while any of them is out: the script would then run
    nowhere, on the nodes that serve too."""

    def __init__(self, client: RedisClient, source: str) -> None:
        self.client = client
        self.source = source

    def __call__(self, *, keys: Sequence[str], args: Sequence[str | bytes | int | float]) -> Any:
        return run_script(self.client, self.source, keys, args)


def register_shard_count(client: RedisClient, shards: int) -> None:
    """Add ``shards`` to the counts the fleet drains (``SHARD_COUNTS_KEY``): a writer into a
    shard above the fleet's own count registers it first, as each pusher does."""
    client.sadd(SHARD_COUNTS_KEY, shards)


#: The stream store's client: one Redis, or a Redis Cluster (``AUDIOSYNC_REDIS_CLUSTER=1``).
RedisClient = Union[redis.Redis, redis.cluster.RedisCluster]  # noqa: UP007 (a runtime alias)


def connect(url: str, *, cluster: bool = False) -> RedisClient:
    """A client of the stream store; with ``cluster``, ``url`` is one node, a seed."""
    if cluster:
        return redis.cluster.RedisCluster.from_url(
            url,
            decode_responses=False,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
        )
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        health_check_interval=30,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )


def connect_one_attempt(url: str, *, cluster: bool, seconds: float) -> RedisClient:
    """A client whose every command gets one attempt of at most ``seconds`` (connecting
    included): no retry, no cluster retry loop. For reads whose answer may be "cannot tell
    now" (the fleet's look at a deleted mark, which may live on a cluster node that is
    out), never for writes that must happen."""
    options: dict[str, object] = {
        "decode_responses": False,
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "retry": Retry(NoBackoff(), 0),
    }
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def redis_time(client: RedisClient) -> float:
    """Redis server time, Unix seconds: the one clock of everything shared."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000
