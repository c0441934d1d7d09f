"""backend_hooks.read.merge.TimelineMerger (the streaming merge), its gap bound and the
listing-only helpers (check_gap_bound, estimated_pcm_bytes); backend_hooks.read.wav."""

from __future__ import annotations

import io
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract.container import Segment
from backend_hooks.contract.errors import GapTooLongError, UnsupportedFormatError
from backend_hooks.read import wav
from backend_hooks.read.merge import (
    ZERO_BLOCK_BYTES,
    ObjectSpan,
    TimelineMerger,
    check_gap_bound,
    estimated_pcm_bytes,
    merge_segments,
)

T0 = 1_700_000_000_000_000
RATE = 16000


def seg(start_ms: float, samples: int, value: int, seq: int | None = None) -> Segment:
    pcm = value.to_bytes(2, "little", signed=True) * samples
    return Segment(T0 + round(start_ms * 1000), RATE, pcm, None if seq is None else ("s", seq))


@settings(max_examples=150, deadline=None)
@given(
    objects=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4000),  # the object's name start (ms)
            st.lists(  # its segments: (ms after the name start, samples, seq or None)
                st.tuples(
                    st.integers(min_value=0, max_value=1500),
                    st.integers(min_value=0, max_value=900),
                    st.one_of(st.none(), st.integers(min_value=0, max_value=12)),
                ),
                min_size=0,
                max_size=4,
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    fill_gaps=st.booleans(),
)
def test_fed_object_by_object_it_is_exactly_the_batch_merge(
    objects: list[tuple[int, list[tuple[int, int, int | None]]]], fill_gaps: bool
) -> None:
    objects = sorted(objects, key=lambda o: o[0])
    fed: list[list[Segment]] = []
    value = 0
    for name_ms, layout in objects:
        segments = []
        for offset, samples, seq in layout:
            value += 1
            segments.append(seg(name_ms + offset, samples, value, seq))
        fed.append(segments)
    merger = TimelineMerger(RATE, fill_gaps=fill_gaps)
    out = bytearray()
    for index, segments in enumerate(fed):
        merger.add(segments, f"object-{index}")
        if index + 1 < len(objects):
            out += b"".join(merger.advance(T0 + objects[index + 1][0] * 1000))
    out += b"".join(merger.finish())
    batch = merge_segments([s for segments in fed for s in segments], fill_gaps=fill_gaps)
    assert out == batch.pcm
    assert merger.start_us == batch.start_us
    assert merger.samples_out == batch.sample_count
    assert merger.missing() == batch.missing


def test_what_is_before_the_next_object_is_emitted_before_it_is_read() -> None:
    merger = TimelineMerger(RATE)
    merger.add([seg(0, 1600, 1, seq=0), seg(100, 1600, 2, seq=1)], "a")
    early = b"".join(merger.advance(T0 + 150_000))  # the next object starts at 150 ms
    assert early == (1).to_bytes(2, "little") * 1600 + (2).to_bytes(2, "little") * 1600
    assert b"".join(merger.advance(T0 + 150_000)) == b""  # nothing twice
    merger.add([seg(200, 160, 3, seq=2)], "b")
    rest = b"".join(merger.finish())
    assert rest == (3).to_bytes(2, "little") * 160
    assert merger.samples_out == 3360


def test_a_segment_before_what_was_emitted_is_trimmed_as_an_overlap() -> None:
    merger = TimelineMerger(RATE)
    merger.add([seg(0, 1600, 1)], "a")  # 0-100 ms
    assert len(b"".join(merger.advance(T0 + 200_000))) == 3200
    merger.add([seg(50, 1600, 2)], "misnamed")  # starts before the watermark passed
    assert b"".join(merger.finish()) == (2).to_bytes(2, "little") * 800  # its first half cut


def test_a_gap_longer_than_the_bound_is_refused_naming_both_objects() -> None:
    merger = TimelineMerger(RATE, max_gap_seconds=60)
    merger.add([seg(0, 160, 1)], "chunks/u/c/0.000.bin")
    merger.add([seg(10 + 60_001, 160, 2)], "chunks/u/c/60.011.bin")
    blocks = merger.finish()
    assert len(next(blocks)) == 320
    with pytest.raises(GapTooLongError) as caught:
        next(blocks)
    error = caught.value
    assert (error.before, error.after) == ("chunks/u/c/0.000.bin", "chunks/u/c/60.011.bin")
    assert error.gap_seconds == pytest.approx(60.001)
    assert "AUDIOSYNC_MAX_GAP_FILL_SECONDS=60 s" in str(error)
    assert "fill_gaps=False" in str(error) and "timestamps=" in str(error)


def test_a_gap_at_the_bound_is_filled_in_bounded_blocks_and_unfilled_is_never_refused() -> None:
    merger = TimelineMerger(RATE, max_gap_seconds=60)
    merger.add([seg(0, 160, 1), seg(10 + 60_000, 160, 2)])
    blocks = list(merger.finish())
    assert max(len(b) for b in blocks) <= max(ZERO_BLOCK_BYTES, 320)
    assert sum(map(len, blocks)) == 2 * (160 + 60 * RATE + 160)
    unfilled = TimelineMerger(RATE, fill_gaps=False, max_gap_seconds=1)
    unfilled.add([seg(0, 160, 1), seg(10**9, 160, 2)])  # 11 days apart
    assert sum(map(len, unfilled.finish())) == 640


def test_audio_at_another_rate_is_refused_naming_the_object() -> None:
    merger = TimelineMerger(RATE)
    with pytest.raises(UnsupportedFormatError, match=r"chunks/u/c/x\.bin holds audio at 8000 Hz"):
        merger.add([Segment(T0, 8000, b"\0\0", None)], "chunks/u/c/x.bin")


def span(path: str, start_s: float, end_s: float, max_end_s: float | None = None) -> ObjectSpan:
    end = round((T0 / 1e6 + end_s) * 1e6)
    bound = end if max_end_s is None else round((T0 / 1e6 + max_end_s) * 1e6)
    return ObjectSpan(path, T0 + round(start_s * 1e6), end, bound)


def test_the_listing_check_refuses_only_a_gap_that_is_certainly_too_long() -> None:
    check_gap_bound([span("a", 0, 5), span("b", 5, 10), span("c", 100, 105)], 90)
    with pytest.raises(GapTooLongError) as caught:
        check_gap_bound([span("a", 0, 5), span("b", 5, 10), span("c", 100.5, 105)], 90)
    assert (caught.value.before, caught.value.after) == ("b", "c")
    # What an object may hold (max_end) counts, not the guess.
    check_gap_bound([span("opus", 0, 5, max_end_s=20), span("next", 105, 110)], 90)
    # An early long object covers the later short ones.
    check_gap_bound([span("long", 0, 200), span("x", 1, 2), span("y", 150, 151)], 90)
    check_gap_bound([], 90)


def test_the_size_estimate_follows_the_fill_rule() -> None:
    spans = [span("a", 0, 5), span("a-again", 0, 5), span("b", 10, 15), span("in", 11, 12)]
    slack = 2 * (RATE // 100)
    assert estimated_pcm_bytes(spans, RATE, True) == 2 * 15 * RATE + slack
    assert estimated_pcm_bytes(spans, RATE, False) == 2 * 10 * RATE + slack
    assert estimated_pcm_bytes([], RATE, True) == 0


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_wav_header_reads_back_with_the_wave_module(rate: int) -> None:
    pcm = bytes(range(256)) * 10
    with wave.open(io.BytesIO(wav.header(rate, len(pcm)) + pcm)) as got:
        assert (got.getnchannels(), got.getsampwidth(), got.getframerate()) == (1, 2, rate)
        assert got.readframes(10**6) == pcm
    assert len(wav.header(rate, 0)) == wav.HEADER_BYTES
    unknown = wav.header(rate, None)
    assert unknown[4:8] == unknown[40:44] == b"\xff\xff\xff\xff"


def test_wav_header_refuses_what_it_cannot_state() -> None:
    with pytest.raises(ValueError, match="bytes of PCM"):
        wav.header(16000, wav.MAX_DATA_BYTES + 1)
    with pytest.raises(ValueError, match="sample rate"):
        wav.header(0, 10)


def test_a_segment_at_the_next_objects_start_waits_for_it_as_the_batch_order_says() -> None:
    # The batch order puts an unkeyed (legacy) segment before a keyed one of the same start;
    # so a segment starting exactly at the next object's name start must not be emitted yet.
    first, second = [seg(0, 160, 1, seq=0), seg(100, 160, 2, seq=1)], [seg(100, 160, 3)]
    merger = TimelineMerger(RATE)
    merger.add(first, "a")
    out = b"".join(merger.advance(T0 + 100_000))
    merger.add(second, "b")
    out += b"".join(merger.finish())
    assert out == merge_segments(first + second).pcm
    assert out[2 * 1600 : 2 * 1600 + 2] == (3).to_bytes(2, "little")  # b's, not a's
