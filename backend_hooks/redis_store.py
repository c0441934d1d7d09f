"""The only module that speaks Redis. Every key audiosync uses is defined here.

Keys (``{...}`` is a Redis Cluster hash tag: all keys of one session share a slot):

``audiosync:{<session_id>}:chunks``  STREAM, one entry per chunk or conversation end, in
    push order. Written by the pusher (XADD), read and trimmed by the worker (XRANGE, XDEL
    only after the object holding an entry is durably stored).
``audiosync:due:{<shard>}``          ZSET, member = session id, score = Unix seconds when
    the session must next be looked at. The pusher lowers it (ZADD LT); the sweep claims
    due members by pushing their score forward by the lease time; a flush removes or
    reschedules its session. One shard today (``0``); ROADMAP 2 splits it.
``audiosync:{<session_id>}:lease``   STRING, a random token with a TTL: the worker that
    holds it is the only one flushing the session.
``audiosync:{<session_id>}:intent``  STRING, the id of the last stream entry a flush is
    about to store, written before its uploads and deleted in the same MULTI as its
    entries; a flush that finds it cuts at that entry again (same objects, same names).

Stream entry fields (all values ASCII except ``data``), entry format ``v=1``:
``kind`` (``chunk`` | ``end``), ``uid``, ``cid``, ``enq_us`` (pusher clock, Unix
microseconds) and, for chunks, ``level`` (``standard`` | ``enhanced``), ``rate``, ``seq``,
``start_us``, ``samples`` and ``data`` (the v1 chunk container, sealed for ``enhanced``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import redis

from backend_hooks.errors import FormatError

ENTRY_VERSION = b"1"
KIND_CHUNK = "chunk"
KIND_END = "end"
DUE_SHARDS = 1


def stream_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:chunks"


def lease_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:lease"


def intent_key(session_id: str) -> str:
    return f"audiosync:{{{session_id}}}:intent"


def due_key(shard: int = 0) -> str:
    return f"audiosync:due:{{{shard}}}"


def shard_of(session_id: str) -> int:
    return 0  # ROADMAP 2: a stable hash of the session id modulo the shard count


SOCKET_TIMEOUT = 5.0  # seconds; a stalled Redis is an error, never a hang


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        health_check_interval=30,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )


@dataclass(frozen=True)
class NewEntry:
    """An entry the pusher appends."""

    kind: str
    uid: str
    cid: str
    enq_us: int
    level: str = ""
    rate: int = 0
    seq: int = 0
    start_us: int = 0
    samples: int = 0
    data: bytes = b""

    def fields(self) -> dict[str, str | int | bytes]:
        out: dict[str, str | int | bytes] = {
            "v": ENTRY_VERSION,
            "kind": self.kind,
            "uid": self.uid,
            "cid": self.cid,
            "enq_us": self.enq_us,
        }
        if self.kind == KIND_CHUNK:
            out.update(
                level=self.level,
                rate=self.rate,
                seq=self.seq,
                start_us=self.start_us,
                samples=self.samples,
                data=self.data,
            )
        return out


@dataclass(frozen=True)
class StreamEntry(NewEntry):
    """An entry as read back, with its stream id."""

    entry_id: bytes = b""

    @classmethod
    def parse(cls, entry_id: bytes, raw: Mapping[bytes, bytes]) -> StreamEntry:
        try:
            if raw.get(b"v") != ENTRY_VERSION:
                raise FormatError(f"stream entry format {raw.get(b'v')!r} is not known")
            kind = raw[b"kind"].decode()
            common = {
                "entry_id": entry_id,
                "kind": kind,
                "uid": raw[b"uid"].decode(),
                "cid": raw[b"cid"].decode(),
                "enq_us": int(raw[b"enq_us"]),
            }
            if kind == KIND_END:
                return cls(**common)  # type: ignore[arg-type]
            if kind != KIND_CHUNK:
                raise FormatError(f"stream entry kind {kind!r} is not known")
            return cls(
                **common,  # type: ignore[arg-type]
                level=raw[b"level"].decode(),
                rate=int(raw[b"rate"]),
                seq=int(raw[b"seq"]),
                start_us=int(raw[b"start_us"]),
                samples=int(raw[b"samples"]),
                data=raw[b"data"],
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise FormatError(f"malformed stream entry {entry_id!r}: {exc!r}") from exc


def append(client: redis.Redis, session_id: str, entries: Sequence[NewEntry], due: float) -> None:
    """Append entries and lower the session's due time, atomically, in one round trip."""
    pipe = client.pipeline(transaction=True)
    for entry in entries:
        pipe.xadd(stream_key(session_id), entry.fields())  # type: ignore[arg-type]
    pipe.zadd(due_key(shard_of(session_id)), {session_id: due}, lt=True)
    pipe.execute()


_CLAIM = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(members) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member)
end
return members
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# Ends a flush in one atomic step, so no kill can leave a session with entries and no due
# time. KEYS: stream, intent, due index. ARGV: session id, the due time computed from the
# entries left (or '' for none), the id of the last entry the flush read (or ''), now,
# then the ids of the entries stored. Entries appended after the flush read its stream
# make the session due now, so a pusher's own "due now" is never overwritten.
_COMMIT = """
if #ARGV > 4 then redis.call('XDEL', KEYS[1], unpack(ARGV, 5)) end
redis.call('DEL', KEYS[2])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if last[1][1] ~= ARGV[3] or ARGV[2] == '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  return 2
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


class WorkerStore:
    """What the worker fleet does with Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._commit = client.register_script(_COMMIT)

    def claim_due(self, now: float, limit: int, claim_until: float, shard: int = 0) -> list[str]:
        """Due sessions, each rescheduled to ``claim_until`` so no other sweep takes it."""
        members = cast(
            list[bytes], self._claim(keys=[due_key(shard)], args=[now, limit, claim_until])
        )
        return [m.decode() for m in members]

    def acquire_lease(self, session_id: str, token: str, seconds: float) -> bool:
        return bool(
            self.client.set(lease_key(session_id), token, nx=True, px=max(1, int(seconds * 1000)))
        )

    def release_lease(self, session_id: str, token: str) -> None:
        self._release(keys=[lease_key(session_id)], args=[token])

    def read_entries(self, session_id: str, limit: int) -> list[StreamEntry]:
        raw = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            self.client.xrange(stream_key(session_id), count=limit),
        )
        return [StreamEntry.parse(entry_id, fields) for entry_id, fields in raw]

    def read_intent(self, session_id: str) -> bytes | None:
        return cast(bytes | None, self.client.get(intent_key(session_id)))

    def write_intent(self, session_id: str, last_entry_id: bytes) -> None:
        self.client.set(intent_key(session_id), last_entry_id)

    def commit(
        self,
        session_id: str,
        entry_ids: Sequence[bytes],
        *,
        last_read_id: bytes | None,
        next_due: float | None,
        now: float,
    ) -> None:
        """Delete stored entries and the intent, drop an empty stream, set the due time."""
        self._commit(
            keys=[stream_key(session_id), intent_key(session_id), due_key(shard_of(session_id))],
            args=[
                session_id,
                "" if next_due is None else repr(next_due),
                last_read_id or b"",
                repr(now),
                *entry_ids,
            ],
        )

    def schedule(self, session_id: str, due: float) -> None:
        """Lower (or set, when absent) the session's due time."""
        self.client.zadd(due_key(shard_of(session_id)), {session_id: due}, lt=True)
