"""Test-only: legacy single-chunk Opus objects (``.opus``, ``.opus.enc``) written byte for
byte as ../shared/LEGACY_FORMATS.md describes them, without audiosync's container or
envelope code (so the reader is checked against the document, not against itself):

- container, all little-endian: ``u32 packet_count | u32 original_pcm_byte_length`` then
  per packet ``u16 length | packet bytes``;
- encoded at 16 kHz mono, 20 ms frames (320 samples), application VOIP, a fresh encoder
  per chunk, the library's default bitrate; the last partial frame zero-padded;
- ``.opus.enc``: the whole container is the plaintext of v0 record(s)
  (tests/legacy_objects.py's ``v0_record``).
"""

from __future__ import annotations

import struct

import opuslib

from backend_hooks.adapters.gcs import GcsBucket
from tests.legacy_objects import filename, v0_record

RATE = 16000
FRAME = 320  # samples: 20 ms at 16 kHz


def legacy_packets(pcm: bytes) -> list[bytes]:
    """The Opus packets of one chunk as the old encoder made them."""
    encoder = opuslib.Encoder(RATE, 1, opuslib.APPLICATION_VOIP)
    step = 2 * FRAME
    frames = -(-len(pcm) // step)
    padded = pcm + bytes(frames * step - len(pcm))
    return [bytes(encoder.encode(padded[i * step : (i + 1) * step], FRAME)) for i in range(frames)]


def legacy_container(pcm: bytes, *, packets: list[bytes] | None = None) -> bytes:
    """``u32 count | u32 len(pcm) | (u16 length | packet)*`` of ``pcm`` (PCM16LE, 16 kHz)."""
    packets = legacy_packets(pcm) if packets is None else packets
    body = b"".join(struct.pack("<H", len(p)) + p for p in packets)
    return struct.pack("<II", len(packets), len(pcm)) + body


def legacy_opus_bytes(
    ext: str, pcm: bytes, *, secret: bytes | None = None, uid: str = "", records: int = 1
) -> bytes:
    """A ``.opus`` object, or a ``.opus.enc`` one whose container is split over
    ``records`` v0 records (at arbitrary offsets: the first may be shorter than the
    8-byte header)."""
    data = legacy_container(pcm)
    if ext == ".opus":
        return data
    assert ext == ".opus.enc" and secret is not None
    # With several records, the first holds 5 bytes: the 8-byte header spans two records.
    pieces = [data] if records == 1 else [data[:5], *_split(data[5:], records - 1)]
    return b"".join(v0_record(secret, uid, p) for p in pieces)


def _split(data: bytes, parts: int) -> list[bytes]:
    step = -(-len(data) // parts)
    return [data[i : i + step] for i in range(0, len(data), step)]


def write_legacy_opus(
    bucket: GcsBucket,
    uid: str,
    conversation_id: str,
    ext: str,
    start: float,
    pcm: bytes,
    *,
    secret: bytes | None = None,
    records: int = 1,
) -> str:
    """Store a legacy Opus object of ``pcm`` starting at ``start``; its path."""
    path = f"chunks/{uid}/{conversation_id}/{filename(start, ext)}"
    data = legacy_opus_bytes(ext, pcm, secret=secret, uid=uid, records=records)
    bucket.create_only(path, data, content_type="application/octet-stream", metadata={})
    return path
