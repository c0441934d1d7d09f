"""Chunk containers: the bytes of one 5 s chunk, new (Ogg Opus) and legacy.

**v1 chunk** (written by audiosync): one complete Ogg Opus logical stream (RFC 7845 over
RFC 3533) whose header says everything a reader needs:

- ``OpusHead``: version 1, 1 channel, pre-skip (48 kHz units), input sample rate = the
  session's rate, gain 0, mapping family 0.
- ``OpusTags``: vendor ``audiosync 1`` and the comments ``AUDIOSYNC_FORMAT=1``,
  ``AUDIOSYNC_SESSION``, ``AUDIOSYNC_SEQ``, ``AUDIOSYNC_START_US`` (Unix microseconds of the
  first sample) and ``AUDIOSYNC_SAMPLES`` (exact sample count at the session rate).
- Audio pages of 20 ms packets, at most 50 packets (1 s) a page; the last page's granule
  position trims the stream to exactly ``AUDIOSYNC_SAMPLES`` (RFC 7845 section 4.4).

Chunks concatenate into a *chained* Ogg Opus file, which is what a ``.opus`` object is, and
which ffmpeg and opusdec play. Sealed (``enhanced``) chunks concatenate into a ``.opus.enc``
object whose opened plaintexts, concatenated, are the same chained file.

**Legacy chunk** (the old single-chunk ``.opus`` container, LEGACY_FORMATS.md): all
little-endian ``u32 packet_count | u32 original_pcm_byte_length | (u16 length | packet)*``,
16 kHz, 20 ms frames, no pre-skip. A reader tells the two apart by the first four bytes:
``OggS`` would be a packet count of 1.4 billion, which no legacy chunk has.

The format version is carried in ``AUDIOSYNC_FORMAT``; a reader refuses versions it does
not know with ``UnsupportedFormatError``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from operator import itemgetter

from backend_hooks.contract import ogg
from backend_hooks.contract.audio_format import OPUS_RATE, SUPPORTED_RATES, frame_samples
from backend_hooks.contract.errors import FormatError, UnsupportedFormatError

FORMAT_VERSION = 1
VENDOR = b"audiosync 1"
_OPUS_HEAD = struct.Struct("<8sBBHIhB")
#: The legacy single-chunk container (LEGACY_FORMATS.md), defined here only: a header
#: ``u32 packet_count | u32 original_pcm_byte_length``, then per packet ``u16 length | bytes``;
#: 16 kHz mono, one 20 ms frame a packet. The reader, durations.py and the test writer
#: (audiosync_dev/legacy.py) use these.
LEGACY_HEADER = struct.Struct("<II")
LEGACY_PACKET_LENGTH = struct.Struct("<H")
LEGACY_RATE = 16000
#: Samples of one legacy packet: 20 ms at 16 kHz.
LEGACY_FRAME_SAMPLES = 320


@dataclass(frozen=True)
class ChunkInfo:
    """What a chunk says about itself."""

    session_id: str
    seq: int
    start_us: int
    sample_rate: int
    sample_count: int

    @property
    def end_us(self) -> int:
        return self.start_us + self.sample_count * 1_000_000 // self.sample_rate


@dataclass(frozen=True)
class Segment:
    """Decoded audio placed on the timeline; ``key`` identifies a chunk for de-duplication."""

    start_us: int
    sample_rate: int
    pcm: bytes
    key: tuple[str, int] | None

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2


def stream_serial(session_id: str, seq: int) -> int:
    """Ogg serial of a chunk: distinct for neighbouring chunks of a session."""
    return (zlib.crc32(session_id.encode()) + seq) & 0xFFFFFFFF


def opus_head(sample_rate: int, pre_skip: int) -> bytes:
    pre_skip_48k = pre_skip * (OPUS_RATE // sample_rate)
    return _OPUS_HEAD.pack(b"OpusHead", 1, 1, pre_skip_48k, sample_rate, 0, 0)


def opus_tags(vendor: bytes, comments: list[tuple[str, str]]) -> bytes:
    out = [b"OpusTags", struct.pack("<I", len(vendor)), vendor, struct.pack("<I", len(comments))]
    for key, value in comments:
        entry = f"{key}={value}".encode()
        out += [struct.pack("<I", len(entry)), entry]
    return b"".join(out)


def build_chunk(info: ChunkInfo, packets: list[bytes], pre_skip: int) -> bytes:
    """The v1 container (one Ogg Opus stream) of an encoded chunk."""
    scale = OPUS_RATE // info.sample_rate
    frame_48k = frame_samples(info.sample_rate) * scale
    pre_skip_48k = pre_skip * scale
    granules = [(i + 1) * frame_48k for i in range(len(packets))]  # decoded, with pre-skip
    granules[-1] = pre_skip_48k + info.sample_count * scale  # end trim
    comments = [
        ("AUDIOSYNC_FORMAT", str(FORMAT_VERSION)),
        ("AUDIOSYNC_SESSION", info.session_id),
        ("AUDIOSYNC_SEQ", str(info.seq)),
        ("AUDIOSYNC_START_US", str(info.start_us)),
        ("AUDIOSYNC_SAMPLES", str(info.sample_count)),
    ]
    return ogg.build_stream(
        serial=stream_serial(info.session_id, info.seq),
        header_packets=[opus_head(info.sample_rate, pre_skip), opus_tags(VENDOR, comments)],
        audio_packets=packets,
        granules=granules,
    )


@dataclass(frozen=True)
class ParsedChunk:
    info: ChunkInfo
    pre_skip: int  # samples at the chunk's rate
    packets: list[bytes]

    def held_samples(self) -> int:
        """Samples (at the chunk's rate) its packets decode to after the pre-skip, counted
        from their TOC bytes without decoding; at least ``info.sample_count`` in a sound
        chunk (the end may be trimmed, never padded). Raises ``FormatError``."""
        total_48k = _single_frame_samples(self.packets)
        if total_48k is None:
            total_48k = sum(opus_packet_samples(p) for p in self.packets)
        return total_48k // (OPUS_RATE // self.info.sample_rate) - self.pre_skip

    def decode(self) -> bytes:
        from backend_hooks.contract import codec  # libopus: only a reader decodes

        return codec.decode_packets(
            self.packets,
            self.info.sample_rate,
            pre_skip=self.pre_skip,
            sample_count=self.info.sample_count,
        )


_FRAME_48K_SILK = (480, 960, 1920, 2880)  # 10, 20, 40, 60 ms
_FRAME_48K_HYBRID = (480, 960)
_FRAME_48K_CELT = (120, 240, 480, 960)  # 2.5, 5, 10, 20 ms


_MAX_FRAME_BYTES = 1275
_FRAME_48K = tuple(  # samples of one frame, by TOC config (0-31)
    _FRAME_48K_SILK[c % 4]
    if c < 12
    else _FRAME_48K_HYBRID[c % 2]
    if c < 16
    else _FRAME_48K_CELT[c % 4]
    for c in range(32)
)


#: TOC byte -> 1 if its code (the low two bits) is not 0 (one frame).
_NOT_CODE_0 = bytes(1 if toc & 3 else 0 for toc in range(256))


def _single_frame_samples(packets: list[bytes]) -> int | None:
    """The 48 kHz samples of ``packets`` when every one is a code-0 (one frame) packet that
    ``opus_packet_samples`` accepts, counted at C speed (one pass per check, no Python
    loop per packet); None otherwise (count them one by one)."""
    if not packets or not all(packets) or max(map(len, packets)) > _MAX_FRAME_BYTES + 1:
        return None
    tocs = bytes(map(itemgetter(0), packets))
    if 1 in tocs.translate(_NOT_CODE_0):
        return None
    return sum(tocs.count(toc) * _FRAME_48K[toc >> 3] for toc in set(tocs))


def _frame_length(packet: bytes, pos: int) -> tuple[int, int]:
    """A frame length coded at ``pos`` (RFC 6716 §3.2.1): (length, bytes it took)."""
    if pos >= len(packet):
        raise FormatError("Opus packet ends inside a frame length")
    first = packet[pos]
    if first < 252:
        return first, 1
    if pos + 1 >= len(packet):
        raise FormatError("Opus packet ends inside a two-byte frame length")
    return 4 * packet[pos + 1] + first, 2


def opus_packet_samples(packet: bytes) -> int:
    """Samples at 48 kHz that one Opus packet decodes to, from its TOC byte, after
    checking its framing (RFC 6716 §3.1-3.2, the rules a decoder refuses a packet by);
    raises ``FormatError``. No decoding: the fleet needs no libopus for this."""
    if not packet:
        raise FormatError("empty Opus packet")
    if not packet[0] & 3:  # code 0, one frame: the common case, checked the same way
        if len(packet) - 1 > _MAX_FRAME_BYTES:
            raise FormatError(f"Opus frame of {len(packet) - 1} bytes")
        return _FRAME_48K[packet[0] >> 3]
    config, code = packet[0] >> 3, packet[0] & 3
    if config < 12:
        frame = _FRAME_48K_SILK[config % 4]
    elif config < 16:
        frame = _FRAME_48K_HYBRID[config % 2]
    else:
        frame = _FRAME_48K_CELT[config % 4]
    body = len(packet) - 1
    if code == 0:
        sizes = [body]
    elif code == 1:
        if body % 2:
            raise FormatError("Opus packet of code 1 with an odd payload length")
        sizes = [body // 2, body // 2]
    elif code == 2:
        first, taken = _frame_length(packet, 1)
        if first > body - taken:
            raise FormatError("Opus packet of code 2 whose first frame overruns it")
        sizes = [first, body - taken - first]
    else:
        sizes = _code3_frame_sizes(packet)
    if frame * len(sizes) > 5760:  # at most 120 ms in one packet
        raise FormatError(f"Opus packet of {len(sizes)} frames of {frame} samples")
    if max(sizes) > _MAX_FRAME_BYTES:
        raise FormatError(f"Opus frame of {max(sizes)} bytes")
    return frame * len(sizes)


def _code3_frame_sizes(packet: bytes) -> list[int]:
    if len(packet) < 2:
        raise FormatError("Opus packet of code 3 without its frame count")
    vbr, padded, count = packet[1] & 0x80, packet[1] & 0x40, packet[1] & 0x3F
    if count == 0:
        raise FormatError("Opus packet of code 3 with no frames")
    pos, padding = 2, 0
    if padded:
        while True:
            if pos >= len(packet):
                raise FormatError("Opus packet ends inside its padding length")
            value = packet[pos]
            pos += 1
            padding += 254 if value == 255 else value
            if value != 255:
                break
    if vbr:
        sizes = []
        for _ in range(count - 1):
            size, taken = _frame_length(packet, pos)
            pos += taken
            sizes.append(size)
        last = len(packet) - pos - padding - sum(sizes)
        if last < 0:
            raise FormatError("Opus packet of code 3 whose frames overrun it")
        return [*sizes, last]
    rest = len(packet) - pos - padding
    if rest < 0 or rest % count:
        raise FormatError("Opus packet of code 3 (CBR) whose payload does not split evenly")
    return [rest // count] * count


def _parse_tags(packet: bytes) -> dict[str, str]:
    try:
        if packet[:8] != b"OpusTags":
            raise FormatError("second packet of an Ogg Opus stream is not OpusTags")
        (vendor_len,) = struct.unpack_from("<I", packet, 8)
        pos = 12 + vendor_len
        (count,) = struct.unpack_from("<I", packet, pos)
        pos += 4
        tags: dict[str, str] = {}
        for _ in range(count):
            (length,) = struct.unpack_from("<I", packet, pos)
            entry = packet[pos + 4 : pos + 4 + length].decode("utf-8")
            pos += 4 + length
            key, _, value = entry.partition("=")
            tags[key.upper()] = value
        return tags
    except (struct.error, UnicodeDecodeError) as exc:
        raise FormatError(f"malformed OpusTags: {exc}") from exc


def _parse_stream(stream: ogg.LogicalStream) -> ParsedChunk:
    if len(stream.packets) < 3:
        raise FormatError("Ogg Opus stream without audio packets")
    info, pre_skip = _chunk_header(stream.packets[0], stream.packets[1], stream.last_granule)
    return ParsedChunk(info=info, pre_skip=pre_skip, packets=stream.packets[2:])


def _chunk_header(head: bytes, tags_packet: bytes, last_granule: int) -> tuple[ChunkInfo, int]:
    """What a chunk's OpusHead and OpusTags packets say, checked against the granule
    position of its last page: its info and its pre-skip at its rate."""
    if len(head) < _OPUS_HEAD.size or head[:8] != b"OpusHead":
        raise FormatError("Ogg stream is not Opus (no OpusHead)")
    _, version, channels, pre_skip_48k, rate, _, family = _OPUS_HEAD.unpack_from(head)
    if version >> 4 != 0 or channels != 1 or family != 0:
        raise UnsupportedFormatError(
            f"Opus stream with version {version}, {channels} channels, mapping {family}: "
            "audiosync chunks are mono, mapping family 0"
        )
    if rate not in SUPPORTED_RATES:
        raise UnsupportedFormatError(f"Opus stream at {rate} Hz; expected one of the Opus rates")
    tags = _parse_tags(tags_packet)
    version_tag = tags.get("AUDIOSYNC_FORMAT")
    if version_tag is None:
        raise UnsupportedFormatError("an Ogg Opus stream that audiosync did not write")
    if version_tag != str(FORMAT_VERSION):
        raise UnsupportedFormatError(f"audiosync chunk format {version_tag!r} is not known here")
    scale = OPUS_RATE // rate
    try:
        info = ChunkInfo(
            session_id=tags["AUDIOSYNC_SESSION"],
            seq=int(tags["AUDIOSYNC_SEQ"]),
            start_us=int(tags["AUDIOSYNC_START_US"]),
            sample_rate=rate,
            sample_count=int(tags["AUDIOSYNC_SAMPLES"]),
        )
    except (KeyError, ValueError) as exc:
        raise FormatError(f"audiosync chunk tags incomplete or malformed: {exc}") from exc
    if info.sample_count < 0:
        raise FormatError(
            f"chunk {info.session_id}/{info.seq}: a negative sample count "
            f"({info.sample_count}) in its tags"
        )
    if last_granule - pre_skip_48k != info.sample_count * scale:
        raise FormatError(
            f"chunk {info.session_id}/{info.seq}: granule position says "
            f"{(last_granule - pre_skip_48k) // scale} samples, tags say {info.sample_count}"
        )
    return info, pre_skip_48k // scale


def parse_chunks(data: bytes) -> list[ParsedChunk]:
    """The v1 chunks of a chained Ogg Opus payload, in order."""
    return [_parse_stream(s) for s in ogg.read_chained_streams(data)]


def plain_chunk(data: bytes) -> tuple[ChunkInfo, int] | None:
    """``(info, held samples)`` of ``data`` when it is exactly one v1 chunk in the plain
    layout (``ogg.plain_stream``: what ``build_chunk`` writes) whose every audio packet is
    a code-0 (one frame) packet: what ``parse_chunks(data)[0].info`` and its
    ``held_samples()`` say, read at C speed (the fleet's check of each chunk).

    None for anything else, sound or not: ``parse_chunks`` and ``held_samples`` then read
    it and say what is wrong, if anything. Never raises."""
    stream = ogg.plain_stream(data)
    if stream is None:
        return None
    firsts = stream.firsts  # the TOC bytes; each packet is 1 to 254 bytes (<= 1 frame's)
    if not firsts or 1 in firsts.translate(_NOT_CODE_0):
        return None
    try:
        info, pre_skip = _chunk_header(stream.head, stream.tags, stream.last_granule)
    except FormatError:
        return None
    total_48k = sum(firsts.count(toc) * _FRAME_48K[toc >> 3] for toc in set(firsts))
    return info, total_48k // (OPUS_RATE // info.sample_rate) - pre_skip


def parse_legacy_chunk(data: bytes) -> tuple[list[bytes], int]:
    """Packets and original PCM byte length of a legacy single-chunk container."""
    if len(data) < LEGACY_HEADER.size:
        raise FormatError("legacy Opus container shorter than its 8-byte header")
    count, pcm_length = LEGACY_HEADER.unpack_from(data)
    pos, packets = LEGACY_HEADER.size, []
    prefix = LEGACY_PACKET_LENGTH.size
    for i in range(count):
        if pos + prefix > len(data):
            raise FormatError(f"legacy Opus container truncated at packet {i} of {count}")
        (length,) = LEGACY_PACKET_LENGTH.unpack_from(data, pos)
        if pos + prefix + length > len(data):
            raise FormatError(f"legacy Opus container truncated inside packet {i} of {count}")
        packets.append(data[pos + prefix : pos + prefix + length])
        pos += prefix + length
    if pos != len(data):
        raise FormatError(f"{len(data) - pos} unexpected bytes after the legacy Opus packets")
    return packets, pcm_length


def decode_payload(payload: bytes, *, name_start_us: int) -> list[Segment]:
    """Audio of an Opus object's plaintext: v1 chunks (``OggS``) or one legacy chunk.

    ``name_start_us`` (from the object name) places a legacy chunk, which has no timestamp.
    """
    if payload[:4] == ogg.CAPTURE:
        segments = []
        for chunk in parse_chunks(payload):
            segments.append(
                Segment(
                    start_us=chunk.info.start_us,
                    sample_rate=chunk.info.sample_rate,
                    pcm=chunk.decode(),
                    key=(chunk.info.session_id, chunk.info.seq),
                )
            )
        return segments
    packets, pcm_length = parse_legacy_chunk(payload)
    # An odd original length (a legacy bug) loses its trailing half sample, never more.
    from backend_hooks.contract import codec  # libopus: only a reader decodes

    pcm = codec.decode_packets(packets, LEGACY_RATE, pre_skip=0, sample_count=pcm_length // 2)
    return [Segment(start_us=name_start_us, sample_rate=LEGACY_RATE, pcm=pcm, key=None)]
