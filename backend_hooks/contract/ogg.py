"""Ogg pages: writing and reading logical bitstreams, chained one after another.

RFC 3533 (the Ogg encapsulation format). A page is::

    "OggS" | u8 version (0) | u8 header type | i64 granule position | u32 serial
    | u32 page sequence | u32 CRC | u8 segment count | segment table | body

all little-endian. The CRC is CRC-32 with polynomial 0x04C11DB7, initial value 0, no
reflection, computed over the whole page with the CRC field zeroed. Packets are laced into
255-byte segments; a lacing value below 255 ends a packet.

Only *chained* streams are read (one logical stream after another, each ending with an
end-of-stream page), which is what audiosync objects are; interleaved (multiplexed)
streams are refused with ``FormatError``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter

from backend_hooks.contract.errors import FormatError

CAPTURE = b"OggS"
_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, type, granule, serial, seq, crc, nseg
_CRC = struct.Struct("<I")
_CRC_OFFSET = 22  # of the CRC field in a page
FLAG_CONTINUED = 0x01
FLAG_BOS = 0x02
FLAG_EOS = 0x04
MAX_SEGMENTS = 255


# The Ogg CRC is CRC-32 (polynomial 0x04C11DB7) without bit reflection, initial value or
# final xor. zlib's CRC-32 is the same polynomial, reflected, with both inversions: feeding
# it bit-reversed bytes and undoing the inversions and the reflection of the result gives
# the Ogg CRC at C speed (mutagen's trick; ~100x faster than a Python loop over a table).
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def ogg_crc(data: bytes) -> int:
    """The Ogg page checksum of ``data``."""
    return _reverse32(zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF)


def _lacing(length: int) -> bytes:
    return b"\xff" * (length // 255) + bytes([length % 255])


def build_page(
    *, serial: int, sequence: int, granule: int, flags: int, packets: Sequence[bytes]
) -> bytes:
    """One page holding whole ``packets`` (none may continue onto another page)."""
    lengths = list(map(len, packets))
    short = not lengths or max(lengths) < 255  # one lacing value a packet: its length
    table = bytes(lengths) if short else b"".join(map(_lacing, lengths))
    if len(table) > MAX_SEGMENTS:
        raise ValueError(f"{len(table)} lacing values do not fit one page")
    page = bytearray(_HEADER.pack(CAPTURE, 0, flags, granule, serial, sequence, 0, len(table)))
    page += table
    page += b"".join(packets)
    _CRC.pack_into(page, _CRC_OFFSET, ogg_crc(bytes(page)))
    return bytes(page)


def build_stream(
    *,
    serial: int,
    header_packets: Sequence[bytes],
    audio_packets: Sequence[bytes],
    granules: Sequence[int],
    max_packets_per_page: int = 50,
) -> bytes:
    """A complete logical stream: each header packet on its own page, then the audio.

    ``granules[i]`` is the granule position after ``audio_packets[i]``; a page carries the
    granule of its last packet. The first page is flagged BOS, the last EOS.
    """
    if len(granules) != len(audio_packets):
        raise ValueError("one granule position per audio packet")
    pages: list[tuple[int, Sequence[bytes]]] = [(0, [p]) for p in header_packets]
    count = len(audio_packets)
    if count and max_packets_per_page >= 1 and max(map(len, audio_packets)) < 255:
        # Every packet is one lacing value: a page is every ``step`` packets, as below.
        step = min(max_packets_per_page, MAX_SEGMENTS)
        if not isinstance(audio_packets, list | tuple):  # a deque is a Sequence, unsliceable
            audio_packets = list(audio_packets)
        for start in range(0, count, step):
            end = min(start + step, count)
            pages.append((granules[end - 1], audio_packets[start:end]))
        return _pages(serial, pages)
    current: list[bytes] = []
    segments = 0
    previous_granule = 0
    for packet, granule in zip(audio_packets, granules, strict=True):
        need = len(packet) // 255 + 1
        if current and (segments + need > MAX_SEGMENTS or len(current) >= max_packets_per_page):
            pages.append((previous_granule, current))
            current, segments = [], 0
        current.append(packet)
        segments += need
        previous_granule = granule
    if current:
        pages.append((previous_granule, current))
    return _pages(serial, pages)


def _pages(serial: int, pages: Sequence[tuple[int, Sequence[bytes]]]) -> bytes:
    """The pages of one logical stream, numbered from 0, the first BOS, the last EOS."""
    out = []
    last = len(pages) - 1
    for sequence, (granule, packets) in enumerate(pages):
        flags = (FLAG_BOS if sequence == 0 else 0) | (FLAG_EOS if sequence == last else 0)
        out.append(
            build_page(
                serial=serial, sequence=sequence, granule=granule, flags=flags, packets=packets
            )
        )
    return b"".join(out)


@dataclass
class Page:
    flags: int
    granule: int
    serial: int
    sequence: int
    segments: bytes
    body: bytes
    offset: int


@dataclass
class LogicalStream:
    """The packets of one logical stream and the granule position of its last page."""

    serial: int
    packets: list[bytes] = field(default_factory=list)
    last_granule: int = -1
    ended: bool = False


@dataclass(frozen=True)
class PlainStream:
    """One logical stream in the plain layout (``plain_stream``): its first two packets
    whole, and of every later packet only its first byte."""

    serial: int
    last_granule: int
    head: bytes
    tags: bytes
    #: the first byte of each packet after the first two, in order (each packet is 1 to
    #: 254 bytes long)
    firsts: bytes


_ZERO_CRC_FIELD = b"\0\0\0\0"  # the CRC field as checksummed (bit-reversed zeros are zeros)


def plain_stream(data: bytes) -> PlainStream | None:
    """``data`` read at C speed when it is exactly one complete logical stream in the plain
    layout: every packet 1 to 254 bytes long (one lacing value, so none continues onto
    another segment or page), at least two packets, each page with at least one, flagged
    BOS on the first page and EOS on the last only, one serial, pages numbered from 0,
    every checksum right. Per page: one struct unpack and three ``zlib.crc32`` calls over
    the page in place (the CRC field counted as zeros), no object per packet.

    None for anything else, sound or not: ``read_chained_streams`` then reads it and says
    what is wrong, if anything. When not None, ``read_chained_streams(data)`` returns one
    stream of this serial and last granule whose packets are ``head``, ``tags`` and then
    one packet per byte of ``firsts``, starting with it."""
    size = len(data)
    view = memoryview(data.translate(_BIT_REVERSED))  # the zlib CRC trick, on every page
    unpack, crc32, header_size = _HEADER.unpack_from, zlib.crc32, _HEADER.size
    offset = sequence = first_serial = 0
    last_granule = -1
    headers: list[bytes] = []
    firsts: list[bytes] = []
    while offset < size:
        if size - offset < header_size:
            return None
        capture, version, flags, granule, serial, number, crc, count = unpack(data, offset)
        table_end = offset + header_size + count
        if capture != CAPTURE or version or number != sequence or not count or table_end > size:
            return None
        segments = data[offset + header_size : table_end]
        end = table_end + sum(segments)
        if end > size or 0 in segments or 255 in segments:
            return None
        if flags != (FLAG_BOS if not sequence else 0) | (FLAG_EOS if end == size else 0):
            return None
        if not sequence:
            first_serial = serial
        elif serial != first_serial:
            return None
        checked = crc32(view[offset : offset + 22], 0xFFFFFFFF)
        checked = crc32(view[offset + 26 : end], crc32(_ZERO_CRC_FIELD, checked))
        reflected = (checked ^ 0xFFFFFFFF).to_bytes(4, "little").translate(_BIT_REVERSED)
        if int.from_bytes(reflected, "big") != crc:  # (_reverse32, a third of its time)
            return None
        if granule != -1:
            last_granule = granule
        start = table_end
        while len(headers) < 2 and segments:  # the head and tags packets, whole
            headers.append(data[start : start + segments[0]])
            start += segments[0]
            segments = segments[1:]
        if len(segments) > 1:  # each later packet's first byte: its position is a running sum
            firsts.append(bytes(itemgetter(*accumulate(segments[:-1], initial=start))(data)))
        elif segments:  # (itemgetter of one position answers an int, not a tuple)
            firsts.append(data[start : start + 1])
        offset = end
        sequence += 1
    if len(headers) < 2:
        return None
    return PlainStream(first_serial, last_granule, headers[0], headers[1], b"".join(firsts))


def iter_pages(data: bytes) -> Iterator[Page]:
    """Every page of ``data`` in order, checksums verified."""
    offset = 0
    view = memoryview(data)
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            raise FormatError(f"truncated Ogg page header at byte {offset}")
        capture, version, flags, granule, serial, sequence, crc, nseg = _HEADER.unpack_from(
            data, offset
        )
        if capture != CAPTURE:
            raise FormatError(f"no Ogg capture pattern at byte {offset}")
        if version != 0:
            raise FormatError(f"unknown Ogg version {version} at byte {offset}")
        table_end = offset + _HEADER.size + nseg
        if table_end > len(data):
            raise FormatError(f"truncated Ogg segment table at byte {offset}")
        segments = bytes(view[offset + _HEADER.size : table_end])
        end = table_end + sum(segments)
        if end > len(data):
            raise FormatError(f"truncated Ogg page body at byte {offset}")
        page = bytearray(view[offset:end])
        page[22:26] = b"\0\0\0\0"
        if ogg_crc(bytes(page)) != crc:
            raise FormatError(f"Ogg page checksum mismatch at byte {offset}")
        yield Page(flags, granule, serial, sequence, segments, bytes(view[table_end:end]), offset)
        offset = end


def read_chained_streams(data: bytes) -> list[LogicalStream]:
    """The logical streams of a chained Ogg file, in order, each complete (BOS..EOS)."""
    streams: list[LogicalStream] = []
    current: LogicalStream | None = None
    partial = b""
    expected_sequence = 0
    for page in iter_pages(data):
        if page.flags & FLAG_BOS:
            if current is not None and not current.ended:
                raise FormatError(
                    f"Ogg stream {page.serial:#x} starts at byte {page.offset} before stream "
                    f"{current.serial:#x} ended (multiplexed streams are not supported)"
                )
            current = LogicalStream(serial=page.serial)
            streams.append(current)
            partial, expected_sequence = b"", 0
        if current is None or page.serial != current.serial or current.ended:
            raise FormatError(f"Ogg page at byte {page.offset} belongs to no open stream")
        if page.sequence != expected_sequence:
            raise FormatError(
                f"Ogg page sequence {page.sequence} where {expected_sequence} was expected "
                f"(byte {page.offset}): a page is missing"
            )
        expected_sequence += 1
        if bool(page.flags & FLAG_CONTINUED) != bool(partial):
            raise FormatError(f"Ogg continuation flag mismatch at byte {page.offset}")
        body, start, position = page.body, 0, 0
        if not partial and 255 not in page.segments:  # each packet one segment: C speed
            ends = list(accumulate(page.segments))
            current.packets += map(body.__getitem__, map(slice, [0, *ends[:-1]], ends))
        else:
            for lacing in page.segments:  # a packet ends at the first lacing below 255
                position += lacing
                if lacing < 255:
                    current.packets.append(partial + body[start:position])
                    partial, start = b"", position
            if start < position:  # the last packet goes on in the next page
                partial += body[start:position]
        if page.granule != -1:
            current.last_granule = page.granule
        if page.flags & FLAG_EOS:
            if partial:
                raise FormatError(f"Ogg stream {current.serial:#x} ends inside a packet")
            current.ended = True
    if current is not None and not current.ended:
        raise FormatError(f"Ogg stream {current.serial:#x} has no end-of-stream page (truncated)")
    return streams
