"""The pusher's append: one Lua script per call.

The script (backend_hooks/contract/lua/append.lua: one round trip, atomic) XADDs the entries the
stream does not have yet and lowers the session's due time, computed from Redis server
time. Entries carry a per-session append number ``n`` (0, 1, 2, ... over chunks and end
markers); the script keeps the highest ``n`` appended in ``audiosync:{sK}:S:appended`` and
skips entries at or below it, so an append whose reply was lost and that the pusher sends
again adds nothing (the retry is idempotent). Stream ids are Redis's own (``*``): their
milliseconds are the server time of the append, the clock every age is measured with.

Used by the pusher's transport (backend_hooks/pusher/transport.py, which decides what to do when
Redis is away) and by the spool drainer (backend_hooks/pusher/spool_drainer.py); keys are named in
backend_hooks/contract/redis_keys.py, the script is run by backend_hooks/adapters/redis_store.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from backend_hooks.adapters.redis_store import NodeScript, RedisClient
from backend_hooks.contract.entries import NewEntry
from backend_hooks.contract.lua_scripts import SCRIPTS
from backend_hooks.contract.redis_keys import APPENDED_MARK_TTL_MS, SHARD_COUNTS_KEY, SessionKeys


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
