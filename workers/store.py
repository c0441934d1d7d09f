"""What the worker fleet does with Redis: leases, plans, commits, quarantine, replays.

Keys are named in backend_hooks/contract/redis_keys.py; docs/FORMATS.md §5 and docs/ARCHITECTURE.md
("Who writes what") have the table. The scripts run here are files of workers/lua, by name
in ``workers.lua_scripts.SCRIPTS`` (how they are kept: backend_hooks/contract/lua_scripts.py). The
rule every one of them follows: **a flush changes nothing in Redis unless it still holds
the session's lease**. Each script that writes on a flush's behalf first compares the lease
key with the flush's token, in the same atomic step, and otherwise returns ``LEASE_LOST``
without writing; the caller raises ``LeaseLostError`` and stops. A flush that outlived its
lease (a stalled upload, a paused process) therefore cannot delete a successor's plan,
commit entries twice or reschedule the session. One write is not fenced: a failed flush's
count (``record_failure``), which a flush that failed after its lease ran out still adds to
the session's failures.

Times are Redis server time (``TIME``), passed in as ``now`` by the flush (one clock).

Every script and write the fleet needs to make progress runs at Redis's memory limit:
flushes are what frees memory, so a store at ``maxmemory`` (``noeviction``, which refuses
every command that may grow memory) must still let them take leases, commit and delete.
Those scripts start with ``#!lua flags=allow-oom`` (``ALLOW_OOM``); the fleet's few plain
writes (the sweep's marks, dispatch holds, due times, the quarantine index) are scripts
of that kind too. The pusher's append is not: at the limit Redis refuses appends and the
pusher spools or holds them. A script with flags must declare its keys (each does).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import redis
import redis.cluster

from backend_hooks.adapters.redis_store import (
    REDIS_ERRORS,
    NodeScript,
    RedisClient,
    conversation_deleted,
    redis_time,
    run_script,
    schedule_deletion_recheck,
)
from backend_hooks.contract.redis_keys import (
    LEGACY_SHARD,
    SHARD_COUNTS_KEY,
    STORED_SEQS_TTL_MS,
    SWEPT_KEY,
    SessionKeys,
    blind_uploads_key,
    deleted_conversation_key,
    deletion_failures_key,
    deletion_item,
    deletion_recheck_key,
    dispatch_key,
    due_key,
    quarantine_index_key,
    shard_of,
)
from backend_hooks.contract.settings import MAX_DUE_SHARDS
from workers.lua_scripts import SCRIPTS

log = logging.getLogger(__name__)
LEASE_LOST = -1
PLAN_MISMATCH = -2
BAD_ARGUMENT = -3


class LeaseLostError(RuntimeError):
    """The flush no longer holds its session's lease: it changed nothing and must stop."""


class PlanMismatchError(RuntimeError):
    """The recorded plan is not what this flush expected (only another flush could change it)."""


def _fenced(result: object) -> int:
    value = int(cast(int, result))
    if value == LEASE_LOST:
        raise LeaseLostError("the lease ran out or was taken over; nothing was written")
    if value == PLAN_MISMATCH:
        raise PlanMismatchError("the recorded plan changed under this flush")
    if value == BAD_ARGUMENT:
        raise ValueError("a script was given an argument out of range; nothing was written")
    return value


#: The first line of a script the fleet runs at Redis's memory limit (see the docstring).
ALLOW_OOM = "#!lua flags=allow-oom\n"


@dataclass(frozen=True)
class StoredSeqs:
    """A session's stored-seq bitmap as Redis keeps it (bit 0 is the first byte's top bit)."""

    bits: bytes

    def __contains__(self, seq: int) -> bool:
        byte = seq >> 3
        return 0 <= byte < len(self.bits) and bool(self.bits[byte] & (0x80 >> (seq & 7)))


@dataclass(frozen=True)
class Begun:
    """What a flush starts from, read with its lease (``WorkerStore.begin``)."""

    plan: list[bytes]
    intent: bytes | None
    entries: list[tuple[bytes, dict[bytes, bytes]]]
    stored: StoredSeqs
    #: the session's ``:appended`` mark exists: its pusher seals envelope v1 (the first
    #: release, the only pusher that sealed v0, never wrote the mark)
    appended_mark: bool = False


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[0::2], flat[1::2], strict=True))


@dataclass(frozen=True)
class Failures:
    count: int
    last_error: str


@dataclass(frozen=True)
class FailureCount:
    """A failure just counted: the session's count, and whether the failed flush holds
    the lease (its own, or taken again when it had run out) or another flush does."""

    count: int
    holds_lease: bool


@dataclass(frozen=True)
class QuarantinedEntry:
    quarantine_id: bytes
    entry_id: bytes  # the id it had in the session stream
    reason: str
    at_ms: int
    fields: dict[bytes, bytes]  # the original fields


class WorkerStore:
    """The fleet's Redis operations; every write on a flush's behalf is fenced by its lease."""

    def __init__(
        self,
        client: RedisClient,
        shards: int,
        *,
        pinned: int | None = None,
        mark_reader: Callable[[], RedisClient] | None = None,
    ) -> None:
        """``shards``: AUDIOSYNC_DUE_SHARDS. A store's session keys are in the shard the
        session hashes to, unless ``pinned`` to one shard (``in_shard``). ``mark_reader``
        makes the client that reads deleted marks, one bounded attempt each
        (``redis_store.connect_one_attempt``); default: ``client``."""
        self.client = client
        self.shards = shards
        self.pinned = pinned
        self._marks = _OneAttemptReader(mark_reader or (lambda: client))
        self.is_cluster = isinstance(client, redis.cluster.RedisCluster)
        self._take = NodeScript(client, SCRIPTS["take"])
        self._schedule = NodeScript(client, SCRIPTS["schedule"])
        self._bump_quarantine_index = NodeScript(client, SCRIPTS["bump_quarantine_index"])
        self._renew = NodeScript(client, SCRIPTS["renew"])
        self._release = NodeScript(client, SCRIPTS["release"])
        self._quarantine = NodeScript(client, SCRIPTS["quarantine"])
        self._record_plan = NodeScript(client, SCRIPTS["record_plan"])
        self._begin = NodeScript(client, SCRIPTS["begin"])
        self._commit_object = NodeScript(client, SCRIPTS["commit_object"])
        self._finish = NodeScript(client, SCRIPTS["finish"])
        self._fail = NodeScript(client, SCRIPTS["fail"])
        self._hand_back = NodeScript(client, SCRIPTS["hand_back"])
        self._drop_intent = NodeScript(client, SCRIPTS["drop_intent"])
        self._park = NodeScript(client, SCRIPTS["park"])
        self._replay = NodeScript(client, SCRIPTS["replay"])
        self._forget = NodeScript(client, SCRIPTS["forget"])
        self._claim = NodeScript(client, SCRIPTS["claim"])
        self._hold_dispatch = NodeScript(client, SCRIPTS["hold_dispatch"])

    def in_shard(self, shard: int) -> WorkerStore:
        """This store with every session's keys in ``shard``: a flush works on the shard it
        claimed the session from, whatever AUDIOSYNC_DUE_SHARDS says now."""
        view = copy.copy(self)
        view.pinned = shard
        return view

    def keys(self, session_id: str) -> SessionKeys:
        shard = shard_of(session_id, self.shards) if self.pinned is None else self.pinned
        return SessionKeys(session_id, shard)

    def shard_count(self) -> int:
        """How many shards the fleet drains: its own AUDIOSYNC_DUE_SHARDS or the largest
        count a pusher registered (``SHARD_COUNTS_KEY``), whichever is more."""
        try:
            members = cast(set[bytes], self.client.smembers(SHARD_COUNTS_KEY))
        except redis.RedisError as exc:
            if not self.is_cluster:
                raise
            log.warning(
                "cannot read the shard counts in %s (%s): sweeping %d shards",
                SHARD_COUNTS_KEY,
                exc,
                self.shards,
            )
            return self.shards
        counts = [int(m) for m in members if m.isdigit() and 0 < int(m) <= MAX_DUE_SHARDS]
        return max([self.shards, *counts])

    def memory_policies(self) -> dict[str, str]:
        """The ``maxmemory-policy`` of the stream store, by node (host:port), read from
        ``INFO memory`` (managed Redis services often refuse CONFIG GET)."""
        if not self.is_cluster:
            node = self._single_node()
            return {node: _policy(cast(Mapping[str, object], self.client.info("memory")))}
        cluster = cast(redis.cluster.RedisCluster, self.client)
        return {
            node.name: _policy(cluster.info("memory", target_nodes=node))
            for node in cluster.get_primaries()  # type: ignore[no-untyped-call]
        }

    def all_shards(self) -> list[int]:
        """The shards the fleet drains: 0 .. ``shard_count() - 1``, and on a single Redis
        also the release-before-shards keys (LEGACY_SHARD), which a rolling upgrade may
        still hold."""
        return [*range(self.shard_count()), *([] if self.is_cluster else [LEGACY_SHARD])]

    def time(self) -> float:
        """Redis server time. On a cluster, a store pinned to a shard asks the node that
        holds the shard: the clock its scripts stamp entries and due times with."""
        if self.is_cluster and self.pinned is not None:
            cluster = cast(redis.cluster.RedisCluster, self.client)
            node = cluster.get_node_from_key(due_key(self.pinned))  # type: ignore[no-untyped-call]
            seconds, micros = cluster.execute_command("TIME", target_nodes=node)  # type: ignore[no-untyped-call]
            return float(seconds) + int(micros) / 1_000_000
        return redis_time(self.client)

    # -- the sweep -----------------------------------------------------------------------
    def claim_due(self, now: float, limit: int, claim_until: float, shard: int) -> list[str]:
        """Due sessions of ``shard``, each rescheduled to ``claim_until`` so no other task
        takes it before its flush holds the lease."""
        members = cast(
            list[bytes], self._claim(keys=[due_key(shard)], args=[now, limit, claim_until])
        )
        return [m.decode() for m in members]

    def dispatch(
        self, tokens: Mapping[int, str], hold_seconds: float, *, limit: int | None = None
    ) -> list[int]:
        """The shards of ``tokens`` that should get a flush task now: a session of the
        shard is due (by the clock of the node holding it) and no task of it is queued or
        running, at most ``limit`` of them, in the order of ``tokens`` (on a cluster, node
        by node). Each of them is held for its token. Two pipelined round trips per node
        whatever the shard count (a cluster pipeline may not carry scripts). On a cluster
        a node that does not answer stops only its own shards."""
        chosen: list[int] = []
        for group in self._node_groups(list(tokens)):
            left = None if limit is None else limit - len(chosen)
            if left is not None and left <= 0:
                break
            try:
                chosen += self._dispatch_group(group, tokens, hold_seconds, left)
            except redis.RedisError as exc:
                if not self.is_cluster:
                    raise
                log.warning(
                    "dispatch: %d shards on a node that does not answer: %s", len(group), exc
                )
        return chosen

    def _dispatch_group(
        self, shards: list[int], tokens: Mapping[int, str], hold_seconds: float, limit: int | None
    ) -> list[int]:
        now = repr(self.in_shard(shards[0]).time())  # one node: one clock
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.zrangebyscore(due_key(shard), "-inf", now, start=0, num=1)
        due = [shard for shard, found in zip(shards, pipe.execute(), strict=True) if found]
        due = due[:limit]
        if not due:
            return []
        pipe = self.client.pipeline(transaction=False)
        for shard in due:  # EVAL, not EVALSHA: a cluster pipeline cannot load a script
            args = [tokens[shard], _ms(hold_seconds)]
            pipe.execute_command("EVAL", SCRIPTS["take"], 1, dispatch_key(shard), *args)
        return [shard for shard, took in zip(due, pipe.execute(), strict=True) if int(took)]

    def _node_groups(self, shards: list[int]) -> list[list[int]]:
        """``shards`` grouped by the node that holds them (one group on a single Redis)."""
        return list(self.shards_by_node(shards).values())

    def shards_by_node(self, shards: list[int]) -> dict[str, list[int]]:
        """``shards`` by the node (host:port) that holds them, as the client last learnt
        the cluster's slots (no round trip); one node on a single Redis."""
        if not self.is_cluster or not shards:
            return {self._single_node(): shards} if shards else {}
        cluster = cast(redis.cluster.RedisCluster, self.client)
        groups: dict[str, list[int]] = {}
        for shard in shards:
            node = cluster.get_node_from_key(due_key(shard))  # type: ignore[no-untyped-call]
            groups.setdefault(node.name, []).append(shard)
        return groups

    def memory_policy_of(self, node: str) -> str:
        """The ``maxmemory-policy`` of one node (a name ``shards_by_node`` gave)."""
        if not self.is_cluster:
            return _policy(cast(Mapping[str, object], self.client.info("memory")))
        cluster = cast(redis.cluster.RedisCluster, self.client)
        target = cluster.get_node(node_name=node)  # type: ignore[no-untyped-call]
        return _policy(cluster.info("memory", target_nodes=target))

    def _single_node(self) -> str:
        kwargs = cast(redis.Redis, self.client).connection_pool.connection_kwargs
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"

    def take_sweep(self, seconds: float) -> bool:
        """True for the first caller within ``seconds`` (fleet-wide): it walks every
        shard's dispatch. On a cluster whose node of that key does not answer: True."""
        try:
            return bool(self._take(keys=[SWEPT_KEY], args=["1", _ms(seconds)]))
        except redis.RedisError:
            if not self.is_cluster:
                raise
            return True

    def hold_dispatch(self, shard: int, token: str, hold_seconds: float) -> bool:
        """Keep (or take, when free) the shard's dispatch hold for a running task; False when
        another task holds it."""
        keys = [dispatch_key(shard)]
        return bool(self._hold_dispatch(keys=keys, args=[token, _ms(hold_seconds)]))

    def release_dispatch(self, shard: int, token: str) -> None:
        self._release(keys=[dispatch_key(shard)], args=[token])

    def schedule(self, session_id: str, due: float) -> None:
        """Lower (or set, when absent) the session's due time."""
        k = self.keys(session_id)
        self._schedule(keys=[k.due], args=[session_id, repr(due)])

    # -- the lease -----------------------------------------------------------------------
    def acquire_lease(self, session_id: str, token: str, seconds: float) -> bool:
        k = self.keys(session_id)
        return bool(self._take(keys=[k.lease], args=[token, _ms(seconds)]))

    def renew_lease(self, session_id: str, token: str, seconds: float) -> None:
        k = self.keys(session_id)
        _fenced(self._renew(keys=[k.lease], args=[token, _ms(seconds)]))

    def release_lease(self, session_id: str, token: str) -> None:
        k = self.keys(session_id)
        self._release(keys=[k.lease], args=[token])

    def begin(self, session_id: str, token: str, seconds: float, limit: int) -> Begun | None:
        """Take the lease and read what a flush starts from, in one round trip; None when
        another flush holds the lease. The entries are read only when there is neither a
        recorded plan nor a first-release intent (those read their own span)."""
        k = self.keys(session_id)
        keys = [k.lease, k.plan, k.legacy_intent, k.chunks, k.stored, k.appended]
        reply = cast(list[object], self._begin(keys=keys, args=[token, _ms(seconds), limit]))
        if not int(cast(int, reply[0])):
            return None
        plan, intent, entries, stored, marked = reply[1:]
        raw = [
            (cast(bytes, eid), _pairs(cast(list[bytes], fields)))
            for eid, fields in cast(list[list[object]], entries)
        ]
        return Begun(
            plan=cast(list[bytes], plan),
            intent=cast(bytes, intent) or None,
            entries=raw,
            stored=StoredSeqs(cast(bytes, stored)),
            appended_mark=bool(int(cast(int, marked))),
        )

    # -- reads (no fence needed) ---------------------------------------------------------
    def read_raw(
        self,
        session_id: str,
        limit: int,
        last_id: bytes | None = None,
        *,
        first_id: bytes | None = None,
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        k = self.keys(session_id)
        return cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            self.client.xrange(k.chunks, min=first_id or "-", max=last_id or "+", count=limit),
        )

    def read_plan(self, session_id: str) -> list[bytes]:
        k = self.keys(session_id)
        return cast(list[bytes], self.client.lrange(k.plan, 0, -1))

    def last_entry_id(self, session_id: str) -> bytes | None:
        k = self.keys(session_id)
        last = cast(list[tuple[bytes, object]], self.client.xrevrange(k.chunks, count=1))
        return last[0][0] if last else None

    def failures(self, session_id: str) -> Failures:
        k = self.keys(session_id)
        raw = cast(dict[bytes, bytes], self.client.hgetall(k.failures))
        return Failures(
            int(raw.get(b"count", b"0")), raw.get(b"last_error", b"").decode(errors="replace")
        )

    # -- fenced writes -------------------------------------------------------------------
    def quarantine(self, session_id: str, token: str, bad: Sequence[tuple[bytes, str]]) -> int:
        """Move ``(entry id, reason)`` entries to the session's quarantine, atomically."""
        k = self.keys(session_id)
        if not bad:
            return 0
        # First, apart (the index of the legacy keys is in another slot): it over-covers.
        self._bump_quarantine_index(keys=[k.quarantine_index], args=[session_id])
        args: list[str | bytes] = [token]
        for entry_id, reason in bad:
            args += [entry_id, reason]
        keys = [
            k.lease,
            k.chunks,
            k.quarantine,
            k.plan,
        ]
        return _fenced(self._quarantine(keys=keys, args=args))

    def record_plan(
        self,
        session_id: str,
        token: str,
        objects: Sequence[str],
        *,
        lease_seconds: float | None = None,
    ) -> None:
        """Record the plan (only when none is); with ``lease_seconds``, renew the lease."""
        k = self.keys(session_id)
        keys = [k.lease, k.plan, k.legacy_intent]
        renew = "" if lease_seconds is None else str(_ms(lease_seconds))
        _fenced(self._record_plan(keys=keys, args=[token, renew, *objects]))

    def commit_object(
        self,
        session_id: str,
        token: str,
        recorded: bytes | str,
        delete_ids: Sequence[bytes],
        seqs: Sequence[int],
    ) -> int:
        """Delete a stored object's entries, mark its seqs stored and pop it off the plan;
        returns the number of objects left in the plan."""
        k = self.keys(session_id)
        keys = [
            k.lease,
            k.plan,
            k.chunks,
            k.stored,
        ]
        args: list[str | bytes | int] = [
            token,
            recorded,
            STORED_SEQS_TTL_MS,
            len(delete_ids),
            *delete_ids,
            *seqs,
        ]
        return _fenced(self._commit_object(keys=keys, args=args))

    def conversation_deleted(self, uid: str, conversation_id: str) -> bool:
        """Whether the reader's ``delete_conversation_audio`` marked it deleted."""
        return conversation_deleted(self.client, uid, conversation_id)

    # -- deleted conversations: the mark read once, re-checks, blind uploads -------------
    # (docs/ARCHITECTURE.md, "Deleted conversations"; the queues are the shard's own keys)
    def deletion_mark(self, uid: str, conversation_id: str) -> bool | None:
        """Whether the conversation is marked deleted, asked once within a short timeout
        (``mark_reader``); None when the mark's node does not answer so: on a cluster the
        mark lives on any node, and a node out must not hold up another node's shards."""
        try:
            return conversation_deleted(self._marks.client(), uid, conversation_id)
        except REDIS_ERRORS as exc:
            log.warning(
                "the deleted mark of conversation %s of user %s cannot be read now: %s",
                conversation_id,
                uid,
                exc,
            )
            return None

    def mark_node(self, uid: str, conversation_id: str) -> str | None:
        """The cluster node holding the conversation's mark (None on a single Redis)."""
        if not self.is_cluster:
            return None
        cluster = cast(redis.cluster.RedisCluster, self.client)
        node = cluster.get_node_from_key(deleted_conversation_key(uid, conversation_id))  # type: ignore[no-untyped-call]
        return str(node.name) if node is not None else None

    def note_blind_upload(
        self, session_id: str, token: str, uid: str, conversation_id: str, name: str
    ) -> None:
        """Before uploading ``name`` without knowing the mark: a note in the session's own
        shard (fenced by the lease) that the fleet resolves once the mark can be read."""
        k = self.keys(session_id)
        member = deletion_item(uid, conversation_id, name)
        _fenced(
            run_script(
                self.client,
                SCRIPTS["note_blind"],
                [k.lease, blind_uploads_key(k.shard)],
                [token, member],
            )
        )

    def schedule_recheck(
        self, session_id: str, uid: str, conversation_id: str, *, after_seconds: float
    ) -> None:
        """Have the conversation listed again ``after_seconds`` from now, in the session's
        shard. Not fenced: a flush that lost its lease may still have uploads in flight."""
        shard = self.keys(session_id).shard
        schedule_deletion_recheck(
            self.client, shard, uid, conversation_id, after_seconds=after_seconds
        )

    def shards_with_deletion_work(self, shards: Sequence[int]) -> list[int]:
        """The shards of ``shards`` with a re-check due or a blind-upload note, in order, node
        by node (one pipelined round trip each); on a cluster a node that does not answer
        is left out (its items wait for it)."""
        found: list[int] = []
        for group in self._node_groups(list(shards)):
            try:
                now_ms = round(self.in_shard(group[0]).time() * 1000)
                pipe = self.client.pipeline(transaction=False)
                for shard in group:
                    pipe.zrangebyscore(deletion_recheck_key(shard), "-inf", now_ms, 0, 1)
                    pipe.zcard(blind_uploads_key(shard))
                answers = pipe.execute()
            except REDIS_ERRORS as exc:
                if not self.is_cluster:
                    raise
                log.warning(
                    "deletion work: %d shards on a node that does not answer: %s", len(group), exc
                )
                continue
            found += [s for i, s in enumerate(group) if answers[2 * i] or answers[2 * i + 1]]
        return found

    def claim_rechecks(
        self, shard: int, limit: int, claim_seconds: float
    ) -> tuple[bytes, list[bytes]]:
        """Up to ``limit`` due re-checks of ``shard``, each pushed ``claim_seconds`` ahead
        (no other run takes it meanwhile); returns that new score and the members."""
        claimed, members = cast(
            list[object],
            run_script(
                self.client,
                SCRIPTS["claim_rechecks"],
                [deletion_recheck_key(shard)],
                [limit, _ms(claim_seconds)],
            ),
        )
        return cast(bytes, claimed), cast(list[bytes], members)

    def recheck_done(self, shard: int, member: bytes, claimed: bytes) -> None:
        """Drop a re-check carried out, unless it was scheduled again since its claim (then
        its later due time stands)."""
        keys = [deletion_recheck_key(shard), deletion_failures_key(shard)]
        run_script(self.client, SCRIPTS["recheck_done"], keys, [member, claimed])

    def deletion_work_failed(
        self,
        shard: int,
        kind: str,
        member: bytes,
        error: str,
        *,
        claimed: bytes | None,
        base: float,
        cap: float,
    ) -> int:
        """Count a failed re-check (``kind`` "recheck": due again after base * 2^(n-1) s,
        at most ``cap``, unless scheduled again since ``claimed``) or blind-upload note
        ("blind": tried again by the next run); it stays, with its error. Returns n."""
        queue = deletion_recheck_key(shard) if kind == "recheck" else blind_uploads_key(shard)
        keys = [queue, deletion_failures_key(shard)]
        args: list[str | bytes | int] = [
            f"{kind}:".encode() + member,
            member,
            claimed or b"",
            error.replace("\n", " ")[:500],
            _ms(base),
            _ms(cap),
        ]
        return int(cast(int, run_script(self.client, SCRIPTS["deletion_failed"], keys, args)))

    def blind_uploads(
        self, shard: int, limit: int, *, offset: int = 0
    ) -> list[tuple[bytes, bytes]]:
        """The oldest ``limit`` blind-upload notes of ``shard`` after the first ``offset``:
        (member, score as stored)."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be at least 1 and offset at least 0: {limit}, {offset}")
        keys = [blind_uploads_key(shard)]
        flat = cast(
            list[bytes], run_script(self.client, SCRIPTS["read_notes"], keys, [limit, offset])
        )
        return list(zip(flat[0::2], flat[1::2], strict=True))

    def resolve_blind_upload(
        self, shard: int, member: bytes, score: bytes, *, recheck: str | None, after_seconds: float
    ) -> bool:
        """Drop a note whose mark was read (unless a flush noted the same upload again
        since); ``recheck``: the conversation was deleted and its blind object deleted, so
        have it listed again ``after_seconds`` from now. True if the note went."""
        keys = [blind_uploads_key(shard), deletion_recheck_key(shard), deletion_failures_key(shard)]
        args: list[str | bytes | int] = [member, score, recheck or "", _ms(after_seconds)]
        return bool(run_script(self.client, SCRIPTS["resolve_blind"], keys, args))

    def stored_seqs(self, session_id: str) -> StoredSeqs:
        """Which seqs of the session objects have stored (within the bitmap's TTL)."""
        k = self.keys(session_id)
        return StoredSeqs(cast(bytes | None, self.client.get(k.stored)) or b"")

    def finish(
        self,
        session_id: str,
        token: str,
        *,
        drop_ids: Sequence[bytes],
        last_read_id: bytes | None,
        next_due: float | None,
        now: float,
        release: bool = False,
    ) -> None:
        """End a flush whose plan is done: drop ids, clear failures, set the due time (and,
        with ``release``, give up the lease in the same step)."""
        k = self.keys(session_id)
        keys = [
            k.lease,
            k.chunks,
            k.due,
            k.failures,
            k.plan,
        ]
        args: list[str | bytes] = [
            token,
            session_id,
            "" if next_due is None else repr(next_due),
            last_read_id or b"",
            repr(now),
            "1" if release else "0",
            *drop_ids,
        ]
        _fenced(self._finish(keys=keys, args=args))

    def drop_legacy_intent(self, session_id: str, token: str) -> None:
        """Forget a first-release intent whose entry is no longer in the stream."""
        k = self.keys(session_id)
        keys = [k.lease, k.legacy_intent]
        _fenced(self._drop_intent(keys=keys, args=[token]))

    def hand_back(self, session_id: str, token: str, *, now: float) -> None:
        """Make the session due now and release the lease (the worker is shutting down)."""
        k = self.keys(session_id)
        keys = [k.lease, k.due]
        _fenced(self._hand_back(keys=keys, args=[token, session_id, repr(now)]))

    def record_failure(
        self,
        session_id: str,
        token: str,
        error: str,
        *,
        now: float,
        base: float,
        cap: float,
        lease_seconds: float,
    ) -> FailureCount:
        """Count a failed flush, even one that ran past its lease; with the lease (its own,
        or free and taken again for ``lease_seconds``) also push the due time back."""
        k = self.keys(session_id)
        keys = [k.lease, k.failures, k.due]
        args: list[str | float] = [token, session_id, error[:1000], repr(now), base, cap]
        args.append(_ms(lease_seconds))
        count, held = (int(x) for x in cast(list[int], self._fail(keys=keys, args=args)))
        return FailureCount(count, bool(held))

    def park_batch(
        self, session_id: str, token: str, reason: str, up_to_id: bytes, batch: int
    ) -> tuple[int, bool]:
        """Move up to ``batch`` of the oldest entries (to ``up_to_id``) to quarantine."""
        k = self.keys(session_id)
        self._bump_quarantine_index(keys=[k.quarantine_index], args=[session_id])
        keys = [
            k.lease,
            k.chunks,
            k.quarantine,
            k.plan,
            k.failures,
            k.legacy_intent,
        ]
        result = self._park(keys=keys, args=[token, reason, up_to_id, batch])
        if not isinstance(result, list):
            _fenced(result)
            raise AssertionError("unreachable")
        moved, done = (int(x) for x in result)
        return moved, bool(done)

    # -- quarantine (operators) ----------------------------------------------------------
    def quarantined_sessions(self, shard: int, limit: int = 1000) -> list[str]:
        """Sessions of ``shard``'s quarantine index (it over-covers: some may be empty)."""
        key = quarantine_index_key(shard)
        members = cast(list[bytes], self.client.zrange(key, 0, limit - 1))
        return [m.decode() for m in members]

    def read_quarantine(
        self, session_id: str, limit: int = 1000, *, after: bytes | None = None
    ) -> list[QuarantinedEntry]:
        """Up to ``limit`` quarantined entries, oldest first (after the id ``after``)."""
        k = self.keys(session_id)
        start = b"(" + after if after is not None else "-"
        raw = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            self.client.xrange(k.quarantine, min=start, count=limit),
        )
        return [_quarantined(qid, fields) for qid, fields in raw]

    def replay_batch(
        self, session_id: str, batch: int, quarantine_ids: Sequence[bytes] = ()
    ) -> tuple[int, int]:
        """Put quarantined entries back into the session stream; returns (moved, left)."""
        k = self.keys(session_id)
        keys = [k.quarantine, k.chunks, k.due]
        moved, left = (
            int(x) for x in self._replay(keys=keys, args=[session_id, batch, *quarantine_ids])
        )
        return moved, left

    def forget_if_empty(self, session_id: str) -> bool:
        """Drop the session from the quarantine index if its quarantine is empty."""
        k = self.keys(session_id)
        score = self.client.zscore(k.quarantine_index, session_id)
        if score is None:
            return True
        keys = [k.quarantine_index, k.quarantine]
        return bool(self._forget(keys=keys, args=[session_id, _score_text(score)]))


NOEVICTION = "noeviction"


def _policy(info: Mapping[str, object]) -> str:
    return str(info.get("maxmemory_policy", "unknown"))


def eviction_warnings(policies: Mapping[str, str]) -> list[str]:
    """One line for each node of the stream store whose ``maxmemory-policy`` is not
    ``noeviction`` (``WorkerStore.memory_policies``)."""
    return [
        f"the stream store at {node} has maxmemory-policy {policy}, not {NOEVICTION}: at its "
        "memory limit it drops keys (stream entries: audio lost; leases, append marks, "
        "stored-seq bitmaps: audio stored twice); set maxmemory-policy noeviction "
        '(docs/ARCHITECTURE.md, "Redis memory")'
        for node, policy in sorted(policies.items())
        if policy != NOEVICTION
    ]


def _score_text(score: float) -> str:
    """A sorted-set score as Redis prints it (ZSCORE's reply) for an exact comparison."""
    return str(int(score)) if score == int(score) else repr(score)


def _quarantined(qid: bytes, fields: Mapping[bytes, bytes]) -> QuarantinedEntry:
    return QuarantinedEntry(
        quarantine_id=qid,
        entry_id=fields.get(b"entry_id", b""),
        reason=fields.get(b"reason", b"").decode(errors="replace"),
        at_ms=int(fields.get(b"at_ms", b"0")),
        fields={k[2:]: v for k, v in fields.items() if k.startswith(b"f:")},
    )


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _OneAttemptReader:
    """The client that reads deleted marks (``WorkerStore.deletion_mark``), made on first
    use and shared by every view of the store (``in_shard`` copies share this object)."""

    def __init__(self, factory: Callable[[], RedisClient]) -> None:
        self._factory = factory
        self._client: RedisClient | None = None
        self._lock = threading.Lock()

    def client(self) -> RedisClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client


def mark_check_seconds(lease_seconds: float) -> float:
    """How long the flush waits for a deleted mark: short against the lease (two looks per
    upload, which may take half of it), at most ``MARK_CHECK_SECONDS``."""
    return min(MARK_CHECK_SECONDS, lease_seconds / 8)


#: The longest wait for one look at a deleted mark (``mark_check_seconds``).
MARK_CHECK_SECONDS = 2.0
