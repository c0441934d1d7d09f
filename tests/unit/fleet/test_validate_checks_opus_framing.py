"""Worker validation counts Opus samples by the framing rules of RFC 6716 §3.2
(``opus_packet_samples``), not from TOC bytes only.

The check exists because a chunk whose packets hold fewer samples than its tags makes
the whole conversation unreadable (``decode_packets`` raises ``FormatError`` and
``download_merged_audio`` fails). Counted from the TOC byte (and the frame count of
code 3) alone, without the framing that the decoder checks, a code-2 packet with no
frame-length byte counts as two 20 ms frames, and libopus refuses it
(OPUS_INVALID_PACKET). Were that chunk to pass every worker check, it would be stored
and the conversation would no longer decode, the very outcome the check is for.
"""

from __future__ import annotations

import time

import pytest

from backend_hooks.contract import container
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.entries import KIND_CHUNK, BadEntry, NewEntry
from backend_hooks.contract.errors import FormatError
from workers.validate import Limits, validate_entry

RATE = 16000
SESSION = "s" * 32


def _entry_fields(data: bytes, info: container.ChunkInfo) -> dict[bytes, bytes]:
    new = NewEntry(
        kind=KIND_CHUNK,
        uid="user",
        cid="conv",
        enq_us=info.start_us,
        level="standard",
        rate=RATE,
        seq=info.seq,
        start_us=info.start_us,
        samples=info.sample_count,
        data=data,
    )
    out = {}
    for k, v in new.fields().items():
        out[k.encode()] = v if isinstance(v, bytes) else str(v).encode()
    return out


def test_a_chunk_whose_packets_do_not_decode_is_refused() -> None:
    now_ms = int(time.time() * 1000)
    samples = RATE  # 1 s
    info = container.ChunkInfo(SESSION, 7, now_ms * 1000, RATE, samples)
    encoder = ChunkEncoder(RATE)
    packets = encoder.encode(bytes(2 * samples))
    toc = packets[5][0]
    packets[5] = bytes([(toc & 0xFC) | 2])  # code 2 (two frames), its length byte missing
    data = container.build_chunk(info, packets, encoder.pre_skip)

    [parsed] = container.parse_chunks(data)
    with pytest.raises(FormatError, match="frame length"):  # the framing check refuses it
        parsed.held_samples()
    with pytest.raises(FormatError):  # what a reader gets for the whole conversation
        parsed.decode()

    verdict = validate_entry(
        SESSION, f"{now_ms}-0".encode(), _entry_fields(data, info), Limits(604800)
    )
    # Observed: a ChunkEntry (accepted, stored, the conversation unreadable).
    assert isinstance(verdict, BadEntry)
