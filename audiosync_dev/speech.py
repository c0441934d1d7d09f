"""Speech-like test audio: voiced syllables (harmonics with a moving pitch) and pauses.

Deterministic for a given seed, so tests and the demo can compare what they pushed.
"""

from __future__ import annotations

import math
import random
import struct


def speech_like(seconds: float, sample_rate: int, seed: int = 0) -> bytes:
    """PCM16LE mono: syllables of 120-300 ms with 80-400 ms pauses, pitch 90-250 Hz."""
    rng = random.Random(seed)
    total = round(seconds * sample_rate)
    out = bytearray()
    while len(out) // 2 < total:
        length = int(rng.uniform(0.12, 0.30) * sample_rate)
        pitch = rng.uniform(90, 250)
        glide = rng.uniform(-0.3, 0.3)
        amplitude = rng.uniform(2000, 9000)
        samples = []
        for i in range(length):
            t = i / sample_rate
            envelope = math.sin(math.pi * i / length)
            f = pitch * (1 + glide * t)
            value = sum(
                math.sin(2 * math.pi * f * h * t) / h
                for h in (1, 2, 3, 4)
                if f * h < sample_rate / 2
            )
            samples.append(int(amplitude * envelope * value / 2))
        out += struct.pack(f"<{len(samples)}h", *samples)
        out += bytes(2 * int(rng.uniform(0.08, 0.40) * sample_rate))
    return bytes(out[: 2 * total])
