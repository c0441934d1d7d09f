"""Opus encoding and decoding of one chunk (libopus through opuslib).

Every chunk is an independent Opus stream: the session's encoder is reset at the start of
each chunk, so a chunk decodes on its own, with exactly the samples that were pushed. The
encoder's look-ahead (6.5 ms at every rate) is the stream's pre-skip: the chunk's PCM is
padded with zeros to cover it and the last partial 20 ms frame, and the decoder drops the
pre-skip and keeps exactly ``sample_count`` samples.
"""

from __future__ import annotations

import opuslib

from backend_hooks.audio_format import FRAME_MS, SUPPORTED_RATES, frame_samples
from backend_hooks.errors import FormatError, InvalidInputError

__all__ = [
    "FRAME_MS",
    "SUPPORTED_RATES",
    "ChunkEncoder",
    "decode_packets",
    "frame_samples",
    "validate_rate",
]
#: Target bitrate per sample rate (bits/s), VBR. Provisional: ROADMAP item 1 picks these
#: from a measured quality/CPU/bytes curve.
BITRATES = {8000: 12000, 12000: 14000, 16000: 16000, 24000: 20000, 48000: 24000}
_MAX_FRAME_MS = 120  # the longest Opus packet


def validate_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        raise InvalidInputError(f"sample_rate must be an int, got {sample_rate!r}")
    if sample_rate not in SUPPORTED_RATES:
        raise InvalidInputError(
            f"unsupported sample rate {sample_rate} Hz; Opus takes one of {SUPPORTED_RATES}"
        )
    return sample_rate


class ChunkEncoder:
    """One Opus encoder for a session; ``encode`` turns one chunk's PCM into packets."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = validate_rate(sample_rate)
        self._encoder = opuslib.Encoder(sample_rate, 1, opuslib.APPLICATION_VOIP)
        self._encoder.bitrate = BITRATES[sample_rate]
        self.frame = frame_samples(sample_rate)
        #: Pre-skip in samples at the session rate (the encoder's look-ahead).
        self.pre_skip: int = int(self._encoder.lookahead)

    def encode(self, pcm: bytes) -> list[bytes]:
        """Packets of 20 ms covering ``pre_skip`` + all of ``pcm`` (PCM16LE mono)."""
        if len(pcm) % 2:
            raise InvalidInputError("chunk PCM must be whole 16-bit samples")
        self._encoder.reset_state()
        samples = len(pcm) // 2
        frames = -(-(samples + self.pre_skip) // self.frame)
        padded = pcm + bytes(2 * (frames * self.frame - samples))
        step = 2 * self.frame
        return [
            bytes(self._encoder.encode(padded[i * step : (i + 1) * step], self.frame))
            for i in range(frames)
        ]


def decode_packets(
    packets: list[bytes], sample_rate: int, *, pre_skip: int, sample_count: int
) -> bytes:
    """PCM16LE of exactly ``sample_count`` samples after dropping ``pre_skip`` samples."""
    validate_rate(sample_rate)
    decoder = opuslib.Decoder(sample_rate, 1)
    max_frame = sample_rate * _MAX_FRAME_MS // 1000
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
