"""The audio format both sides agree on: Opus sample rates and the frame length.

Pure constants, no codec: the worker fleet checks chunks against these without libopus
(``backend_hooks.contract.codec`` encodes and decodes, and is the only module that loads it).
"""

from __future__ import annotations

SUPPORTED_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_RATE = 48000  # the rate Opus granule positions and pre-skip count in
FRAME_MS = 20


def frame_samples(sample_rate: int) -> int:
    return sample_rate * FRAME_MS // 1000


#: The pusher's encoder defaults (``AUDIOSYNC_OPUS_BITRATES``, ``AUDIOSYNC_OPUS_COMPLEXITY``),
#: here so that settings can name them without loading libopus; a decoder takes any. 8 and
#: 16 kHz: the cheapest settings (pusher CPU + storage + operations) that reach PESQ-NB 3.5
#: and PESQ-WB 3.2 in bench/bench_codec.py (docs/BENCHMARKS.md, "Codec"). 12, 24 and
#: 48 kHz are not measured: the earlier bitrates and libopus's own default complexity (9).
#: Target bitrate per sample rate, bits/s (VBR).
DEFAULT_BITRATES: dict[int, int] = {
    8000: 12000,
    12000: 14000,
    16000: 16000,
    24000: 20000,
    48000: 24000,
}
#: libopus encoder complexity per sample rate, 0 (fastest) to 10.
DEFAULT_COMPLEXITIES: dict[int, int] = {
    8000: 4,
    12000: 9,
    16000: 6,
    24000: 9,
    48000: 9,
}
MIN_BITRATE = 6000  # Opus's range: 6 kbit/s ...
MAX_BITRATE = 510000  # ... to 510 kbit/s
MAX_COMPLEXITY = 10
