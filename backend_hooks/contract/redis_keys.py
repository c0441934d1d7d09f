"""Redis key names of audiosync: the contract the pusher, the reader and the fleet share.

Every key is named here, and nothing here speaks Redis (no ``redis`` import): the one
module that does is backend_hooks/adapters/redis_store.py (the connection, the scripts' runner, the
deleted mark's and the re-check queue's I/O); the pusher's append is
backend_hooks/pusher/appender.py, the fleet's Redis operations are in workers/store.py.
docs/FORMATS.md §5 has the table with who writes what, and under which fence.
``{...}`` is a Redis Cluster hash tag: all keys of one session share a slot, that of its
shard.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass

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
