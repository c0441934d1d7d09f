"""The audio format both sides agree on: Opus sample rates and the frame length.

Pure constants, no codec: the worker fleet checks chunks against these without libopus
(``backend_hooks.codec`` encodes and decodes, and is the only module that loads it).
"""

from __future__ import annotations

SUPPORTED_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_RATE = 48000  # the rate Opus granule positions and pre-skip count in
FRAME_MS = 20


def frame_samples(sample_rate: int) -> int:
    return sample_rate * FRAME_MS // 1000
