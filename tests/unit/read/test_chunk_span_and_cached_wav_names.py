"""Pure: a new object's span (``conversations.chunk_span``) when its chunks
overlap (more samples than its name's span), hold a gap (fewer) or are contiguous."""

from __future__ import annotations

from backend_hooks.read import conversations

NAME = "chunks/u/c/1700000000.000-1700000002.000_0123456789abcdef.opus"
START = 1_700_000_000 * 1_000_000


def _span(duration: float | None, path: str = NAME) -> conversations.ChunkSpan:
    return conversations.chunk_span({"path": path, "timestamp": START / 1e6, "duration": duration})


def test_overlapping_chunks_end_at_the_name_end_not_at_their_sample_sum() -> None:
    assert _span(4.0).end_us == START + 2_000_000  # two 2 s chunks at one start


def test_a_gap_ends_at_the_name_end_and_contiguous_audio_keeps_its_samples() -> None:
    assert _span(1.5).end_us == START + 2_000_000
    assert _span(2.0004).end_us == START + 2_000_400  # within the truncated millisecond
    assert _span(None).end_us == START + 2_000_000
    legacy = _span(4.0, "chunks/u/c/1700000000.000.bin")  # no end in a legacy name
    assert legacy.end_us == START + 4_000_000


def test_each_variant_of_a_cached_wav_has_its_own_name_the_default_the_backends() -> None:
    names = {
        conversations.merged_filename("f", fill, rate)
        for fill in (True, False)
        for rate in (None, 8000, 16000)
    }
    assert len(names) == 6 and conversations.merged_filename("f", True, None) == "f.wav"
    assert conversations.merged_filename("f", False, 8000) == "f~8000~unfilled.wav"
