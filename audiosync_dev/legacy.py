"""Writers of the legacy layouts (LEGACY_FORMATS.md), for tests and fixtures only.

audiosync never writes these to a bucket; the read side must keep reading them.
"""

from __future__ import annotations

import struct

import opuslib

LEGACY_RATE = 16000
_FRAME = 320  # 20 ms at 16 kHz


def legacy_opus_container(pcm: bytes, *, declared_length: int | None = None) -> bytes:
    """The old single-chunk container: 16 kHz, VOIP, fresh encoder, last frame zero-padded."""
    encoder = opuslib.Encoder(LEGACY_RATE, 1, opuslib.APPLICATION_VOIP)  # library bitrate
    step = 2 * _FRAME
    packets = []
    for offset in range(0, len(pcm), step):
        frame = pcm[offset : offset + step]
        frame += bytes(step - len(frame))
        packets.append(bytes(encoder.encode(frame, _FRAME)))
    length = len(pcm) if declared_length is None else declared_length
    out = [struct.pack("<II", len(packets), length)]
    for packet in packets:
        out += [struct.pack("<H", len(packet)), packet]
    return b"".join(out)
