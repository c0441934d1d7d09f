"""Pure: the 44-byte RIFF/WAVE header of PCM16LE mono, for ``reader.write_merged_wav``.

The header states the data length, which a streaming writer knows only at the end: on a
seekable file it writes ``header(rate, 0)`` first and patches the two sizes with
``size_fields`` when done. A non-seekable one cannot go back, so it writes
``header(rate, None)``: both sizes ``0xFFFFFFFF``, the convention of streaming writers
(ffmpeg, sox) for "until the end of the file", which ffmpeg, sox and Python's ``wave``
read to the end.
"""

from __future__ import annotations

import struct

HEADER_BYTES = 44
#: The most PCM a WAV can state (its sizes are u32): about 37 h at 16 kHz, 12 h at 48 kHz.
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)
UNKNOWN = 0xFFFFFFFF
_CHANNELS = 1
_BITS = 16


def header(sample_rate: int, data_bytes: int | None) -> bytes:
    """The header of ``data_bytes`` of PCM16LE mono at ``sample_rate`` (``None``: not known,
    both sizes ``0xFFFFFFFF``). ``ValueError`` for an impossible length or rate."""
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if data_bytes is not None and not 0 <= data_bytes <= MAX_DATA_BYTES:
        raise ValueError(f"a WAV holds 0 to {MAX_DATA_BYTES} bytes of PCM, not {data_bytes}")
    block = _CHANNELS * _BITS // 8
    riff, data = size_fields(data_bytes)
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, _CHANNELS, sample_rate, sample_rate * block, block, _BITS)
        + b"data"
        + struct.pack("<I", data)
    )


def size_fields(data_bytes: int | None) -> tuple[int, int]:
    """The RIFF chunk size (at byte 4) and the data chunk size (at byte 40)."""
    if data_bytes is None:
        return UNKNOWN, UNKNOWN
    return HEADER_BYTES - 8 + data_bytes, data_bytes


#: Where ``size_fields`` go in the header.
RIFF_SIZE_OFFSET = 4
DATA_SIZE_OFFSET = 40
