"""Writers of the legacy layouts (LEGACY_FORMATS.md), for tests and fixtures only.

audiosync never writes these to a bucket; the read side must keep reading them.
"""

from __future__ import annotations

import opuslib

from backend_hooks.contract.container import (
    LEGACY_FRAME_SAMPLES,
    LEGACY_HEADER,
    LEGACY_PACKET_LENGTH,
    LEGACY_RATE,
)


def legacy_opus_container(pcm: bytes, *, declared_length: int | None = None) -> bytes:
    """The old single-chunk container: 16 kHz, VOIP, fresh encoder, last frame zero-padded."""
    encoder = opuslib.Encoder(LEGACY_RATE, 1, opuslib.APPLICATION_VOIP)  # library bitrate
    step = 2 * LEGACY_FRAME_SAMPLES
    packets = []
    for offset in range(0, len(pcm), step):
        frame = pcm[offset : offset + step]
        frame += bytes(step - len(frame))
        packets.append(bytes(encoder.encode(frame, LEGACY_FRAME_SAMPLES)))
    length = len(pcm) if declared_length is None else declared_length
    out = [LEGACY_HEADER.pack(len(packets), length)]
    for packet in packets:
        out += [LEGACY_PACKET_LENGTH.pack(len(packet)), packet]
    return b"".join(out)
