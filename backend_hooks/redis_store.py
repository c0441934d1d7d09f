"""Redis keys of audiosync, the connection, and the pusher's append.

Every key is named here (docs/FORMATS.md §5 has the table with who writes what, and under
which fence); the fleet's scripts are in workers/store.py. ``{...}`` is a Redis Cluster
hash tag: all keys of one session share a slot.

The append is one Lua script per call (one round trip, atomic): it XADDs the entries the
stream does not have yet and lowers the session's due time, computed from Redis server
time. Entries carry a per-session append number ``n`` (0, 1, 2, ... over chunks and end
markers); the script keeps the highest ``n`` appended in ``audiosync:{S}:appended`` and
skips entries at or below it, so an append whose reply was lost and that the pusher sends
again adds nothing (the retry is idempotent). Stream ids are Redis's own (``*``): their
milliseconds are the server time of the append, the clock every age is measured with.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from backend_hooks.entries import NewEntry


def stream_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:chunks"


def appended_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:appended"


def lease_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:lease"


def plan_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:plan"


def legacy_intent_key(session_id: str) -> str:
    """Written by the first release's flush; read once, then deleted (FORMATS.md §5.4)."""
    return f"audiosync:{{{session_id}}}:intent"


def stored_key(session_id: str) -> str:
    """A bitmap: bit ``seq`` is set when an object holding chunk ``seq`` has committed."""
    return f"audiosync:{{{session_id}}}:stored"


def failures_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:failures"


def quarantine_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:quarantine"


QUARANTINE_INDEX = "audiosync:quarantined"


def due_key(shard: int = 0) -> str:
    return f"audiosync:due:{{{shard}}}"


def shard_of(session_id: str) -> int:
    return 0  # one shard; the operations issue shards the due index


SOCKET_TIMEOUT = 5.0  # seconds; a stalled Redis is an error, never a hang
#: How long the highest appended ``n`` of a session is kept after its last append: a
#: pusher retrying an append whose reply was lost later than this would add it again.
APPENDED_MARK_TTL_MS = 24 * 3600 * 1000
#: How long a session's stored-seq bitmap is kept after its last commit: a chunk appended
#: again (or replayed from quarantine) later than this, after its original was stored,
#: would be stored a second time.
STORED_SEQS_TTL_MS = 24 * 3600 * 1000


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        health_check_interval=30,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )


def redis_time(client: redis.Redis) -> float:
    """Redis server time, Unix seconds: the one clock of everything shared."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


# KEYS: stream, appended mark, due index.
# ARGV: session id, urgent (1: due now), max age (s), mark TTL (ms), n of the first entry,
#       number of entries, then for each entry: its field count and its field/value pairs.
_APPEND = """
local mark = tonumber(redis.call('GET', KEYS[2]) or '-1')
local n = tonumber(ARGV[5])
local pos = 7
local added = 0
for _ = 1, tonumber(ARGV[6]) do
  local count = tonumber(ARGV[pos])
  if n > mark then
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, pos + 1, pos + 2 * count))
    added = added + 1
    mark = n
  end
  pos = pos + 1 + 2 * count
  n = n + 1
end
redis.call('SET', KEYS[2], mark, 'PX', ARGV[4])
local t = redis.call('TIME')
local due = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[2] ~= '1' then due = due + tonumber(ARGV[3]) end
redis.call('ZADD', KEYS[3], 'LT', string.format('%.6f', due), ARGV[1])
return added
"""


class Appender:
    """The pusher's append: one script call per batch of entries."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_APPEND)

    def append(
        self,
        session_id: str,
        entries: Sequence[NewEntry],
        *,
        first_n: int,
        urgent: bool,
        max_age_seconds: float,
    ) -> int:
        """Append ``entries`` (numbered from ``first_n``); returns how many were new."""
        args: list[str | int | float | bytes] = [
            session_id,
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
        keys = [stream_key(session_id), appended_key(session_id), due_key(shard_of(session_id))]
        return int(self._script(keys=keys, args=args))
