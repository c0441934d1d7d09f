"""Opus encoding and decoding of one chunk (libopus through opuslib; encoding and decoding
call libopus's ``opus_encode`` and ``opus_decode`` directly through ctypes, on the library
opuslib loaded, when it has them: the same bytes, without opuslib's objects per frame).

Every chunk is an independent Opus stream: the session's encoder is reset at the start of
each chunk, so a chunk decodes on its own, with exactly the samples that were pushed. The
encoder's look-ahead (6.5 ms at every rate) is the stream's pre-skip: the chunk's PCM is
padded with zeros to cover it and the last partial 20 ms frame, and the decoder drops the
pre-skip and keeps exactly ``sample_count`` samples.
"""

from __future__ import annotations

import ctypes
from typing import Any

import opuslib
import opuslib.api

from backend_hooks.contract.audio_format import (
    DEFAULT_BITRATES,
    DEFAULT_COMPLEXITIES,
    FRAME_MS,
    MAX_BITRATE,
    MAX_COMPLEXITY,
    MIN_BITRATE,
    SUPPORTED_RATES,
    frame_samples,
)
from backend_hooks.contract.errors import FormatError, InvalidInputError
from backend_hooks.contract.settings import Settings

__all__ = [
    "BITRATES",
    "COMPLEXITIES",
    "FRAME_MS",
    "SUPPORTED_RATES",
    "ChunkEncoder",
    "decode_packets",
    "decode_packets_opuslib",
    "frame_samples",
    "validate_bitrate",
    "validate_complexity",
    "validate_rate",
]
#: Default target bitrate (bits/s, VBR) and encoder complexity per sample rate, chosen by
#: cost at a quality floor from bench/bench_codec.py at 8 and 16 kHz (docs/BENCHMARKS.md,
#: "Codec"); the pusher's come from ``AUDIOSYNC_OPUS_BITRATES`` and
#: ``AUDIOSYNC_OPUS_COMPLEXITY`` (backend_hooks/contract/settings.py), whose defaults these are.
BITRATES = DEFAULT_BITRATES
COMPLEXITIES = DEFAULT_COMPLEXITIES
_MAX_FRAME_MS = 120  # the longest Opus packet


def validate_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        raise InvalidInputError(f"sample_rate must be an int, got {sample_rate!r}")
    if sample_rate not in SUPPORTED_RATES:
        raise InvalidInputError(
            f"unsupported sample rate {sample_rate} Hz; Opus takes one of {SUPPORTED_RATES}"
        )
    return sample_rate


def validate_bitrate(bitrate: object) -> int:
    if isinstance(bitrate, bool) or not isinstance(bitrate, int):
        raise InvalidInputError(f"bitrate must be an int (bits/s), got {bitrate!r}")
    if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
        raise InvalidInputError(
            f"bitrate {bitrate} bits/s is outside Opus's {MIN_BITRATE}-{MAX_BITRATE}"
        )
    return bitrate


def validate_complexity(complexity: object) -> int:
    if isinstance(complexity, bool) or not isinstance(complexity, int):
        raise InvalidInputError(f"complexity must be an int, got {complexity!r}")
    if not 0 <= complexity <= MAX_COMPLEXITY:
        raise InvalidInputError(f"complexity must be 0 to {MAX_COMPLEXITY}, got {complexity}")
    return complexity


class ChunkEncoder:
    """One Opus encoder for a session; ``encode`` turns one chunk's PCM into packets.

    ``bitrate`` (bits/s, VBR target) defaults to ``BITRATES[sample_rate]`` and
    ``complexity`` (0-10) to ``COMPLEXITIES[sample_rate]``; the pusher passes its settings
    (``AUDIOSYNC_OPUS_BITRATES``, ``AUDIOSYNC_OPUS_COMPLEXITY``).
    """

    def __init__(
        self, sample_rate: int, *, bitrate: int | None = None, complexity: int | None = None
    ) -> None:
        self.sample_rate = validate_rate(sample_rate)
        self.bitrate = validate_bitrate(BITRATES[sample_rate] if bitrate is None else bitrate)
        self.complexity = validate_complexity(
            COMPLEXITIES[sample_rate] if complexity is None else complexity
        )
        self._encoder = opuslib.Encoder(sample_rate, 1, opuslib.APPLICATION_VOIP)
        self._encoder.bitrate = self.bitrate
        self._encoder.complexity = self.complexity
        self.frame = frame_samples(sample_rate)
        #: Pre-skip in samples at the session rate (the encoder's look-ahead).
        self.pre_skip: int = int(self._encoder.lookahead)

    @classmethod
    def from_settings(cls, sample_rate: int, settings: Settings) -> ChunkEncoder:
        """The pusher's encoder: ``AUDIOSYNC_OPUS_BITRATES`` and ``AUDIOSYNC_OPUS_COMPLEXITY``
        for ``sample_rate``."""
        rate = validate_rate(sample_rate)
        return cls(
            rate, bitrate=settings.opus_bitrates[rate], complexity=settings.opus_complexities[rate]
        )

    def encode(self, pcm: bytes) -> list[bytes]:
        """Packets of 20 ms covering ``pre_skip`` + all of ``pcm`` (PCM16LE mono).

        libopus is called directly (``_FastEncoder``) when it can be: the same calls with
        the same arguments as opuslib's ``Encoder.encode``, so the same bytes, without its
        per-frame Python objects."""
        if len(pcm) % 2:
            raise InvalidInputError("chunk PCM must be whole 16-bit samples")
        self._encoder.reset_state()
        samples = len(pcm) // 2
        frames = -(-(samples + self.pre_skip) // self.frame)
        padded = pcm + bytes(2 * (frames * self.frame - samples))
        if _FAST_ENCODE is not None:
            return _FAST_ENCODE.encode(self._encoder.encoder_state, padded, self.frame, frames)
        return self.encode_opuslib_padded(padded, frames)

    def encode_opuslib_padded(self, padded: bytes, frames: int) -> list[bytes]:
        """``frames`` packets of ``padded`` through opuslib, one Python call per frame (the
        fallback, and the reference the direct path is tested against)."""
        step = 2 * self.frame
        return [
            bytes(self._encoder.encode(padded[i * step : (i + 1) * step], self.frame))
            for i in range(frames)
        ]


class _FastEncoder:
    """libopus's ``opus_encode`` called directly through ctypes on the library opuslib
    loaded, for every frame of a chunk: one output buffer for the chunk, the PCM passed by
    address, no ctypes array or ``array`` made per frame (opuslib makes three objects a
    frame). The output room per frame is what opuslib gives it (the frame's PCM bytes),
    so the packets are byte for byte opuslib's. ctypes releases the GIL during each call.
    Function pointers of its own (``lib[name]``), so opuslib's argtypes are untouched."""

    def __init__(self, lib: Any) -> None:
        self._encode = lib["opus_encode"]
        self._encode.argtypes = (
            ctypes.c_void_p,  # encoder
            ctypes.c_void_p,  # PCM in (const opus_int16 *)
            ctypes.c_int,  # frame size, samples
            ctypes.c_void_p,  # packet out
            ctypes.c_int32,  # room for it, bytes
        )
        self._encode.restype = ctypes.c_int32

    def encode(self, state: Any, padded: bytes, frame: int, frames: int) -> list[bytes]:
        encoder = ctypes.cast(state, ctypes.c_void_p).value
        step = 2 * frame
        out = ctypes.create_string_buffer(step)
        address = ctypes.addressof(out)
        base = ctypes.cast(ctypes.c_char_p(padded), ctypes.c_void_p).value or 0
        encode, string_at = self._encode, ctypes.string_at
        packets = []
        for offset in range(0, frames * step, step):
            got = encode(encoder, base + offset, frame, address, step)
            if got < 0:
                raise opuslib.OpusError(got)  # the code: its str() is libopus's message
            packets.append(string_at(address, got))
        return packets


def _load_fast_encoder(lib: Any) -> _FastEncoder | None:
    try:
        return _FastEncoder(lib)
    except (AttributeError, KeyError):
        return None


class _FastDecoder:
    """libopus's ``opus_decode`` called directly through ctypes, on the library opuslib
    loaded: every packet of a chunk decoded into one preallocated buffer, no Python
    object made per packet (opuslib allocates a ctypes array and a ``bytes`` for each).
    ctypes releases the GIL during each call, so reads on several threads decode on
    several cores. Function pointers of its own (``lib[name]``), so opuslib's argtypes
    are untouched."""

    def __init__(self, lib: Any) -> None:
        self._create = lib["opus_decoder_create"]
        self._create.argtypes = (ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int))
        self._create.restype = ctypes.c_void_p
        self._decode = lib["opus_decode"]
        self._decode.argtypes = (
            ctypes.c_void_p,  # decoder
            ctypes.c_void_p,  # packet
            ctypes.c_int32,  # its length
            ctypes.c_void_p,  # PCM out (opus_int16 *)
            ctypes.c_int,  # room, in samples
            ctypes.c_int,  # decode_fec
        )
        self._decode.restype = ctypes.c_int
        self._destroy = lib["opus_decoder_destroy"]
        self._destroy.argtypes = (ctypes.c_void_p,)
        self._destroy.restype = None
        self._strerror = lib["opus_strerror"]
        self._strerror.argtypes = (ctypes.c_int,)
        self._strerror.restype = ctypes.c_char_p

    def error(self, code: int) -> str:
        text: bytes | None = self._strerror(code)
        return (text or b"error %d" % code).decode("ascii", "replace")

    def decode(self, packets: list[bytes], sample_rate: int, pre_skip: int, wanted: int) -> bytes:
        """``wanted`` samples after ``pre_skip``; every packet is decoded (a corrupt one
        is a ``FormatError`` wherever it is)."""
        status = ctypes.c_int(0)
        decoder = self._create(sample_rate, 1, ctypes.byref(status))
        if not decoder or status.value != 0:
            raise FormatError(f"Opus decoder at {sample_rate} Hz: {self.error(status.value)}")
        try:
            max_frame = sample_rate * _MAX_FRAME_MS // 1000
            # Sized from what the packets can hold (at most 120 ms each), never from the
            # count alone: that comes from the object, and a corrupt header would size it.
            capacity = min(pre_skip + wanted, len(packets) * max_frame) + max_frame
            out = ctypes.create_string_buffer(2 * capacity)
            address = ctypes.addressof(out)
            blob = b"".join(packets)
            base = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p).value or 0
            decode, position, offset = self._decode, 0, 0
            for index, packet in enumerate(packets):
                length = len(packet)
                if not length:
                    raise FormatError(_empty_packet(index))
                if capacity - position < max_frame:  # packets beyond the end: rare
                    capacity *= 2
                    grown = ctypes.create_string_buffer(2 * capacity)
                    ctypes.memmove(grown, out, 2 * position)
                    out, address = grown, ctypes.addressof(grown)
                got = decode(
                    decoder, base + offset, length, address + 2 * position, capacity - position, 0
                )
                if got < 0:
                    raise FormatError(f"Opus packet does not decode: {self.error(got)}")
                position += got
                offset += length
        finally:
            self._destroy(decoder)
        if position < pre_skip + wanted:
            raise FormatError(f"Opus packets hold {position - pre_skip} samples, {wanted} expected")
        return ctypes.string_at(address + 2 * pre_skip, 2 * wanted)


def _check_counts(pre_skip: int, sample_count: int) -> None:
    """Both come from the object (its header or tags): a negative one is corrupt, a
    ``FormatError`` like any other, not a ``SystemError`` from a buffer of negative size."""
    if pre_skip < 0 or sample_count < 0:
        raise FormatError(
            f"a negative pre-skip ({pre_skip}) or sample count ({sample_count}): corrupt"
        )


def _empty_packet(index: int) -> str:
    """Why an empty packet is refused: not an Opus packet (RFC 6716 §3.1: at least its TOC
    byte), but ``opus_decode`` would take it as a lost packet and invent concealment audio
    as long as the room it is given (so the two decode paths would differ)."""
    return f"Opus packet {index} is empty (corrupt: an Opus packet has at least its TOC byte)"


def _load_fast(lib: Any) -> _FastDecoder | None:
    """The direct path on ``lib``, or None when it lacks a symbol (opuslib decodes)."""
    try:
        return _FastDecoder(lib)
    except (AttributeError, KeyError):
        return None


_FAST = _load_fast(opuslib.api.libopus)
_FAST_ENCODE = _load_fast_encoder(opuslib.api.libopus)


def decode_packets(
    packets: list[bytes], sample_rate: int, *, pre_skip: int, sample_count: int
) -> bytes:
    """PCM16LE of exactly ``sample_count`` samples after dropping ``pre_skip`` samples
    (libopus called directly when it can be, else through opuslib: the same samples)."""
    validate_rate(sample_rate)
    _check_counts(pre_skip, sample_count)
    if _FAST is not None:
        return _FAST.decode(packets, sample_rate, pre_skip, sample_count)
    return decode_packets_opuslib(
        packets, sample_rate, pre_skip=pre_skip, sample_count=sample_count
    )


def decode_packets_opuslib(
    packets: list[bytes], sample_rate: int, *, pre_skip: int, sample_count: int
) -> bytes:
    """``decode_packets`` through opuslib, one Python call per packet (the fallback)."""
    validate_rate(sample_rate)
    _check_counts(pre_skip, sample_count)
    decoder = opuslib.Decoder(sample_rate, 1)
    max_frame = sample_rate * _MAX_FRAME_MS // 1000
    for index, packet in enumerate(packets):
        if not packet:
            raise FormatError(_empty_packet(index))
    try:
        pcm = b"".join(bytes(decoder.decode(p, max_frame)) for p in packets)
    except opuslib.OpusError as exc:
        raise FormatError(f"Opus packet does not decode: {exc}") from exc
    start = 2 * pre_skip
    end = start + 2 * sample_count
    if len(pcm) < end:
        raise FormatError(
            f"Opus packets hold {len(pcm) // 2 - pre_skip} samples, {sample_count} expected"
        )
    return pcm[start:end]
