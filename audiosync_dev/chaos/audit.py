"""The audit: every object in the bucket read straight from fake-gcs-server, its name
and digest checked, opened, parsed and decoded, and every expected chunk accounted
for by identity (session, seq); the quarantine checked for the poison."""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from audiosync_dev.chaos.config import ENHANCED
from audiosync_dev.chaos.drain import RedisLeft, redis_left
from audiosync_dev.chaos.injections import POISON_SEQ_BASE, Poison
from audiosync_dev.chaos.pushing import ExpectedChunk
from audiosync_dev.chaos.store import scan_keys
from backend_hooks.adapters.redis_store import RedisClient
from backend_hooks.contract import codec, container, envelope, naming, redis_keys
from backend_hooks.contract.errors import AudioSyncError


@dataclass(frozen=True)
class FoundChunk:
    session_id: str
    seq: int
    start_us: int
    samples: int
    rate: int
    pcm: bytes = field(default=b"", compare=False, repr=False)  # decoded

    @property
    def end_us(self) -> int:
        return self.start_us + self.samples * 1_000_000 // self.rate


SILENCE_RMS = 50.0  # below this (about -56 dBFS) a piece of the test speech is a pause


def same_audio(pushed: bytes, decoded: bytes) -> bool:
    """Opus is lossy: the decoded chunk must correlate with what was pushed (0.84-0.92 on
    this speech; another piece of it correlates ~0). A pause (a short chunk cut at a
    switch can be nothing else) must come back as near silence: the codec adds a little
    noise to digital silence, and noise does not correlate with zeros."""
    a = np.frombuffer(pushed, "<i2").astype(np.float64)
    b = np.frombuffer(decoded, "<i2").astype(np.float64)
    if len(a) != len(b) or not len(a):
        return False
    rms_a, rms_b = float(np.sqrt(np.mean(a * a))), float(np.sqrt(np.mean(b * b)))
    if rms_a < SILENCE_RMS:
        return rms_b < 4 * SILENCE_RMS
    if rms_b == 0.0:
        return False
    return bool(float(np.dot(a, b)) / (rms_a * rms_b * len(a)) >= 0.5)


#: The pusher's own encoding of a chunk's PCM at a rate, decoded: what the chunk must hold.
Reencode = Callable[[bytes, int], bytes]


def reencoder(encoders: Callable[[int], codec.ChunkEncoder]) -> Reencode:
    """``Reencode`` with the pusher's encoder settings (``encoders(rate)``). The encoder is
    reset for every chunk, so a chunk's packets are a function of its PCM alone, and the
    decoded samples of a chunk that holds its own audio are exactly these."""

    def reencode(pcm: bytes, rate: int) -> bytes:
        encoder = encoders(rate)
        return codec.decode_packets(
            encoder.encode(pcm), rate, pre_skip=encoder.pre_skip, sample_count=len(pcm) // 2
        )

    return reencode


def holds_its_audio(pushed: bytes, decoded: bytes, rate: int, reencode: Reencode | None) -> bool:
    """``same_audio``, or failing it the exact check: a short chunk (a close's last tens of
    ms) decodes from an encoder started afresh, and its correlation with quiet speech falls
    under 0.5 now and then (40 ms of the test speech above the silence level: 23 of 152
    windows), while the re-encoded chunk is sample for sample what it must be."""
    if same_audio(pushed, decoded):
        return True
    return reencode is not None and reencode(pushed, rate) == decoded


@dataclass
class ObjectAudit:
    name: str
    size: int
    uid: str | None = None
    cid: str | None = None
    sealed: bool = False
    name_problem: str | None = None
    undecodable: str | None = None
    bad_chunks: int = 0
    chunks: list[FoundChunk] = field(default_factory=list)

    @property
    def in_order(self) -> bool:
        """Chunks of one object in time order (a reader plays the chain as stored)."""
        keys = [(c.session_id, c.start_us, c.seq) for c in self.chunks]
        return all(
            a[0] != b[0] or (a[1] < b[1] and a[2] < b[2]) for a, b in itertools.pairwise(keys)
        )


def _decode_into(audit: ObjectAudit, plaintext: bytes) -> None:
    """Parse and decode the chunks of one plaintext; failures count, never raise."""
    try:
        parsed = container.parse_chunks(plaintext)
    except (AudioSyncError, ValueError) as exc:
        audit.bad_chunks += 1
        audit.undecodable = audit.undecodable or f"chunks do not parse: {exc}"[:200]
        return
    for chunk in parsed:
        info = chunk.info
        pcm = b""
        try:
            pcm = chunk.decode()
            ok = len(pcm) == 2 * info.sample_count
        except (AudioSyncError, ValueError) as exc:
            ok = False
            audit.undecodable = audit.undecodable or f"chunk does not decode: {exc}"[:200]
        if not ok:
            audit.bad_chunks += 1
            continue
        audit.chunks.append(
            FoundChunk(
                info.session_id, info.seq, info.start_us, info.sample_count, info.sample_rate, pcm
            )
        )


def _open_sealed(audit: ObjectAudit, keys: envelope.UserKeys, uid: str, data: bytes) -> None:
    """Each record on its own, so one bad record does not hide the others before it."""
    pos = 0
    index = 0
    while pos < len(data):
        try:
            record = envelope.frame_at(data, pos, index=index, name=audit.name)
        except AudioSyncError as exc:
            audit.bad_chunks += 1
            audit.undecodable = audit.undecodable or f"sealed record framing: {exc}"[:200]
            return  # nothing after a broken frame can be found
        pos, index = record.end, index + 1
        try:
            plaintext = envelope.open_record(keys, uid, record, name=audit.name)
            if record.info is not None:  # v1: the chunk must say what the header says
                [chunk] = container.parse_chunks(plaintext)
                if chunk.info != record.info:
                    raise ValueError(f"chunk {chunk.info} under header {record.info}")
        except (AudioSyncError, ValueError) as exc:
            audit.bad_chunks += 1
            audit.undecodable = audit.undecodable or f"sealed record: {exc}"[:200]
            continue
        _decode_into(audit, plaintext)


def _split_ogg_chain(data: bytes) -> list[bytes]:
    """Cut a chained Ogg file at each beginning-of-stream page (to salvage around garbage)."""
    marks = [i for i in range(len(data)) if data.startswith(b"OggS\x00\x02", i)]
    if not marks or marks[0] != 0:
        marks = [0, *marks]
    return [data[a:b] for a, b in zip(marks, [*marks[1:], len(data)], strict=True)]


def _first_stream(data: bytes) -> bytes:
    """The pages of ``data`` up to its first end-of-stream page (what follows may be junk)."""
    pos = 0
    while pos + 27 <= len(data) and data.startswith(b"OggS", pos):
        segments = data[pos + 26]
        end = pos + 27 + segments + sum(data[pos + 27 : pos + 27 + segments])
        if end > len(data):
            break
        if data[pos + 5] & 0x04:  # EOS
            return data[:end]
        pos = end
    return data


def audit_object(name: str, data: bytes, keys: envelope.UserKeys) -> ObjectAudit:
    audit = ObjectAudit(name=name, size=len(data))
    parts = name.split("/")
    try:
        parsed = naming.parse_object_name(name)
    except AudioSyncError as exc:
        audit.name_problem = f"name does not parse: {exc}"
        parsed = None
    if len(parts) == 4 and parts[0] == "chunks":
        audit.uid, audit.cid = parts[1], parts[2]
    elif audit.name_problem is None:
        audit.name_problem = "not at chunks/{uid}/{conversation}/{file}"
    if parsed is not None and audit.name_problem is None:
        if not parsed.is_new:
            audit.name_problem = "a legacy name (no digest)"
        elif parsed.digest != naming.content_digest(data):
            audit.name_problem = f"digest {parsed.digest} is not the content's"
    audit.sealed = sealed = parsed.sealed if parsed is not None else name.endswith(".enc")
    if sealed:
        if audit.uid is None:
            audit.undecodable = "sealed, but no uid in the name to open it with"
            return audit
        _open_sealed(audit, keys, audit.uid, data)
    else:
        try:
            container.parse_chunks(data)
            _decode_into(audit, data)
        except (AudioSyncError, ValueError) as exc:
            audit.undecodable = f"not a chained Ogg Opus file: {exc}"[:200]
            for piece in _split_ogg_chain(data):
                _decode_into(audit, _first_stream(piece))
    if parsed is not None and audit.chunks and not audit.name_problem and not audit.undecodable:
        start = min(c.start_us for c in audit.chunks)
        end = max(c.end_us for c in audit.chunks)
        if parsed.start_us != start // 1000 * 1000 or parsed.end_us != end // 1000 * 1000:
            audit.name_problem = "name's times are not its chunks' times"
    return audit


@dataclass
class Audit:
    objects: int = 0
    bytes: int = 0
    expected: int = 0
    conversations: int = 0
    found: int = 0
    lost: int = 0
    lost_in_redis: int = 0
    twice: int = 0
    twice_in_one_object: int = 0
    mismatched: int = 0
    overlaps: int = 0
    undecodable_objects: int = 0
    undecodable_chunks: int = 0
    bad_names: int = 0
    unexpected: int = 0
    wrong_audio: int = 0
    out_of_order: int = 0
    empty_objects: int = 0
    model_problems: int = 0
    poison_injected: int = 0
    poison_quarantined: int = 0
    poison_in_bucket: int = 0
    real_quarantined: int = 0
    duplicates_quarantined: int = 0
    quarantine_malformed: int = 0
    quarantine_unindexed: int = 0
    left: RedisLeft = field(default_factory=RedisLeft)
    problems: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.problems) < 2000:
            self.problems.append(text)


def list_bucket(gcs_url: str, bucket: str) -> dict[str, bytes]:
    """Every object of the bucket, read straight from fake-gcs-server."""
    client: Any = storage.Client(
        project="local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_url},
    )
    try:
        handle = client.bucket(bucket)
        names = [b.name for b in client.list_blobs(handle)]

        def download(name: str) -> bytes:
            return bytes(handle.blob(name).download_as_bytes())

        with ThreadPoolExecutor(8) as pool:
            return dict(zip(names, pool.map(download, names), strict=True))
    finally:
        client.close()


def audit_run(
    expected: dict[tuple[str, int], ExpectedChunk],
    poisons: list[Poison],
    objects: dict[str, bytes],
    r: RedisClient,
    keys: envelope.UserKeys,
    duplicates: Sequence[tuple[str, int]] = (),
    reencode: Reencode | None = None,
) -> Audit:
    """``duplicates``: (session, seq) of the chunk entries appended again on purpose;
    ``reencode``: the pusher's encoding, for the exact check of a chunk whose decoded audio
    does not correlate with what was pushed (``holds_its_audio``)."""
    a = Audit(objects=len(objects), bytes=sum(len(d) for d in objects.values()))
    duplicated = set(duplicates)
    a.expected = len(expected)
    a.conversations = len({(e.uid, e.cid) for e in expected.values()})
    a.poison_injected = len(poisons)
    poison_ids = {(p.session_id, p.k) for p in poisons}
    places: dict[tuple[str, int], list[str]] = defaultdict(list)
    in_bucket: set[tuple[str, int]] = set()
    spans: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)

    for name in sorted(objects):
        data = objects[name]
        obj = audit_object(name, data, keys)
        if obj.name_problem:
            a.bad_names += 1
            a.note(f"bad name {name}: {obj.name_problem}")
        if obj.undecodable:
            a.undecodable_objects += 1
            a.note(f"undecodable {name}: {obj.undecodable}")
        a.undecodable_chunks += obj.bad_chunks
        if not obj.chunks and not obj.undecodable:
            a.empty_objects += 1
            a.note(f"object {name} holds no chunk")
        if not obj.in_order:
            a.out_of_order += 1
            a.note(f"object {name}: chunks not in time order")
        for poison in poisons:
            if len(poison.data) >= 32 and poison.data in data:
                in_bucket.add((poison.session_id, poison.k))
                a.note(f"poison {poison.k} ({poison.kind}) stored in {name}")
        real: list[FoundChunk] = []
        for chunk in obj.chunks:
            key = (chunk.session_id, chunk.seq)
            if chunk.seq >= POISON_SEQ_BASE:
                in_bucket.add((chunk.session_id, chunk.seq - POISON_SEQ_BASE))
                continue
            exp = expected.get(key)
            if exp is None:
                a.unexpected += 1
                a.note(f"unexpected chunk {chunk.session_id[:8]}/{chunk.seq} in {name}")
                continue
            places[key].append(name)
            real.append(chunk)
            pushed = (exp.uid, exp.cid, exp.level == ENHANCED, exp.rate, exp.start_us, exp.samples)
            found = (obj.uid, obj.cid, obj.sealed, chunk.rate, chunk.start_us, chunk.samples)
            if pushed != found:
                a.mismatched += 1
                a.note(f"chunk {chunk.session_id[:8]}/{chunk.seq} differs from what was pushed")
            elif not holds_its_audio(exp.pcm, chunk.pcm, exp.rate, reencode):
                a.wrong_audio += 1
                a.note(f"chunk {chunk.session_id[:8]}/{chunk.seq} in {name}: not its audio")
        if real and obj.uid is not None and obj.cid is not None:
            start = min(c.start_us for c in real)
            end = max(c.end_us for c in real)
            spans[(obj.uid, obj.cid)].append((start, end, name))

    for conversation, items in spans.items():
        items.sort()
        for i, (_, end_i, name_i) in enumerate(items):
            for start_j, _, name_j in items[i + 1 :]:
                if start_j >= end_i:
                    break
                a.overlaps += 1
                a.note(
                    f"overlap in {conversation[1]}: {name_i.rsplit('/', 1)[-1]} and "
                    f"{name_j.rsplit('/', 1)[-1]}"
                )

    # quarantine
    quarantined: set[tuple[str, int]] = set()
    for qkey in scan_keys(r, redis_keys.session_key_pattern("quarantine")):
        located = redis_keys.session_of_key(qkey)
        assert located is not None
        shard, session_id = located
        index_key = redis_keys.quarantine_index_key(shard)
        if r.zscore(index_key, session_id) is None:
            a.quarantine_unindexed += 1
            a.note(f"quarantine of {session_id[:8]} is not in {index_key}")
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(qkey))
        for qid, fields in raw:
            reason = fields.get(b"reason", b"").strip()
            well_formed = bool(reason) and b"entry_id" in fields and b"at_ms" in fields
            if not well_formed:
                a.quarantine_malformed += 1
                a.note(
                    f"quarantine entry {qid.decode()} of {session_id[:8]} lacks reason/"
                    "entry_id/at_ms"
                )
            if b"f:poison" in fields:
                with contextlib.suppress(ValueError):
                    pid = (session_id, int(fields[b"f:poison"]))
                    if pid in poison_ids and reason:
                        quarantined.add(pid)
                continue
            seq_text = fields.get(b"f:seq", b"?")
            with contextlib.suppress(ValueError):
                if (session_id, int(seq_text)) in duplicated and b"already" in reason:
                    a.duplicates_quarantined += 1  # the copy, after its original was stored
                    continue
            a.real_quarantined += 1
            a.note(
                f"real entry {session_id[:8]}/{seq_text.decode(errors='replace')} "
                f"quarantined: {reason.decode(errors='replace')[:160]}"
            )
            if fields.get(b"f:kind") == b"chunk":
                with contextlib.suppress(ValueError):
                    places[(session_id, int(seq_text))].append("quarantine")
    a.poison_quarantined = len(quarantined)
    a.poison_in_bucket = len(in_bucket)
    for poison in poisons:
        if (poison.session_id, poison.k) not in quarantined:
            a.note(
                f"poison {poison.k} ({poison.kind}) in {poison.session_id[:8]} "
                "is not in its session's quarantine"
            )

    a.left = redis_left(r, with_ids=True)
    for key, exp in sorted(expected.items()):
        where = places.get(key, [])
        stored = [p for p in where if p != "quarantine"]
        if stored:
            a.found += 1
        if not where:
            a.lost += 1
            still = key in a.left.chunk_ids
            a.lost_in_redis += still
            a.note(
                f"lost {exp.uid}/{exp.cid} seq {key[1]}" + (" (still in Redis)" if still else "")
            )
        elif len(where) > 1:
            a.twice += 1
            if len(set(stored)) < len(stored):
                a.twice_in_one_object += 1
            a.note(f"stored {len(where)}x: {exp.uid}/{exp.cid} seq {key[1]}")
    return a
