"""backend_hooks.contract.ogg: page writing, CRC, chained-stream reading and its refusals."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract import ogg
from backend_hooks.contract.errors import FormatError
from tests.unit.helpers import av_encode_ogg_opus, sine

# --- helpers ------------------------------------------------------------------------------


def raw_page(
    *, serial: int, sequence: int, granule: int, flags: int, segments: bytes, body: bytes
) -> bytes:
    """A page with an explicit segment table (may end inside a packet), valid CRC."""
    assert sum(segments) == len(body)
    header = struct.pack(
        "<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0, len(segments)
    )
    page = bytearray(header + segments + body)
    struct.pack_into("<I", page, 22, ogg.ogg_crc(bytes(page)))
    return bytes(page)


def page_bounds(data: bytes) -> list[tuple[int, int]]:
    pages = list(ogg.iter_pages(data))
    ends = [p.offset for p in pages[1:]] + [len(data)]
    return [(p.offset, end) for p, end in zip(pages, ends, strict=True)]


def small_stream(serial: int = 7, packets: int = 6) -> bytes:
    audio = [bytes([i]) * (10 + i) for i in range(packets)]
    return ogg.build_stream(
        serial=serial,
        header_packets=[b"head", b"tags"],
        audio_packets=audio,
        granules=[960 * (i + 1) for i in range(packets)],
        max_packets_per_page=2,
    )


# --- CRC ------------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    # CRC-32 with polynomial 0x04C11DB7, init 0, no reflection, no final xor ("CRC-32/OGG"
    # is CRC-32/POSIX without its final inversion: 0x765E7680 ^ 0xFFFFFFFF).
    assert ogg.ogg_crc(b"123456789") == 0x89A1897F


def test_crc_of_empty_is_zero() -> None:
    assert ogg.ogg_crc(b"") == 0


def _reference_crc(data: bytes) -> int:
    """RFC 3533's CRC computed bit by bit, the slow and obvious way."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


@given(st.binary(max_size=600))
def test_crc_equals_the_bitwise_definition(data: bytes) -> None:
    assert ogg.ogg_crc(data) == _reference_crc(data)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "max_per_page", "min_pages"),
    [
        pytest.param([3, 1, 4], 50, 1, id="tiny-packets-one-page"),
        pytest.param([0, 255, 510, 254, 256], 50, 1, id="lacing-edges-0-255-510"),
        pytest.param([300] * 200, 50, 4, id="packets-over-255-bytes"),
        pytest.param([254] * 300, 1000, 2, id="300-lacing-values-split-by-segments"),
        pytest.param([1000] * 70, 1000, 2, id="280-lacing-values-large-packets"),
        pytest.param([255 * 254], 50, 1, id="one-packet-255-lacing-values"),
        pytest.param([5] * 7, 2, 4, id="max-packets-per-page"),
        pytest.param([], 50, 0, id="no-audio-packets"),
    ],
)
def test_build_stream_round_trip(sizes: list[int], max_per_page: int, min_pages: int) -> None:
    audio = [bytes([(i * 7 + j) % 256 for j in range(n)]) for i, n in enumerate(sizes)]
    granules = [960 * (i + 1) for i in range(len(audio))]
    data = ogg.build_stream(
        serial=0xDEADBEEF,
        header_packets=[b"H" * 19, b"T" * 300],
        audio_packets=audio,
        granules=granules,
        max_packets_per_page=max_per_page,
    )
    pages = list(ogg.iter_pages(data))
    # Header packets on their own pages, then the audio pages.
    assert len(pages) - 2 >= min_pages
    assert all(len(p.segments) <= 255 for p in pages)
    assert [p.sequence for p in pages] == list(range(len(pages)))
    assert pages[0].flags == ogg.FLAG_BOS
    assert pages[-1].flags & ogg.FLAG_EOS
    assert all(p.flags & ogg.FLAG_CONTINUED == 0 for p in pages)
    [stream] = ogg.read_chained_streams(data)
    assert stream.serial == 0xDEADBEEF
    assert stream.packets == [b"H" * 19, b"T" * 300, *audio]
    assert stream.ended
    assert stream.last_granule == (granules[-1] if granules else 0)


def test_page_granule_is_that_of_its_last_packet() -> None:
    audio = [b"x" * 300] * 10  # 2 lacing values each, 3 packets per page below
    granules = [100 * (i + 1) for i in range(10)]
    data = ogg.build_stream(
        serial=1,
        header_packets=[b"h"],
        audio_packets=audio,
        granules=granules,
        max_packets_per_page=3,
    )
    pages = list(ogg.iter_pages(data))[1:]
    assert [p.granule for p in pages] == [300, 600, 900, 1000]


def test_packet_too_long_for_a_page_is_refused() -> None:
    # 65025 bytes need 256 lacing values; this writer never continues packets across pages.
    with pytest.raises(ValueError, match="lacing values"):
        ogg.build_stream(
            serial=1, header_packets=[b"h"], audio_packets=[b"\0" * 65025], granules=[1]
        )


def test_granule_count_must_match_packets() -> None:
    with pytest.raises(ValueError, match="granule"):
        ogg.build_stream(serial=1, header_packets=[], audio_packets=[b"a", b"b"], granules=[1])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=1300), max_size=120),
    max_per_page=st.integers(min_value=1, max_value=60),
    serial=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_build_stream_round_trip_property(sizes: list[int], max_per_page: int, serial: int) -> None:
    audio = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    granules = [960 * (i + 1) for i in range(len(audio))]
    data = ogg.build_stream(
        serial=serial,
        header_packets=[b"OpusHead", b"OpusTags"],
        audio_packets=audio,
        granules=granules,
        max_packets_per_page=max_per_page,
    )
    [stream] = ogg.read_chained_streams(data)
    assert stream.packets == [b"OpusHead", b"OpusTags", *audio]
    assert stream.serial == serial


def test_chained_streams_are_read_in_order() -> None:
    parts = [
        ogg.build_stream(
            serial=serial,
            header_packets=[f"head{serial}".encode()],
            audio_packets=[bytes([serial]) * 400] * serial,
            granules=[10 * (i + 1) for i in range(serial)],
        )
        for serial in (3, 1, 2)
    ]
    streams = ogg.read_chained_streams(b"".join(parts))
    assert [s.serial for s in streams] == [3, 1, 2]
    assert [len(s.packets) for s in streams] == [4, 2, 3]
    assert [s.last_granule for s in streams] == [30, 10, 20]
    assert streams[1].packets == [b"head1", b"\x01" * 400]


def test_chained_streams_may_reuse_a_serial() -> None:
    one = small_stream(serial=5)
    streams = ogg.read_chained_streams(one + one)
    assert len(streams) == 2
    assert streams[0].packets == streams[1].packets


def test_empty_input_has_no_streams() -> None:
    assert ogg.read_chained_streams(b"") == []


def test_packet_continued_across_pages_is_reassembled() -> None:
    packet = bytes(range(256)) * 3  # 768 bytes: 255, 255, 255, 3
    pages = [
        raw_page(
            serial=9, sequence=0, granule=0, flags=ogg.FLAG_BOS, segments=b"\x04", body=b"head"
        ),
        # The page ends inside the packet (last lacing value 255): no packet ends here,
        # so its granule is -1.
        raw_page(
            serial=9, sequence=1, granule=-1, flags=0, segments=b"\xff\xff", body=packet[:510]
        ),
        raw_page(
            serial=9,
            sequence=2,
            granule=960,
            flags=ogg.FLAG_CONTINUED | ogg.FLAG_EOS,
            segments=b"\xff\x03",
            body=packet[510:],
        ),
    ]
    [stream] = ogg.read_chained_streams(b"".join(pages))
    assert stream.packets == [b"head", packet]
    assert stream.last_granule == 960


def test_granule_minus_one_does_not_replace_the_last_granule() -> None:
    pages = [
        raw_page(serial=9, sequence=0, granule=0, flags=ogg.FLAG_BOS, segments=b"\x01", body=b"h"),
        raw_page(serial=9, sequence=1, granule=480, flags=0, segments=b"\x01", body=b"a"),
        raw_page(serial=9, sequence=2, granule=-1, flags=ogg.FLAG_EOS, segments=b"", body=b""),
    ]
    [stream] = ogg.read_chained_streams(b"".join(pages))
    assert stream.last_granule == 480


# --- pages written by an independent muxer (FFmpeg via PyAV) ------------------------------


def test_pages_written_by_ffmpeg_pass_crc_and_parse() -> None:
    data = av_encode_ogg_opus(sine(48000, 48000))
    pages = list(ogg.iter_pages(data))  # every CRC verified
    assert len(pages) >= 3
    [stream] = ogg.read_chained_streams(data)
    assert stream.packets[0][:8] == b"OpusHead"
    assert stream.packets[1][:8] == b"OpusTags"
    assert len(stream.packets) >= 50 + 2  # 1 s of 20 ms packets
    pre_skip = struct.unpack_from("<H", stream.packets[0], 10)[0]
    assert stream.last_granule == pre_skip + 48000


def test_ffmpeg_pages_with_packets_continued_across_pages() -> None:
    noise = np.random.default_rng(1).standard_normal(3 * 48000) * 8000
    data = av_encode_ogg_opus(
        np.clip(noise, -32768, 32767).astype(np.int16),
        bit_rate=256000,
        page_duration_us=10_000_000,
    )
    pages = list(ogg.iter_pages(data))
    assert any(p.flags & ogg.FLAG_CONTINUED for p in pages), "expected a continued packet"
    assert any(len(p.segments) == 255 for p in pages)
    [stream] = ogg.read_chained_streams(data)
    pre_skip = struct.unpack_from("<H", stream.packets[0], 10)[0]
    assert stream.last_granule == pre_skip + 3 * 48000
    assert (len(stream.packets) - 2) * 960 >= stream.last_granule  # 20 ms packets
    assert max(len(p) for p in stream.packets[2:]) > 255


def test_ffmpeg_files_chain() -> None:
    one = av_encode_ogg_opus(sine(9600, 48000))
    two = av_encode_ogg_opus(sine(4800, 48000, freq=880))
    streams = ogg.read_chained_streams(one + two + one)
    assert len(streams) == 3
    assert all(s.packets[0][:8] == b"OpusHead" for s in streams)


def test_crc_of_ffmpeg_pages_is_recomputed_identically() -> None:
    data = av_encode_ogg_opus(sine(4800, 48000))
    for start, end in page_bounds(data):
        page = bytearray(data[start:end])
        stored = struct.unpack_from("<I", page, 22)[0]
        page[22:26] = bytes(4)
        assert ogg.ogg_crc(bytes(page)) == stored


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda start, end: start, id="capture-pattern"),
        pytest.param(lambda start, end: start + 5, id="header-type"),
        pytest.param(lambda start, end: start + 6, id="granule"),
        pytest.param(lambda start, end: start + 14, id="serial"),
        pytest.param(lambda start, end: start + 22, id="crc-field"),
        pytest.param(lambda start, end: start + 27, id="segment-table"),
        pytest.param(lambda start, end: end - 1, id="last-body-byte"),
    ],
)
@pytest.mark.parametrize("page_index", [0, 2, -1], ids=["first-page", "middle-page", "last-page"])
def test_corrupted_byte_is_refused(where: Callable[[int, int], int], page_index: int) -> None:
    data = bytearray(small_stream())
    start, end = page_bounds(bytes(data))[page_index]
    data[where(start, end)] ^= 0x01
    with pytest.raises(FormatError):
        ogg.read_chained_streams(bytes(data))


def test_corrupted_byte_in_ffmpeg_file_is_refused() -> None:
    data = bytearray(av_encode_ogg_opus(sine(4800, 48000)))
    data[len(data) // 2] ^= 0x80
    with pytest.raises(FormatError, match="checksum"):
        list(ogg.iter_pages(bytes(data)))


def test_every_truncation_is_refused() -> None:
    data = small_stream(packets=4)
    for cut in range(1, len(data)):
        with pytest.raises(FormatError):
            ogg.read_chained_streams(data[:cut])


@pytest.mark.parametrize(
    ("dropped", "message"),
    [
        pytest.param(0, "no open stream", id="first-page"),
        pytest.param(2, "page is missing", id="middle-page"),
        pytest.param(-1, "no end-of-stream", id="last-page"),
    ],
)
def test_missing_page_is_refused(dropped: int, message: str) -> None:
    data = small_stream()
    bounds = page_bounds(data)
    start, end = bounds[dropped]
    with pytest.raises(FormatError, match=message):
        ogg.read_chained_streams(data[:start] + data[end:])


def test_missing_page_in_second_chained_stream_is_refused() -> None:
    second = small_stream(serial=8)
    start, end = page_bounds(second)[3]
    with pytest.raises(FormatError, match="page is missing"):
        ogg.read_chained_streams(small_stream() + second[:start] + second[end:])


def test_interleaved_streams_are_refused() -> None:
    a, b = small_stream(serial=1), small_stream(serial=2)
    a_pages, b_pages = page_bounds(a), page_bounds(b)
    # a's first two pages, then b's BOS page, then the rest of a and b.
    mixed = a[: a_pages[1][1]] + b[: b_pages[0][1]] + a[a_pages[2][0] :] + b[b_pages[1][0] :]
    with pytest.raises(FormatError, match="multiplexed"):
        ogg.read_chained_streams(mixed)


def test_page_of_another_serial_inside_a_stream_is_refused() -> None:
    a, b = small_stream(serial=1), small_stream(serial=2)
    a_pages, b_pages = page_bounds(a), page_bounds(b)
    mixed = a[: a_pages[1][1]] + b[b_pages[1][0] : b_pages[1][1]] + a[a_pages[2][0] :]
    with pytest.raises(FormatError, match="no open stream"):
        ogg.read_chained_streams(mixed)


def test_continuation_flag_without_a_partial_packet_is_refused() -> None:
    pages = [
        raw_page(serial=9, sequence=0, granule=0, flags=ogg.FLAG_BOS, segments=b"\x01", body=b"h"),
        raw_page(
            serial=9,
            sequence=1,
            granule=0,
            flags=ogg.FLAG_CONTINUED | ogg.FLAG_EOS,
            segments=b"\x01",
            body=b"a",
        ),
    ]
    with pytest.raises(FormatError, match="continuation"):
        ogg.read_chained_streams(b"".join(pages))


def test_partial_packet_without_continuation_flag_is_refused() -> None:
    pages = [
        raw_page(
            serial=9, sequence=0, granule=-1, flags=ogg.FLAG_BOS, segments=b"\xff", body=bytes(255)
        ),
        raw_page(serial=9, sequence=1, granule=0, flags=ogg.FLAG_EOS, segments=b"\x01", body=b"a"),
    ]
    with pytest.raises(FormatError, match="continuation"):
        ogg.read_chained_streams(b"".join(pages))


def test_stream_ending_inside_a_packet_is_refused() -> None:
    page = raw_page(
        serial=9,
        sequence=0,
        granule=-1,
        flags=ogg.FLAG_BOS | ogg.FLAG_EOS,
        segments=b"\xff",
        body=bytes(255),
    )
    with pytest.raises(FormatError, match="inside a packet"):
        ogg.read_chained_streams(page)


def test_unknown_ogg_version_is_refused() -> None:
    data = bytearray(small_stream())
    end = page_bounds(bytes(data))[0][1]
    data[4] = 1
    data[22:26] = bytes(4)
    struct.pack_into("<I", data, 22, ogg.ogg_crc(bytes(data[:end])))  # a valid CRC
    with pytest.raises(FormatError, match="version"):
        ogg.read_chained_streams(bytes(data))


def test_trailing_garbage_is_refused() -> None:
    with pytest.raises(FormatError, match="capture pattern"):
        ogg.read_chained_streams(small_stream() + b"x" * 40)
