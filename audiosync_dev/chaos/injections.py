"""Entries the chaos thread writes into live sessions' streams: poison (well-formed
but for one broken thing, ``POISON_KINDS``) and exact copies of real chunk
entries."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import cast

from audiosync_dev.chaos.config import ENHANCED
from audiosync_dev.chaos.pushing import LiveRegistry, LiveSession
from audiosync_dev.speech import speech_like
from backend_hooks.adapters.redis_store import RedisClient
from backend_hooks.contract import container, envelope, redis_keys
from backend_hooks.contract.codec import ChunkEncoder

POISON_SEQ_BASE = 1_000_000  # poison chunks carry seq >= this, so the audit knows them
POISON_KINDS = (
    "wrong_v",
    "missing_seq",
    "unknown_kind",
    "non_utf8_uid",
    "rate_zero",
    "negative_start_us",
    "absurd_start_us",
    "garbage_data",
)


@dataclass(frozen=True)
class Poison:
    k: int
    kind: str
    session_id: str
    entry_id: str
    data: bytes  # searched for in every object


def _container(live: LiveSession, seq: int, keys: envelope.UserKeys, seed: int) -> bytes:
    """A valid (sealed, for enhanced) chunk container with the given seq: 0.4 s of audio."""
    pcm = speech_like(0.4, live.rate, seed=seed)
    encoder = ChunkEncoder(live.rate)
    info = container.ChunkInfo(
        session_id=live.session_id,
        seq=seq,
        start_us=round(live.t0 * 1_000_000),
        sample_rate=live.rate,
        sample_count=len(pcm) // 2,
    )
    data = container.build_chunk(info, encoder.encode(pcm), encoder.pre_skip)
    if live.level == ENHANCED:
        data = envelope.seal(keys, live.uid, info, data)
    return data


def poison_fields(
    kind: str,
    k: int,
    live: LiveSession,
    keys: envelope.UserKeys,
    rng: random.Random,
    real: dict[bytes, bytes] | None = None,
) -> dict[bytes, bytes]:
    """The fields of poison entry ``k``: well-formed but for the one thing ``kind`` breaks.

    ``garbage_data`` copies ``real`` (a real chunk entry's fields) when given.
    """
    if kind == "garbage_data" and real is not None:
        fields = {key: value for key, value in real.items() if key != b"poison"}
        fields[b"data"] = rng.randbytes(max(64, len(real.get(b"data", b""))))
    else:
        data = _container(live, POISON_SEQ_BASE + k, keys, seed=50_000 + k)
        fields = {
            b"v": b"1",
            b"kind": b"chunk",
            b"uid": live.uid.encode(),
            b"cid": live.cid.encode(),
            b"enq_us": str(round(time.time() * 1_000_000)).encode(),
            b"level": live.level.encode(),
            b"rate": str(live.rate).encode(),
            b"seq": str(POISON_SEQ_BASE + k).encode(),
            b"start_us": str(round(live.t0 * 1_000_000)).encode(),
            b"samples": str(round(0.4 * live.rate)).encode(),
            b"data": data,
        }
        if kind == "wrong_v":
            fields[b"v"] = b"9"
        elif kind == "missing_seq":
            del fields[b"seq"]
        elif kind == "unknown_kind":
            fields[b"kind"] = b"chunk-v9"
        elif kind == "non_utf8_uid":
            fields[b"uid"] = b"\xff\xfe\x80chaos"
        elif kind == "rate_zero":
            fields[b"rate"] = b"0"
        elif kind == "negative_start_us":
            fields[b"start_us"] = b"-5000000"
        elif kind == "absurd_start_us":
            fields[b"start_us"] = str(10**12 * 1_000_000).encode()  # 1e12 s in the future
        elif kind == "garbage_data":
            fields[b"data"] = rng.randbytes(len(data))
        else:
            raise ValueError(f"unknown poison kind {kind!r}")
    fields[b"poison"] = str(k).encode()
    return fields


def _keys(live: LiveSession) -> redis_keys.SessionKeys:
    return redis_keys.SessionKeys(live.session_id, live.shard)


def _last_real_chunk(r: RedisClient, live: LiveSession) -> dict[bytes, bytes] | None:
    raw = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        r.xrevrange(_keys(live).chunks, count=50),
    )
    for _, fields in raw:
        if fields.get(b"kind") == b"chunk" and b"poison" not in fields and b"data" in fields:
            return fields
    return None


def inject_poison(
    r: RedisClient,
    k: int,
    kind: str,
    registry: LiveRegistry,
    keys: envelope.UserKeys,
    rng: random.Random,
    give_up_at: float,
) -> Poison | None:
    """XADD poison entry ``k`` into a live session's stream and make the session due now."""
    while True:
        live = registry.snapshot()
        rng.shuffle(live)
        real = None
        target = live[0] if live else None
        if kind == "garbage_data":  # wants a real entry to copy, if one is still there
            for candidate in live:
                real = _last_real_chunk(r, candidate)
                if real is not None:
                    target = candidate
                    break
        last_try = time.monotonic() >= give_up_at
        if target is not None and (real is not None or kind != "garbage_data" or last_try):
            fields = poison_fields(kind, k, target, keys, rng, real)
            entry_id = cast(bytes, r.xadd(_keys(target).chunks, fields))  # type: ignore[arg-type]
            r.zadd(_keys(target).due, {target.session_id: time.time()})
            return Poison(k, kind, target.session_id, entry_id.decode(), fields[b"data"])
        if last_try:
            return None
        time.sleep(0.3)


def inject_duplicate(
    r: RedisClient, registry: LiveRegistry, rng: random.Random, give_up_at: float
) -> tuple[str, int] | None:
    """XADD an exact copy of a live session's latest real chunk entry (as a pusher whose
    append mark was lost would) and make the session due now; (session, seq) of it. Tries
    until ``give_up_at`` (monotonic) for a session whose stream holds a chunk."""
    while True:
        live = registry.snapshot()
        rng.shuffle(live)
        for candidate in live:
            real = _last_real_chunk(r, candidate)
            if real is not None and b"seq" in real:
                r.xadd(_keys(candidate).chunks, real)  # type: ignore[arg-type]
                r.zadd(_keys(candidate).due, {candidate.session_id: time.time()})
                return candidate.session_id, int(real[b"seq"])
        if time.monotonic() >= give_up_at:
            return None
        time.sleep(0.1)
