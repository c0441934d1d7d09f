"""Speech-like test audio: voiced syllables (harmonics with a gliding pitch) and pauses.

Deterministic for a given seed. Syllables come from a small bank built once per rate, so
long recordings for many sessions are cheap to make.
"""

from __future__ import annotations

import math
import random
import struct
from functools import lru_cache

_BANK_SIZE = 40


@lru_cache(maxsize=8)
def _syllables(sample_rate: int) -> tuple[bytes, ...]:
    rng = random.Random(sample_rate)
    bank = []
    for _ in range(_BANK_SIZE):
        length = int(rng.uniform(0.12, 0.30) * sample_rate)
        pitch, glide = rng.uniform(90, 250), rng.uniform(-0.3, 0.3)
        amplitude = rng.uniform(2000, 9000)
        samples = []
        for i in range(length):
            t = i / sample_rate
            f = pitch * (1 + glide * t)
            value = sum(
                math.sin(2 * math.pi * f * h * t) / h
                for h in (1, 2, 3, 4)
                if f * h < sample_rate / 2
            )
            samples.append(int(amplitude * math.sin(math.pi * i / length) * value / 2))
        bank.append(struct.pack(f"<{length}h", *samples))
    return tuple(bank)


def speech_like(seconds: float, sample_rate: int, seed: int = 0) -> bytes:
    """PCM16LE mono: syllables of 120-300 ms and pauses of 80-400 ms."""
    rng = random.Random(seed)
    bank = _syllables(sample_rate)
    total = 2 * round(seconds * sample_rate)
    out = bytearray()
    while len(out) < total:
        out += rng.choice(bank)
        out += bytes(2 * int(rng.uniform(0.08, 0.40) * sample_rate))
    return bytes(out[:total])
