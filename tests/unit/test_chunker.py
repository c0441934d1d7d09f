"""backend_hooks.chunker: pushed byte stream and timestamps in, whole chunks out."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.chunker import Chunker, RawChunk, timestamp_to_us
from backend_hooks.errors import InvalidInputError

ANCHOR_US = 1_700_000_000_000_000


def at(sample: int, rate: int, anchor: int = ANCHOR_US) -> int:
    """Time of sample ``sample`` of a continuous run starting at ``anchor``."""
    return anchor + round(sample * 1_000_000 / rate)


def summary(chunks: list[RawChunk]) -> list[tuple[int, int, int, bytes]]:
    return [(c.seq, c.start_us, c.sample_count, c.pcm) for c in chunks]


def push_split(chunker: Chunker, data: bytes, cuts: list[int], rate: int) -> list[RawChunk]:
    """Push ``data`` in pieces cut at byte offsets ``cuts``, each with its true timestamp."""
    out: list[RawChunk] = []
    bounds = [0, *cuts, len(data)]
    for start, end in pairwise(bounds):
        # The first sample that *starts* in a piece beginning at byte ``start``.
        out += chunker.push(data[start:end], at((start + 1) // 2, rate))
    return out


def pcm_bytes(length: int) -> bytes:
    return bytes((i * 37 + 11) % 256 for i in range(length))


# --- splits --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    length=st.integers(min_value=0, max_value=2500),
    chunk_samples=st.integers(min_value=1, max_value=400),
    rate=st.sampled_from([8000, 12000, 16000, 24000, 44100, 48000]),
)
def test_any_split_gives_the_same_chunks_as_one_push(
    data: st.DataObject, length: int, chunk_samples: int, rate: int
) -> None:
    pcm = pcm_bytes(length)
    cuts = sorted(
        data.draw(st.sets(st.integers(min_value=1, max_value=max(1, length - 1)), max_size=40))
    )
    cuts = [c for c in cuts if 0 < c < length]

    whole = Chunker(rate, chunk_samples, first_seq=5)
    expected = whole.push(pcm, ANCHOR_US) + whole.flush()

    split = Chunker(rate, chunk_samples, first_seq=5)
    got = push_split(split, pcm, cuts, rate) + split.flush()

    assert summary(got) == summary(expected)
    assert split.dangling_byte == whole.dangling_byte == bool(length % 2)
    # No byte lost: everything but a possible dangling half sample is in the chunks.
    assert b"".join(c.pcm for c in got) == pcm[: length - length % 2]
    # Whole chunks, then at most one partial one; timestamps on the sample grid.
    assert all(c.sample_count == chunk_samples for c in got[:-1])
    assert [c.start_us for c in got] == [at(i * chunk_samples, rate) for i in range(len(got))]
    assert [c.seq for c in got] == list(range(5, 5 + len(got)))


@pytest.mark.parametrize(
    ("cuts", "length"),
    [
        pytest.param([1], 10, id="first-byte-alone"),
        pytest.param([9], 10, id="last-byte-alone"),
        pytest.param(list(range(1, 10)), 10, id="byte-by-byte"),
        pytest.param([3, 4], 10, id="one-byte-piece-completing-a-sample"),
        pytest.param([3, 5, 7], 11, id="odd-pieces-odd-total"),
        pytest.param([8], 16, id="cut-at-chunk-boundary"),
        pytest.param([7, 9], 16, id="carry-across-chunk-boundary"),
    ],
)
def test_odd_splits(cuts: list[int], length: int) -> None:
    pcm = pcm_bytes(length)
    whole = Chunker(16000, 4)
    expected = whole.push(pcm, ANCHOR_US) + whole.flush()
    split = Chunker(16000, 4)
    assert summary(push_split(split, pcm, cuts, 16000) + split.flush()) == summary(expected)


def test_odd_byte_waits_for_the_next_push() -> None:
    chunker = Chunker(16000, 2)
    assert chunker.push(b"\x01\x02\x03", ANCHOR_US) == []
    assert chunker.dangling_byte
    assert chunker.pending_samples == 1
    [chunk] = chunker.push(b"\x04", at(1, 16000))
    assert chunk.pcm == b"\x01\x02\x03\x04"
    assert not chunker.dangling_byte


def test_empty_push_changes_nothing() -> None:
    chunker = Chunker(16000, 2)
    chunker.push(b"\x01", ANCHOR_US)
    assert chunker.push(b"", ANCHOR_US + 10_000_000) == []
    assert chunker.dangling_byte
    assert chunker.flush() == []


def test_flush_keeps_the_run_going() -> None:
    rate = 16000
    chunker = Chunker(rate, 320)
    chunker.push(bytes(2 * 480), ANCHOR_US)  # 1.5 chunks
    [partial] = chunker.flush()
    assert (partial.start_us, partial.sample_count) == (at(320, rate), 160)
    [after] = chunker.push(bytes(2 * 320), at(480, rate))
    assert after.start_us == at(480, rate)
    assert chunker.flush() == []


# --- timing --------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    jitter=st.lists(st.integers(min_value=-20_000, max_value=20_000), min_size=1, max_size=200),
    rate=st.sampled_from([8000, 16000, 48000]),
)
def test_jitter_within_20_ms_keeps_one_run_without_drift(jitter: list[int], rate: int) -> None:
    frame = rate // 50  # pushes of 20 ms
    chunk_samples = frame * 5
    chunker = Chunker(rate, chunk_samples)
    chunks: list[RawChunk] = []
    for i, offset in enumerate(jitter):
        ideal = at(i * frame, rate)
        chunks += chunker.push(bytes(2 * frame), ideal + offset if i else ideal)
    chunks += chunker.flush()
    total = frame * len(jitter)
    assert sum(c.sample_count for c in chunks) == total
    assert [c.start_us for c in chunks] == [
        at(i * chunk_samples, rate) for i in range(-(-total // chunk_samples))
    ]


@pytest.mark.parametrize(
    ("offset_us", "continuous"),
    [
        pytest.param(0, True, id="on-time"),
        pytest.param(20_000, True, id="20ms-late"),
        pytest.param(-20_000, True, id="20ms-early"),
        pytest.param(20_001, False, id="gap-just-over-20ms"),
        pytest.param(-20_001, False, id="jump-back-just-over-20ms"),
        pytest.param(5_000_000, False, id="gap-5s"),
        pytest.param(-3_000_000, False, id="jump-back-3s"),
    ],
)
def test_continuity_tolerance(offset_us: int, continuous: bool) -> None:
    rate = 16000
    chunker = Chunker(rate, 16000)
    assert chunker.push(bytes(2 * 800), ANCHOR_US) == []  # 50 ms
    second = at(800, rate) + offset_us
    out = chunker.push(bytes(2 * 320), second)
    out += chunker.flush()
    if continuous:
        assert summary(out) == [(0, ANCHOR_US, 1120, bytes(2240))]
    else:
        assert summary(out) == [(0, ANCHOR_US, 800, bytes(1600)), (1, second, 320, bytes(640))]


def test_gap_starts_a_new_run_on_its_own_grid() -> None:
    rate = 8000
    chunker = Chunker(rate, 400)
    out = chunker.push(bytes(2 * 600), ANCHOR_US)  # one chunk + 200 samples pending
    restart = ANCHOR_US + 10_000_000 + 7  # 10 s later, off the old grid
    out += chunker.push(bytes(2 * 900), restart)
    out += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in out] == [
        (ANCHOR_US, 400),
        (at(400, rate), 200),  # the old run closed at the gap
        (restart, 400),
        (at(400, rate, restart), 400),
        (at(800, rate, restart), 100),
    ]
    assert [c.seq for c in out] == [0, 1, 2, 3, 4]


def test_gap_after_an_odd_push_completes_the_sample_in_the_old_run() -> None:
    chunker = Chunker(16000, 100)
    chunker.push(b"\x01\x02\x03", ANCHOR_US)
    restart = ANCHOR_US + 1_000_000
    out = chunker.push(b"\x04\x05\x06", restart)
    out += chunker.flush()
    assert summary(out) == [
        (0, ANCHOR_US, 2, b"\x01\x02\x03\x04"),
        (1, restart, 1, b"\x05\x06"),
    ]


def test_expected_us_tracks_the_run() -> None:
    chunker = Chunker(16000, 1000)
    chunker.push(bytes(2 * 1600), ANCHOR_US)
    assert chunker.expected_us == at(1600, 16000)


# --- bad inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pcm",
    [
        pytest.param("\x00\x01", id="str"),
        pytest.param([0, 1], id="list"),
        pytest.param(None, id="none"),
        pytest.param(1234, id="int"),
    ],
)
def test_push_refuses_non_bytes(pcm: object) -> None:
    with pytest.raises(InvalidInputError, match="pcm"):
        Chunker(16000, 100).push(pcm, ANCHOR_US)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pcm",
    [
        pytest.param(bytearray(b"\x01\x02"), id="bytearray"),
        pytest.param(memoryview(b"\x01\x02"), id="memoryview"),
    ],
)
def test_push_accepts_bytes_like(pcm: bytes) -> None:
    [chunk] = Chunker(16000, 1).push(pcm, ANCHOR_US)
    assert chunk.pcm == b"\x01\x02"


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(-math.inf, id="minus-inf"),
        pytest.param(-0.001, id="negative"),
        pytest.param(-1, id="negative-int"),
        pytest.param("1700000000", id="str"),
        pytest.param(None, id="none"),
        pytest.param(True, id="bool"),
    ],
)
def test_bad_timestamps_are_refused(timestamp: object) -> None:
    with pytest.raises(InvalidInputError, match="timestamp"):
        timestamp_to_us(timestamp)


@pytest.mark.parametrize(
    ("timestamp", "us"),
    [
        pytest.param(0, 0, id="zero"),
        pytest.param(1_700_000_000, 1_700_000_000_000_000, id="int"),
        pytest.param(1_700_000_000.123456, 1_700_000_000_123_456, id="microseconds"),
        pytest.param(1.0000004, 1_000_000, id="rounds-down"),
        pytest.param(1.0000006, 1_000_001, id="rounds-up"),
    ],
)
def test_timestamp_to_us(timestamp: float, us: int) -> None:
    assert timestamp_to_us(timestamp) == us
