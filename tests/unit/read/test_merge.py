"""backend_hooks.read.merge: segments on one timeline, gaps, overlaps, duplicates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract.container import Segment
from backend_hooks.contract.errors import UnsupportedFormatError
from backend_hooks.read.merge import merge_segments

T0 = 1_700_000_000_000_000
RATE = 16000


def seg(
    start_ms: float,
    samples: int,
    value: int,
    *,
    seq: int | None = None,
    rate: int = RATE,
    odd_byte: bool = False,
) -> Segment:
    """``samples`` samples all equal to ``value``, starting ``start_ms`` after T0."""
    pcm = value.to_bytes(2, "little", signed=True) * samples + (b"\x7f" if odd_byte else b"")
    return Segment(
        start_us=T0 + round(start_ms * 1000),
        sample_rate=rate,
        pcm=pcm,
        key=None if seq is None else ("sess", seq),
    )


def runs(pcm: bytes | bytearray) -> list[tuple[int, int]]:
    """(value, length) runs of the samples of ``pcm``: a readable picture of the timeline."""
    out: list[tuple[int, int]] = []
    for i in range(0, len(pcm), 2):
        value = int.from_bytes(pcm[i : i + 2], "little", signed=True)
        if out and out[-1][0] == value:
            out[-1] = (value, out[-1][1] + 1)
        else:
            out.append((value, 1))
    return out


@pytest.mark.parametrize(
    ("segments", "fill_gaps", "expected"),
    [
        pytest.param([seg(0, 160, 1)], True, [(1, 160)], id="single"),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(10, 160, 2, seq=1)],
            True,
            [(1, 160), (2, 160)],
            id="contiguous",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(510, 160, 2, seq=1)],
            True,
            [(1, 160), (0, 8000), (2, 160)],
            id="gap-500ms-filled",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(510, 160, 2, seq=1)],
            False,
            [(1, 160), (2, 160)],
            id="gap-500ms-not-filled",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(10.1, 160, 2, seq=1)],
            True,
            [(1, 160), (0, 2), (2, 160)],
            id="gap-100us-is-round-1.6-samples",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(10.09, 160, 2, seq=1)],
            True,
            [(1, 160), (0, 1), (2, 160)],
            id="gap-90us-is-round-1.44-samples",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(10.02, 160, 2, seq=1)],
            True,
            [(1, 160), (2, 160)],
            id="gap-below-half-a-sample",
        ),
        pytest.param(
            [seg(0, 1600, 1, seq=0), seg(75, 1600, 2, seq=1)],
            True,
            [(1, 1600), (2, 1200)],
            id="overlap-25ms-trimmed-from-later",
        ),
        pytest.param(
            [seg(0, 1600, 1, seq=0), seg(20, 160, 2, seq=1)],
            True,
            [(1, 1600)],
            id="later-segment-inside-earlier",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(0, 160, 9, seq=0)],
            True,
            [(1, 160)],
            id="duplicate-session-seq-kept-once",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0), seg(10, 160, 2, seq=1), seg(0, 160, 1, seq=0)],
            True,
            [(1, 160), (2, 160)],
            id="duplicate-stored-twice",
        ),
        pytest.param(
            [seg(0, 160, 1), seg(0, 160, 2)],
            True,
            [(1, 160)],
            id="legacy-same-start-overlap-trimmed",
        ),
        pytest.param(
            [seg(10, 160, 2, seq=1), seg(0, 160, 1, seq=0)],
            True,
            [(1, 160), (2, 160)],
            id="out-of-order-input",
        ),
        pytest.param(
            [seg(0, 160, 1, seq=0, odd_byte=True), seg(10, 160, 2, seq=1, odd_byte=True)],
            True,
            [(1, 160), (2, 160)],
            id="odd-byte-segments",
        ),
        pytest.param(
            [seg(0, 1600, 1, seq=0), seg(1000, 1600, 2, seq=1), seg(1050, 1600, 3, seq=2)],
            False,
            [(1, 1600), (2, 1600), (3, 800)],
            id="overlap-after-unfilled-gap-trimmed",
        ),
        pytest.param(
            [seg(0, 1600, 1, seq=0), seg(1000, 1600, 2, seq=1), seg(1050, 1600, 3, seq=2)],
            True,
            [(1, 1600), (0, 14400), (2, 1600), (3, 800)],
            id="overlap-after-filled-gap-trimmed",
        ),
    ],
)
def test_merge_table(
    segments: list[Segment], fill_gaps: bool, expected: list[tuple[int, int]]
) -> None:
    merged = merge_segments(segments, fill_gaps=fill_gaps)
    assert runs(merged.pcm) == expected
    assert merged.sample_rate == RATE
    assert merged.start_us == min(s.start_us for s in segments)
    assert merged.sample_count == sum(n for _, n in expected)


def test_gap_fill_is_round_gap_times_rate() -> None:
    # LEGACY_FORMATS.md: a gap between the end of one chunk and the next start is filled
    # with round(gap * rate) zero samples.
    for rate in (8000, 16000, 48000):
        for gap_us in (1, 62, 63, 125, 999, 1_000_000, 2_345_678):
            first = Segment(T0, rate, bytes(2 * rate), ("s", 0))  # 1 s
            second = Segment(T0 + 1_000_000 + gap_us, rate, b"\x01\x00", ("s", 1))
            merged = merge_segments([first, second])
            assert merged.sample_count == rate + round(gap_us / 1_000_000 * rate) + 1


@settings(max_examples=100, deadline=None)
@given(
    layout=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=800)
        ),
        min_size=1,
        max_size=8,
    ),
    fill_gaps=st.booleans(),
    data=st.data(),
)
def test_merge_properties(
    layout: list[tuple[int, int]], fill_gaps: bool, data: st.DataObject
) -> None:
    segments = [seg(start, samples, i + 1, seq=i) for i, (start, samples) in enumerate(layout)]
    shuffled = data.draw(st.permutations(segments))
    merged = merge_segments(shuffled, fill_gaps=fill_gaps)
    # The input order does not matter.
    assert merged == merge_segments(segments, fill_gaps=fill_gaps)
    assert len(merged.pcm) % 2 == 0
    if fill_gaps:
        # Every sample is where its segment puts it, unless a segment starting earlier
        # already covers that instant; no sample of the timeline is missing. A segment
        # of no samples is no audio: it neither starts nor ends the timeline.
        heard = [(start, n) for start, n in layout if n]
        timeline_end = max((round(start * RATE / 1000) + n for start, n in heard), default=0)
        origin = min((round(start * RATE / 1000) for start, _ in heard), default=0)
        assert merged.sample_count == timeline_end - origin
    else:
        # Without gap filling the output is the union of the segments' intervals.
        covered: set[int] = set()
        for start, samples in layout:
            first = round(start * RATE / 1000)
            covered.update(range(first, first + samples))
        assert merged.sample_count == len(covered)


def test_duplicates_with_different_content_keep_the_first_seen() -> None:
    merged = merge_segments([seg(0, 10, 1, seq=4), seg(0, 10, 2, seq=4)])
    assert runs(merged.pcm) == [(1, 10)]


def test_same_seq_in_another_session_is_not_a_duplicate() -> None:
    a = seg(0, 10, 1, seq=4)
    b = Segment(a.start_us + 625, RATE, a.pcm, ("other-session", 4))  # 10 samples later
    assert merge_segments([a, b]).sample_count == 20


def test_mixed_rates_are_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match="sample rates"):
        merge_segments([seg(0, 10, 1, seq=0), seg(10, 10, 1, seq=1, rate=8000)])


@pytest.mark.parametrize("default_rate", [8000, 16000])
def test_empty_input(default_rate: int) -> None:
    merged = merge_segments([], default_rate=default_rate)
    assert merged.pcm == b""
    assert merged.start_us is None
    assert merged.sample_rate == default_rate
    assert merged.duration == 0


def test_duration_comes_from_samples() -> None:
    merged = merge_segments([seg(0, 8000, 1, seq=0, rate=8000)])
    assert merged.duration == 1.0
    assert merged.sample_rate == 8000


def test_accepts_any_iterable() -> None:
    merged = merge_segments(s for s in [seg(0, 10, 1, seq=0)])
    assert merged.sample_count == 10
