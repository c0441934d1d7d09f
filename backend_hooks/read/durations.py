"""Exact durations of Opus chunk objects (new and legacy), without decoding any audio.

``list_audio_chunks`` reports every object's ``duration`` from real sample counts, never
from the byte size of compressed data and never as "5 s a chunk" (the pitfalls of
LEGACY_FORMATS.md, "Audio-file records and duration"):

- **new objects** (``{start}-{end}_{digest}.opus[.enc]``): the object's metadata
  ``audiosync-samples`` / ``audiosync-rate`` (no read at all). Without it (an object
  copied without metadata, or metadata that does not parse), the bytes are read once and
  the container is parsed, not decoded: each v1 chunk's ``AUDIOSYNC_SAMPLES`` for a
  ``.opus`` object, each sealed record's cleartext v1 header for a ``.opus.enc`` one (no
  key needed; envelope v0 records are opened, and not counted among v1 records, where
  the reader refuses them as spliced in).
- **legacy single-chunk** ``.opus``: the container's first 8 bytes, ``u32 packet_count |
  u32 original_pcm_byte_length`` (little-endian), in one ranged read:
  ``original_pcm_byte_length // 2`` samples at 16 kHz.
- **legacy** ``.opus.enc``: the object is downloaded and its v0 record(s) opened (the
  container is their concatenated plaintext), then the same 8 bytes are read.

A legacy-named object whose payload is an Ogg Opus chain (``OggS``) is counted as a new
one. Reads run on at most ``READ_THREADS`` threads. An object that cannot be measured (no
key for a sealed one, a corrupt header, a read that failed) gets ``None`` and a warning
naming it and why: one bad object never makes a listing fail.

The parsers are pure (``legacy_header_samples``, ``payload_samples``,
``sealed_samples``); ``opus_sample_counts`` is the thin I/O around them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from backend_hooks.adapters import gcs
from backend_hooks.contract import container, envelope, naming, ogg
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.container import LEGACY_FRAME_SAMPLES, LEGACY_HEADER
from backend_hooks.contract.errors import AudioSyncError, ConfigError, FormatError
from backend_hooks.read import object_reader

log = logging.getLogger("backend_hooks.durations")

#: Objects measured at once (ranged reads or downloads in flight).
READ_THREADS = 8


@dataclass(frozen=True)
class SampleCount:
    """``samples`` of audio at ``sample_rate``."""

    samples: int
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def __add__(self, other: SampleCount) -> SampleCount:
        if other.sample_rate != self.sample_rate:
            raise FormatError(
                f"chunks at {self.sample_rate} and {other.sample_rate} Hz in one object"
            )
        return SampleCount(self.samples + other.samples, self.sample_rate)


def legacy_header_samples(header: bytes, where: str) -> SampleCount:
    """Pure: the samples a legacy single-chunk container holds, from its first 8 bytes.

    ``FormatError`` naming ``where`` when the header is short, or when it claims more PCM
    than its packets can carry (each packet is one 20 ms frame: a corrupt header, whose
    duration would be a lie)."""
    if len(header) < LEGACY_HEADER.size:
        raise FormatError(
            f"{where}: legacy Opus container of {len(header)} bytes, shorter than its 8-byte header"
        )
    packets, pcm_bytes = LEGACY_HEADER.unpack_from(header)
    samples = pcm_bytes // 2
    if samples > packets * LEGACY_FRAME_SAMPLES:
        raise FormatError(
            f"{where}: legacy Opus header says {pcm_bytes} bytes of PCM in {packets} packets "
            f"of 20 ms (at most {packets * LEGACY_FRAME_SAMPLES * 2} bytes): corrupt header"
        )
    return SampleCount(samples, container.LEGACY_RATE)


def payload_samples(payload: bytes, where: str) -> SampleCount:
    """Pure: the samples of an Opus object's plaintext, a v1 chain (``OggS``: the sum of
    its chunks' ``AUDIOSYNC_SAMPLES``, checked against their granules by the parser) or a
    legacy container (its header). No decoding."""
    if payload[:4] == ogg.CAPTURE:
        try:
            chunks = container.parse_chunks(payload)
        except AudioSyncError as exc:
            raise type(exc)(f"{where}: {exc}") from exc
        if not chunks:
            raise FormatError(f"{where}: an Ogg payload without chunks")
        total = SampleCount(0, chunks[0].info.sample_rate)
        for chunk in chunks:
            total = total + SampleCount(chunk.info.sample_count, chunk.info.sample_rate)
        return total
    return legacy_header_samples(payload[: LEGACY_HEADER.size], where)


def sealed_samples(
    data: bytes, uid: str, keys: envelope.UserKeys | None, where: str, *, new: bool = False
) -> SampleCount:
    """The samples of a sealed Opus object: each v1 record's cleartext header (read
    without a key; the reader authenticates it when it merges), each run of v0 records
    opened and measured as one payload (``payload_samples``). In a ``new`` object, v0
    records among v1 ones are not counted: the reader refuses them as spliced in
    (``object_reader.spliced_v0_records``). ``ConfigError`` when a v0 record needs a key
    and none is set."""
    records = envelope.split_records(data, name=where)
    if new:
        spliced = set(object_reader.spliced_v0_records(records))
        records = [r for r in records if r.index not in spliced]
    total: SampleCount | None = None
    run: list[envelope.Record] = []

    def add(part: SampleCount) -> None:
        nonlocal total
        total = part if total is None else total + part

    def end_run() -> None:
        if not run:
            return
        if keys is None:
            raise ConfigError(f"{where} holds v0 sealed records: set ENCRYPTION_SECRET")
        plain = b"".join(envelope.open_record(keys, uid, r, name=where) for r in run)
        run.clear()
        add(payload_samples(plain, where))

    for record in records:
        if record.info is None:
            run.append(record)
            continue
        end_run()
        add(SampleCount(record.info.sample_count, record.info.sample_rate))
    end_run()
    assert total is not None  # split_records refuses an empty object
    return total


def metadata_samples(metadata: dict[str, str]) -> SampleCount | None:
    """Pure: what a new object's metadata says (the flush writes both keys), or None
    when either is missing or out of range (then the bytes are read)."""
    try:
        samples, rate = int(metadata["audiosync-samples"]), int(metadata["audiosync-rate"])
    except (KeyError, ValueError):
        return None
    if rate not in SUPPORTED_RATES or samples <= 0:
        return None
    return SampleCount(samples, rate)


def measure(
    bucket: gcs.GcsBucket,
    keys: envelope.UserKeys | None,
    uid: str,
    name: naming.ObjectName,
    stored: gcs.StoredObject,
) -> SampleCount:
    """The samples of one Opus object (the rules of the module docstring)."""
    if name.is_new:
        known = metadata_samples(stored.metadata)
        if known is not None:
            return known
    if not name.sealed:
        if not name.is_new:
            if stored.size < LEGACY_HEADER.size:
                raise FormatError(
                    f"{name.path}: legacy Opus object of {stored.size} bytes, shorter than "
                    "its 8-byte header"
                )
            head = bucket.download_range(name.path, 0, LEGACY_HEADER.size)
            if head[:4] != ogg.CAPTURE:
                return legacy_header_samples(head, name.path)
        return payload_samples(bucket.download(name.path), name.path)
    return sealed_samples(bucket.download(name.path), uid, keys, name.path, new=name.is_new)


def opus_sample_counts(
    bucket: gcs.GcsBucket,
    keys: envelope.UserKeys | None,
    uid: str,
    objects: Sequence[tuple[naming.ObjectName, gcs.StoredObject]],
) -> dict[str, SampleCount | None]:
    """The audio of each Opus object (path -> its sample count, or None with a warning
    when it cannot be measured), on at most ``READ_THREADS`` threads."""

    def one(pair: tuple[naming.ObjectName, gcs.StoredObject]) -> SampleCount | None:
        name, stored = pair
        try:
            return measure(bucket, keys, uid, name, stored)
        except AudioSyncError as exc:
            log.warning("%s: duration not known (%s); listed with duration None", name.path, exc)
            return None

    if not objects:
        return {}
    with ThreadPoolExecutor(min(READ_THREADS, len(objects))) as pool:
        counts = list(pool.map(one, objects))
    return {name.path: c for (name, _), c in zip(objects, counts, strict=True)}
