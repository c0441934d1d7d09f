"""The merger and the listing-only size estimate against
objects that hold no audio and names that lie about their end.

- A segment of no samples (a legacy Opus chunk whose header says 0 bytes, a 1-byte raw
  remnant) has a start but no audio: it set the timeline's ``start_us`` and, first or
  last, put seconds of zeros before or after the real audio (or refused the read with
  ``GapTooLongError`` for a gap to nothing).
- ``estimated_pcm_bytes`` (the in-memory reader allocates it up front) trusted a new
  object's name end over ``max_end_us``, the bound its size sets: one stray name end ten
  days out made the read of a minute ask for 27 GB.
"""

from __future__ import annotations

import pytest

from backend_hooks.contract.container import Segment
from backend_hooks.read.merge import ObjectSpan, TimelineMerger, estimated_pcm_bytes

T0 = 1_700_000_000_000_000
RATE = 16000
SECOND = 1_000_000


def audio(start_us: int, samples: int, value: int = 7) -> Segment:
    return Segment(start_us, RATE, value.to_bytes(2, "little", signed=True) * samples, None)


@pytest.mark.parametrize("fill_gaps", [True, False])
@pytest.mark.parametrize("empty", [b"", b"\x01"])
def test_a_segment_without_samples_neither_starts_nor_ends_the_timeline(
    fill_gaps: bool, empty: bytes
) -> None:
    merger = TimelineMerger(RATE, fill_gaps=fill_gaps, max_gap_seconds=5)
    merger.add([Segment(T0 - 10 * SECOND, RATE, empty, None)], "before.opus")
    merger.add([audio(T0, 1000)], "real.bin")
    merger.add([Segment(T0 + 20 * SECOND, RATE, empty, None)], "after.opus")
    pcm = b"".join(merger.finish())
    assert merger.start_us == T0
    assert pcm == audio(T0, 1000).pcm
    assert merger.samples_out == 1000


def test_the_size_estimate_is_bounded_by_what_the_objects_can_hold() -> None:
    minute = ObjectSpan("a.opus", T0, T0 + 60 * SECOND, T0 + 61 * SECOND)
    stray = ObjectSpan(  # named to end ten days later; its size bounds it to 40 s
        "b.opus", T0 + 60 * SECOND, T0 + 10 * 86400 * SECOND, T0 + 100 * SECOND
    )
    bound = 2 * (100 * RATE + RATE // 100)
    assert estimated_pcm_bytes([minute, stray], RATE, True) <= bound
    assert estimated_pcm_bytes([minute, stray], RATE, False) <= bound
    # and an honest listing is still estimated from its names' ends
    assert estimated_pcm_bytes([minute], RATE, True) == 2 * (60 * RATE + RATE // 100)
