"""The fleet's C-speed reading of a chunk (``ogg.plain_stream``, ``container.plain_chunk``)
says what the full reading (``read_chained_streams``, ``parse_chunks``, ``held_samples``)
says, or nothing.

The full reading is the oracle: whatever bytes it is given, the fast one either answers
None (the caller then reads in full) or exactly the oracle's answer. It never accepts what
the oracle refuses. And it does answer for what the pusher writes, or it would save
nothing.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract import container, ogg
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.errors import AudioSyncError, FormatError
from tests.unit.helpers import sine_pcm

SESSION = "5" * 32


def _full_stream(data: bytes) -> tuple[int, int, list[bytes]] | None:
    try:
        streams = ogg.read_chained_streams(data)
    except FormatError:
        return None
    if len(streams) != 1:
        return None
    return streams[0].serial, streams[0].last_granule, streams[0].packets


def _full_chunk(data: bytes) -> tuple[container.ChunkInfo, int] | None:
    """The oracle: what the fleet's full reading says of a chunk (None: refused)."""
    try:
        chunks = container.parse_chunks(data)
        if len(chunks) != 1:
            return None
        return chunks[0].info, chunks[0].held_samples()
    except AudioSyncError:
        return None


def _assert_agrees(data: bytes) -> None:
    plain = ogg.plain_stream(data)
    if plain is not None:
        full = _full_stream(data)
        assert full is not None, "plain_stream read what read_chained_streams refuses"
        serial, granule, packets = full
        assert (serial, granule) == (plain.serial, plain.last_granule)
        assert packets[:2] == [plain.head, plain.tags]
        assert bytes(p[0] for p in packets[2:]) == plain.firsts
        assert all(1 <= len(p) <= 254 for p in packets)
    fast = container.plain_chunk(data)
    if fast is not None:
        assert fast == _full_chunk(data)


def _fix_crcs(data: bytes) -> bytes:
    """Each whole page's CRC set right (as a writer that meant it would), walking the pages
    by their headers as far as they lead."""
    out = bytearray(data)
    offset = 0
    while offset + 27 <= len(out):
        table_end = offset + 27 + out[offset + 26]
        if table_end > len(out):
            break
        end = table_end + sum(out[offset + 27 : table_end])
        if end > len(out):
            break
        out[offset + 22 : offset + 26] = b"\0\0\0\0"
        struct.pack_into("<I", out, offset + 22, ogg.ogg_crc(bytes(out[offset:end])))
        offset = end
    return bytes(out)


def _chunk(rate: int, samples: int, seq: int = 3) -> bytes:
    encoder = ChunkEncoder(rate)
    packets = encoder.encode(sine_pcm(samples, rate))
    info = container.ChunkInfo(SESSION, seq, 1_800_000_000_000_000, rate, samples)
    return container.build_chunk(info, packets, encoder.pre_skip)


@pytest.mark.parametrize("rate", SUPPORTED_RATES)
@pytest.mark.parametrize("seconds", [0.02, 1, 5])
def test_what_the_pusher_writes_is_read_fast_and_as_in_full(rate: int, seconds: float) -> None:
    data = _chunk(rate, int(rate * seconds))
    fast = container.plain_chunk(data)
    assert fast is not None
    assert fast == _full_chunk(data)


def test_two_chunks_chained_are_left_to_the_full_reading() -> None:
    data = _chunk(16000, 16000, seq=1) + _chunk(16000, 16000, seq=2)
    assert ogg.plain_stream(data) is None
    assert container.plain_chunk(data) is None


def test_a_packet_of_255_bytes_or_more_is_left_to_the_full_reading() -> None:
    long_packet = bytes([0b0000_0000]) + bytes(300)  # code 0, one 10 ms SILK frame
    info = container.ChunkInfo(SESSION, 0, 0, 48000, 480)
    data = container.build_chunk(info, [long_packet], 0)
    assert ogg.plain_stream(data) is None
    assert _full_chunk(data) == (info, 480)  # sound: the full reading accepts it


def test_a_chunk_whose_packets_are_not_code_0_is_left_to_the_full_reading() -> None:
    info = container.ChunkInfo(SESSION, 0, 0, 48000, 1920)
    two_frames = bytes([(1 << 3) | 1]) + bytes(20)  # code 1: two 20 ms SILK frames
    data = container.build_chunk(info, [two_frames], 0)
    assert container.plain_chunk(data) is None
    assert _full_chunk(data) == (info, 1920)


def _packets() -> st.SearchStrategy[list[bytes]]:
    toc = st.integers(0, 255)
    common = st.tuples(st.integers(0, 31), st.integers(0, 60)).map(
        lambda t: bytes([t[0] << 3]) + b"\x07" * t[1]
    )
    odd = st.tuples(toc, st.integers(0, 300)).map(lambda t: bytes([t[0]]) + b"\x03" * t[1])
    return st.lists(st.one_of(common, common, common, odd, st.just(b"")), min_size=0, max_size=60)


@st.composite
def _chunks(draw: st.DrawFn) -> bytes:
    rate = draw(st.sampled_from(SUPPORTED_RATES))
    packets = draw(_packets())
    samples = draw(st.integers(0, 3 * rate))
    pre_skip = draw(st.integers(0, 400))
    info = container.ChunkInfo(draw(st.sampled_from([SESSION, "x"])), 1, 5, rate, samples)
    if not packets:
        packets = [bytes([0x08])]
    return ogg.build_stream(
        serial=container.stream_serial(SESSION, 1),
        header_packets=[container.opus_head(rate, pre_skip), _tags(draw, info)],
        audio_packets=packets,
        granules=list(ogg_granules(draw, len(packets), info, pre_skip)),
        max_packets_per_page=draw(st.integers(1, 60)),
    )


def _tags(draw: st.DrawFn, info: container.ChunkInfo) -> bytes:
    comments = [
        ("AUDIOSYNC_FORMAT", draw(st.sampled_from(["1", "1", "2"]))),
        ("AUDIOSYNC_SESSION", info.session_id),
        ("AUDIOSYNC_SEQ", draw(st.sampled_from([str(info.seq), " 1", "x"]))),
        ("AUDIOSYNC_START_US", str(info.start_us)),
        ("AUDIOSYNC_SAMPLES", draw(st.sampled_from([str(info.sample_count), "-4"]))),
    ]
    keep = draw(st.integers(3, 5))
    return container.opus_tags(container.VENDOR, comments[:keep] if keep < 5 else comments)


def ogg_granules(
    draw: st.DrawFn, count: int, info: container.ChunkInfo, pre_skip: int
) -> list[int]:
    scale = 48000 // info.sample_rate
    granules = [960 * (i + 1) for i in range(count)]
    granules[-1] = pre_skip * scale + info.sample_count * scale + draw(st.sampled_from([0, 0, 1]))
    return granules


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(_chunks()))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "append", "flags", "serial", "seq"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "append":
            data += draw(st.sampled_from([b"OggS", b"\0", bytes(data[:at])]))
        elif kind in ("flags", "serial", "seq"):
            pages = [m for m in range(len(data) - 27) if data[m : m + 4] == b"OggS"]
            if pages:
                page = draw(st.sampled_from(pages))
                if kind == "flags":
                    data[page + 5] = draw(st.integers(0, 7))
                elif kind == "serial":
                    data[page + 14] ^= 1
                else:
                    data[page + 18] ^= draw(st.sampled_from([1, 2]))
    if draw(st.booleans()):
        return _fix_crcs(bytes(data))
    return bytes(data)


@settings(max_examples=400)
@given(_chunks())
def test_a_well_formed_chunk_is_read_as_in_full(data: bytes) -> None:
    _assert_agrees(data)


@settings(max_examples=800)
@given(_mutated())
def test_changed_bytes_are_never_accepted_unlike_the_full_reading(data: bytes) -> None:
    _assert_agrees(data)


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_any_bytes_are_never_accepted_unlike_the_full_reading(data: bytes) -> None:
    _assert_agrees(data)


def _page_offsets(data: bytes) -> list[int]:
    return [page.offset for page in ogg.iter_pages(data)]


@pytest.mark.parametrize("field", ["flags", "serial", "sequence", "granule"])
def test_every_page_header_change_with_its_checksum_right_agrees(field: str) -> None:
    """Each page's flags (every value), serial, sequence number and granule position
    changed, the page's CRC set right: the fast reading agrees with the full one."""
    data = _chunk(16000, 16000)
    where = {"flags": (5, 1), "serial": (14, 4), "sequence": (18, 4), "granule": (6, 8)}
    at, width = where[field]
    values = range(8) if field == "flags" else (1, 2, 1 << 20)
    for offset in _page_offsets(data):
        for value in values:
            changed = bytearray(data)
            if field == "flags":
                changed[offset + at] = value
            else:
                old = int.from_bytes(changed[offset + at : offset + at + width], "little")
                new = (old + value) % (1 << (8 * width))
                changed[offset + at : offset + at + width] = new.to_bytes(width, "little")
            _assert_agrees(_fix_crcs(bytes(changed)))
