"""The ctypes ``opus_decode`` fast path against packets
and counts a corrupt or hostile object carries.

- An empty packet is not an Opus packet (RFC 6716 §3.1: at least the TOC byte), yet
  ``opus_decode`` takes length 0 as "packet lost" and conceals as many samples as the room
  it is given: the fast path (room = the whole rest of the buffer) and the opuslib path
  (room = 120 ms) made different, invented audio out of it.
- A legacy container's ``original_pcm_byte_length`` (or a v1 chunk's sample count) is read
  from the object: the fast path sized its buffer from it before decoding a single packet,
  so 12 bytes claiming 4 GiB of PCM allocated 4 GiB.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from backend_hooks.contract import codec
from backend_hooks.contract.errors import FormatError

RATE = 16000


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    return codec.ChunkEncoder(RATE).encode(bytes(2 * RATE // 2))  # 0.5 s


@pytest.mark.parametrize("decode", [codec.decode_packets, codec.decode_packets_opuslib])
def test_an_empty_packet_is_a_format_error_on_both_paths(
    decode: Callable[..., bytes], packets: list[bytes]
) -> None:
    hostile = [*packets[:5], b"", *packets[5:]]
    with pytest.raises(FormatError, match=r"packet 5 .*empty"):
        decode(hostile, RATE, pre_skip=0, sample_count=RATE // 2)


def test_a_claimed_sample_count_far_beyond_the_packets_allocates_nothing_for_it(
    packets: list[bytes],
) -> None:
    claimed = 25_000_000  # 50 MB of PCM claimed by a header; the packets hold 0.5 s
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=f"{claimed} expected"):
            codec.decode_packets(packets, RATE, pre_skip=0, sample_count=claimed)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"decoding 0.5 s of packets peaked at {peak} bytes"
