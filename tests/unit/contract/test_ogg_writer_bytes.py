"""The Ogg writer's bytes are those of its first, plain implementation (kept here as the
reference): on real speech chunks as the pusher builds them, and on any packets."""

from __future__ import annotations

import collections
import struct
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract import codec, container, ogg

SPEECH = Path(__file__).resolve().parents[2] / "data" / "speech_16k.wav"


# -- the reference: the writer as it was first written, one Python step per packet --------
def _lacing(length: int) -> bytes:
    return b"\xff" * (length // 255) + bytes([length % 255])


def reference_page(
    *, serial: int, sequence: int, granule: int, flags: int, packets: Sequence[bytes]
) -> bytes:
    table = b"".join(_lacing(len(p)) for p in packets)
    if len(table) > ogg.MAX_SEGMENTS:
        raise ValueError(f"{len(table)} lacing values do not fit one page")
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(table))
    page = bytearray(header + table + b"".join(packets))
    struct.pack_into("<I", page, 22, ogg.ogg_crc(bytes(page)))
    return bytes(page)


def reference_stream(
    *,
    serial: int,
    header_packets: Sequence[bytes],
    audio_packets: Sequence[bytes],
    granules: Sequence[int],
    max_packets_per_page: int = 50,
) -> bytes:
    pages: list[tuple[int, list[bytes]]] = [(0, [p]) for p in header_packets]
    current: list[bytes] = []
    segments = 0
    previous_granule = 0
    for packet, granule in zip(audio_packets, granules, strict=True):
        need = len(packet) // 255 + 1
        if current and (segments + need > ogg.MAX_SEGMENTS or len(current) >= max_packets_per_page):
            pages.append((previous_granule, current))
            current, segments = [], 0
        current.append(packet)
        segments += need
        previous_granule = granule
    if current:
        pages.append((previous_granule, current))
    last = len(pages) - 1
    return b"".join(
        reference_page(
            serial=serial,
            sequence=sequence,
            granule=granule,
            flags=(ogg.FLAG_BOS if sequence == 0 else 0)
            | (ogg.FLAG_EOS if sequence == last else 0),
            packets=packets,
        )
        for sequence, (granule, packets) in enumerate(pages)
    )


# -- the tests -----------------------------------------------------------------------------
def speech(rate: int) -> bytes:
    with wave.open(str(SPEECH)) as w:
        pcm: bytes = w.readframes(w.getnframes())
    if rate == 8000:  # every other sample: speech-like packets at 8 kHz, for bytes only
        pcm = b"".join(pcm[i : i + 2] for i in range(0, len(pcm) - 1, 4))
    return pcm


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("bitrate", [None, 510_000])  # the default, and packets > 254 bytes
def test_chunks_of_real_speech_are_the_reference_bytes(
    rate: int, bitrate: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 5 s chunk (and a short tail) of the speech sample as the pusher builds it:
    ``build_chunk`` gives the same bytes with the writer as with the reference."""
    encoder = codec.ChunkEncoder(rate, bitrate=bitrate)
    pcm = speech(rate)
    step = 2 * 5 * rate
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)] + [pcm[: 2 * 321]]
    for seq, piece in enumerate(pieces):
        packets = encoder.encode(piece)
        info = container.ChunkInfo(
            "f" * 32, seq, 1_700_000_000_000_000 + seq, rate, len(piece) // 2
        )
        built = container.build_chunk(info, packets, encoder.pre_skip)
        with monkeypatch.context() as patched:
            patched.setattr(ogg, "build_stream", reference_stream)
            assert built == container.build_chunk(info, packets, encoder.pre_skip)
        assert [c.packets for c in container.parse_chunks(built)] == [packets]


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(
        st.one_of(st.integers(0, 254), st.sampled_from([255, 256, 509, 510, 1275])),
        max_size=300,
    ),
    headers=st.integers(0, 2),
    per_page=st.sampled_from([1, 2, 50, 255, 300]),
    serial=st.integers(0, 2**32 - 1),
)
def test_any_packets_give_the_reference_bytes(
    lengths: list[int], headers: int, per_page: int, serial: int
) -> None:
    packets = [bytes((n + k) % 256 for k in range(n)) for n in lengths]
    granules = [960 * (i + 1) for i in range(len(packets))]
    arguments = {
        "serial": serial,
        "header_packets": [b"OpusHead" * (h + 1) for h in range(headers)],
        "audio_packets": packets,
        "granules": granules,
        "max_packets_per_page": per_page,
    }
    assert ogg.build_stream(**arguments) == reference_stream(**arguments)  # type: ignore[arg-type]


def test_a_page_of_too_many_lacing_values_is_refused_as_before() -> None:
    packets = [b"x" * 300] * 128  # 256 lacing values
    with pytest.raises(ValueError, match="256 lacing values"):
        ogg.build_page(serial=1, sequence=0, granule=0, flags=0, packets=packets)
    with pytest.raises(ValueError, match="256 lacing values"):
        reference_page(serial=1, sequence=0, granule=0, flags=0, packets=packets)


@pytest.mark.parametrize("per_page", [50, 254, 255, 256, 1000])
@pytest.mark.parametrize("count", [0, 1, 49, 50, 51, 254, 255, 256, 600])
def test_pages_full_of_short_packets_give_the_reference_bytes(per_page: int, count: int) -> None:
    """Short packets only (one lacing value each): pages break at ``per_page`` packets or
    at the 255 lacing values a page holds, whichever comes first, as in the reference."""
    packets = [bytes([k % 251]) * (k % 200 + 1) for k in range(count)]
    arguments = {
        "serial": 7,
        "header_packets": [b"OpusHead", b"OpusTags"],
        "audio_packets": packets,
        "granules": [960 * (i + 1) for i in range(count)],
        "max_packets_per_page": per_page,
    }
    assert ogg.build_stream(**arguments) == reference_stream(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [list, tuple, collections.deque])
@pytest.mark.parametrize("per_page", [-1, 0, 1, 50])
def test_any_sequence_of_short_packets_gives_the_reference_bytes(
    kind: Callable[[list[bytes]], Sequence[bytes]], per_page: int
) -> None:
    """``audio_packets`` is any sequence (a deque is one, though it cannot be sliced), and a
    page size below 1 puts each packet on a page of its own, as in the reference."""
    packets = [bytes([k % 251]) * (k % 200 + 1) for k in range(120)]
    arguments = {
        "serial": 9,
        "header_packets": [b"OpusHead", b"OpusTags"],
        "audio_packets": kind(packets),
        "granules": [960 * (i + 1) for i in range(len(packets))],
        "max_packets_per_page": per_page,
    }
    assert ogg.build_stream(**arguments) == reference_stream(**arguments)  # type: ignore[arg-type]
