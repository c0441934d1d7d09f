"""A second session's chunks placed on a timeline whose
origin is another's.

The pusher stamps a chunk ``anchor + round(index * 1e6 / rate)`` microseconds (chunker.py),
so within a session consecutive chunks are back to back to within a microsecond, and the
merger places each at ``round((start - origin) * rate / 1e6)``. Relative to its own first
chunk that is exact; relative to an origin of another session (or a legacy object), the
anchor's offset has a fraction of a sample, and when it is near one half the rounding
flips from chunk to chunk: a sample of real audio trimmed as an "overlap", or a zero
sample inserted as a "gap", at a chunk boundary (1-4 % of anchors with uneven chunk
lengths, every rate). A chunk that starts within half a sample of where the audio before
it ends is continuous audio: placed right after it.
"""

from __future__ import annotations

import random

import pytest

from backend_hooks.contract.container import Segment
from backend_hooks.read.merge import merge_segments

T0 = 1_700_000_000_000_000


@pytest.mark.parametrize("rate", [16000, 48000])
def test_a_second_sessions_chunks_stay_back_to_back_whatever_its_anchor(rate: int) -> None:
    broken = []
    for offset in range(600):
        anchor = T0 + 1_000_000 + offset  # 1 s after the first session, off the sample grid
        rng = random.Random(offset)
        segments = [Segment(T0, rate, b"\x01\x00" * 100, ("first", 0))]
        index, body = 0, []
        for seq in range(6):
            pcm = bytes([seq + 2, 0]) * rng.randint(900, 1100)
            start = anchor + round(index * 1_000_000 / rate)
            segments.append(Segment(start, rate, pcm, ("second", seq)))
            body.append(pcm)
            index += len(pcm) // 2
        merged = merge_segments(segments)
        if not merged.pcm.endswith(b"".join(body)):
            broken.append(offset)
    assert not broken, f"{len(broken)} anchors lose or insert a sample: {broken[:8]}"


def test_a_real_one_sample_gap_is_still_filled() -> None:
    rate = 16000
    a = Segment(T0, rate, b"\x01\x00" * 10, None)
    b = Segment(T0 + 11 * 62, rate, b"\x02\x00" * 10, None)  # 11 periods later, 1 µs early
    assert merge_segments([a, b]).pcm == a.pcm + b"\x00\x00" + b.pcm
