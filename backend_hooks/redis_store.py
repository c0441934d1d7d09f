"""Redis keys of audiosync, the connection, and the pusher's append.

Every key is named here (docs/FORMATS.md §5 has the table with who writes what, and under
which fence); the fleet's Redis operations are in workers/store.py. The Lua scripts are
``.lua`` files, the ones here in backend_hooks/lua, the fleet's in workers/lua
(backend_hooks/lua_scripts.py says how they are kept and loaded). ``{...}`` is a Redis
Cluster hash tag: all keys of one session share a slot.

The append is one Lua script per call (backend_hooks/lua/append.lua: one round trip,
atomic): it XADDs the entries the stream does not have yet and lowers the session's due
time, computed from Redis server time. Entries carry a per-session append number ``n`` (0,
1, 2, ... over chunks and end markers); the script keeps the highest ``n`` appended in
``audiosync:{S}:appended`` and skips entries at or below it, so an append whose reply was
lost and that the pusher sends again adds nothing (the retry is idempotent). Stream ids are
Redis's own (``*``): their milliseconds are the server time of the append, the clock every
age is measured with.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend_hooks.entries import NewEntry
from backend_hooks.lua_scripts import SCRIPTS

#: The shard of the release before shards: its keys carry the session as hash tag, its
#: due index is ``audiosync:due:{0}``. Workers on a single Redis drain it (upgrades,
#: docs/ARCHITECTURE.md "Shards"); nothing new is written there.
LEGACY_SHARD = -1


def shard_of(session_id: str, shards: int) -> int:
    """The due-index shard of a session: a stable hash (CRC-32) of its id, mod ``shards``.

    The pusher computes it once, when the session opens; the fleet never recomputes it
    for a flush (a flush works on the shard whose due index it claimed the session from),
    so changing ``AUDIOSYNC_DUE_SHARDS`` moves only new sessions.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return zlib.crc32(session_id.encode()) % shards


#: Set (with a TTL of one sweep interval) by whoever last walked every shard's dispatch:
#: a shard task's end walks them only when no one did within the interval.
SWEPT_KEY = "audiosync:swept"

#: The shard counts pushers have used (a set; each pusher process adds its own before its
#: first append). The fleet sweeps up to the largest, so a session in a shard beyond the
#: fleet's own AUDIOSYNC_DUE_SHARDS (pushers configured with more, or the count lowered)
#: is still flushed.
SHARD_COUNTS_KEY = "audiosync:shard-counts"


def _shard_prefix(shard: int) -> str:
    if shard < 0:
        raise ValueError(f"shard must be >= 0 (or LEGACY_SHARD for its own keys), got {shard}")
    return f"audiosync:{{s{shard}}}:"


def due_key(shard: int) -> str:
    """The shard's due index: session id -> due time (Redis server time, Unix seconds)."""
    return "audiosync:due:{0}" if shard == LEGACY_SHARD else _shard_prefix(shard) + "due"


def quarantine_index_key(shard: int) -> str:
    """The shard's sessions with a quarantine (score: quarantines begun, an over-count)."""
    if shard == LEGACY_SHARD:
        return "audiosync:quarantined"
    return _shard_prefix(shard) + "quarantined"


def dispatch_key(shard: int) -> str:
    """Held while a flush task of the shard is queued or running (workers/drain.py)."""
    if shard == LEGACY_SHARD:
        return "audiosync:dispatch:{0}"
    return _shard_prefix(shard) + "dispatch"


@dataclass(frozen=True)
class SessionKeys:
    """Every key of one session. The hash tag is its shard (``{s7}``): a session's keys,
    its shard's due index and quarantine index share one Redis Cluster slot, so every
    script and MULTI touches one slot, and a shard lives on one cluster node."""

    session_id: str
    shard: int

    @property
    def prefix(self) -> str:
        if self.shard == LEGACY_SHARD:
            return f"audiosync:{{{self.session_id}}}:"
        return f"{_shard_prefix(self.shard)}{self.session_id}:"

    @property
    def chunks(self) -> str:
        return self.prefix + "chunks"

    @property
    def appended(self) -> str:
        return self.prefix + "appended"

    @property
    def lease(self) -> str:
        return self.prefix + "lease"

    @property
    def plan(self) -> str:
        return self.prefix + "plan"

    @property
    def legacy_intent(self) -> str:
        """Written by the first release's flush; read once, then deleted (FORMATS.md §5.4)."""
        return self.prefix + "intent"

    @property
    def stored(self) -> str:
        """A bitmap: bit ``seq`` is set when an object holding chunk ``seq`` has committed."""
        return self.prefix + "stored"

    @property
    def failures(self) -> str:
        return self.prefix + "failures"

    @property
    def quarantine(self) -> str:
        return self.prefix + "quarantine"

    @property
    def due(self) -> str:
        return due_key(self.shard)

    @property
    def quarantine_index(self) -> str:
        return quarantine_index_key(self.shard)


#: The last part of every session key (the shard's own keys end otherwise: due, ...).
SESSION_KEY_SUFFIXES = frozenset(
    {"chunks", "appended", "lease", "plan", "intent", "stored", "failures", "quarantine"}
)


def session_key_pattern(suffix: str) -> str:
    """A SCAN/KEYS pattern for one kind of session key in every shard (and the legacy
    layout), e.g. ``session_key_pattern("chunks")`` for every stream."""
    if suffix not in SESSION_KEY_SUFFIXES:
        raise ValueError(f"not a session key suffix: {suffix!r}")
    return f"audiosync:{{*:{suffix}"


#: A SCAN/KEYS pattern for every shard's due index (the legacy one is ``due_key(-1)``).
DUE_KEY_PATTERN = "audiosync:{s*}:due"


def session_of_key(key: bytes | str) -> tuple[int, str] | None:
    """(shard, session id) of a session key such as ``audiosync:{s3}:abc:chunks``; None
    for any other key."""
    text = key.decode() if isinstance(key, bytes) else key
    if not text.startswith("audiosync:{"):
        return None
    tag, _, rest = text[len("audiosync:{") :].partition("}:")
    session, _, suffix = rest.rpartition(":")
    if suffix not in SESSION_KEY_SUFFIXES or not tag:
        return None
    if not session:
        return LEGACY_SHARD, tag
    if tag.startswith("s") and tag[1:].isdigit():
        return int(tag[1:]), session
    return None


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
#: How long the highest appended ``n`` of a session is kept after its last append: a
#: pusher retrying an append whose reply was lost later than this would add it again.
APPENDED_MARK_TTL_MS = 24 * 3600 * 1000
#: How long a session's stored-seq bitmap is kept after its last commit: a chunk appended
#: again (or replayed from quarantine) later than this, after its original was stored,
#: would be stored a second time.
STORED_SEQS_TTL_MS = 24 * 3600 * 1000


def deleted_conversation_key(uid: str, conversation_id: str) -> str:
    """The mark of a deleted conversation. Ids may hold ``:``, so the key holds a digest
    of both (length-prefixed: never two pairs to one key); the value names them."""
    digest = hashlib.sha256(f"{len(uid)}:{uid}{conversation_id}".encode()).hexdigest()[:32]
    return f"audiosync:deleted:{digest}"


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


# -- deleted conversations: re-checks and blind uploads (docs/ARCHITECTURE.md, "Deleted
# conversations"). Per shard, so that a cluster node out delays only its own shards' items.


def deletion_recheck_key(shard: int) -> str:
    """The shard's re-check queue (sorted set): member = ``deletion_item(uid, cid)``, score
    = when (Redis server time, Unix ms) the fleet lists that deleted conversation again and
    deletes what it finds: an upload attempt its client gave up on may land after a delete
    listed the conversation, or after a flush deleted the object it had just stored."""
    if shard == LEGACY_SHARD:
        return "audiosync:deletion-rechecks:{0}"
    return _shard_prefix(shard) + "deletion-rechecks"


def blind_uploads_key(shard: int) -> str:
    """The shard's notes of blind uploads (sorted set): member = ``deletion_item(uid, cid,
    name)``, score = when (Unix ms) a flush of the shard uploaded ``name`` without being able
    to read the conversation's deleted mark (its node did not answer). The fleet reads the
    mark once it answers: marked, the object goes (and a re-check is scheduled)."""
    if shard == LEGACY_SHARD:
        return "audiosync:blind-uploads:{0}"
    return _shard_prefix(shard) + "blind-uploads"


def deletion_failures_key(shard: int) -> str:
    """The shard's failing re-checks and notes (hash): field = ``recheck:`` or ``blind:``
    then the member, value = ``attempts|first failure (Unix ms)|last error``."""
    if shard == LEGACY_SHARD:
        return "audiosync:deletion-failures:{0}"
    return _shard_prefix(shard) + "deletion-failures"


def deletion_item(*parts: str) -> str:
    """A member of the re-check or blind-upload queue: its parts as a compact JSON list."""
    return json.dumps(list(parts), separators=(",", ":"))


def parse_deletion_item(member: bytes | str, parts: int) -> list[str]:
    """The parts of a queue member; ``ValueError`` if it is not a list of ``parts`` strings."""
    value = json.loads(member)
    if not (
        isinstance(value, list) and len(value) == parts and all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"not a list of {parts} strings: {member!r}")
    return value


def recheck_shard(uid: str, conversation_id: str, shards: int) -> int:
    """The shard whose queue takes a delete's re-check (a stable hash of the conversation)."""
    return shard_of(deletion_item(uid, conversation_id), shards)


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


class Appender:
    """The pusher's append: one script call per batch of entries."""

    def __init__(self, client: RedisClient, shards: int | None = None) -> None:
        """``shards``: the pusher's AUDIOSYNC_DUE_SHARDS, registered (``SHARD_COUNTS_KEY``)
        before its first append so the fleet sweeps every shard this pusher writes."""
        self.client = client
        self._script = NodeScript(client, SCRIPTS["append"])
        self._unregistered = shards
        self._lock = threading.Lock()

    def append(
        self,
        keys: SessionKeys,
        entries: Sequence[NewEntry],
        *,
        first_n: int,
        urgent: bool,
        max_age_seconds: float,
    ) -> int:
        """Append ``entries`` (numbered from ``first_n``); returns how many were new."""
        if self._unregistered is not None:
            with self._lock:
                if self._unregistered is not None:
                    self.client.sadd(SHARD_COUNTS_KEY, self._unregistered)
                    self._unregistered = None
        args: list[str | int | float | bytes] = [
            keys.session_id,
            1 if urgent else 0,
            repr(max_age_seconds),
            APPENDED_MARK_TTL_MS,
            first_n,
            len(entries),
        ]
        for entry in entries:
            fields = entry.fields()
            args.append(len(fields))
            for name, value in fields.items():
                args += [name, value]
        return int(self._script(keys=[keys.chunks, keys.appended, keys.due], args=args))
