"""backend_hooks.pusher.chunker: pushed byte stream and timestamps in, whole chunks out."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract.container import Segment
from backend_hooks.contract.errors import InvalidInputError
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.chunker import Chunker, RawChunk, timestamp_to_us
from backend_hooks.read.merge import merge_segments

ANCHOR_US = 1_700_000_000_000_000
NOW_US = ANCHOR_US  # the pusher's clock: pushed timestamps here are near it
DEFAULTS = Settings.from_env({}, role="pusher")
TOLERANCE_US = round(DEFAULTS.timestamp_tolerance_ms * 1000)  # 200 ms
WINDOW_US = round(DEFAULTS.push_timestamp_window_seconds * 1_000_000)  # 1 day
CHUNK_SECONDS = DEFAULTS.chunk_seconds  # 5 s


def make(
    rate: int, chunk_samples: int, first_seq: int = 0, *, tolerance_us: int = TOLERANCE_US
) -> Chunker:
    return Chunker(rate, chunk_samples, first_seq, tolerance_us=tolerance_us, window_us=WINDOW_US)


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
        out += chunker.push(data[start:end], at((start + 1) // 2, rate), now_us=NOW_US)
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

    whole = make(rate, chunk_samples, first_seq=5)
    expected = whole.push(pcm, ANCHOR_US, now_us=NOW_US) + whole.flush()

    split = make(rate, chunk_samples, first_seq=5)
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
    whole = make(16000, 4)
    expected = whole.push(pcm, ANCHOR_US, now_us=NOW_US) + whole.flush()
    split = make(16000, 4)
    assert summary(push_split(split, pcm, cuts, 16000) + split.flush()) == summary(expected)


def test_odd_byte_waits_for_the_next_push() -> None:
    chunker = make(16000, 2)
    assert chunker.push(b"\x01\x02\x03", ANCHOR_US, now_us=NOW_US) == []
    assert chunker.dangling_byte
    assert chunker.pending_samples == 1
    [chunk] = chunker.push(b"\x04", at(1, 16000), now_us=NOW_US)
    assert chunk.pcm == b"\x01\x02\x03\x04"
    assert not chunker.dangling_byte


def test_empty_push_changes_nothing() -> None:
    chunker = make(16000, 2)
    chunker.push(b"\x01", ANCHOR_US, now_us=NOW_US)
    assert chunker.push(b"", ANCHOR_US + 10_000_000, now_us=NOW_US) == []
    assert chunker.dangling_byte
    assert chunker.flush() == []


def test_flush_keeps_the_run_going() -> None:
    rate = 16000
    chunker = make(rate, 320)
    chunker.push(bytes(2 * 480), ANCHOR_US, now_us=NOW_US)  # 1.5 chunks
    [partial] = chunker.flush()
    assert (partial.start_us, partial.sample_count) == (at(320, rate), 160)
    [after] = chunker.push(bytes(2 * 320), at(480, rate), now_us=NOW_US)
    assert after.start_us == at(480, rate)
    assert chunker.flush() == []


# --- timing --------------------------------------------------------------------------------


#
# The rule (module docstring): continuity by sample count; a pushed timestamp steers only
# when it disagrees with the sample clock (anchor + samples / rate) by more than the
# tolerance. "Jitter below the tolerance" means timing errors whose *spread* (latest minus
# earliest) is below it: the anchor is itself a pushed timestamp, so two honest pushes
# disagree by up to the spread. Below, errors are drawn from ±h with 2h < tolerance.


def reader(chunks: list[RawChunk], rate: int, *, fill_gaps: bool) -> bytes | bytearray:
    """What the reader makes of ``chunks``: backend_hooks.read.merge, as reader.py calls it."""
    segments = [Segment(c.start_us, rate, c.pcm, ("session", c.seq)) for c in chunks]
    return merge_segments(segments, fill_gaps=fill_gaps, default_rate=rate).pcm


def pieces(rng: random.Random, length: int, frame_bytes: int, odd: bool) -> list[tuple[int, int]]:
    """Byte ranges of the pushes: 20 ms frames, or any lengths (odd ones included)."""
    out, start = [], 0
    while start < length:
        size = rng.randint(1, 3 * frame_bytes) if odd else frame_bytes
        out.append((start, min(length, start + size)))
        start += size
    return out


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 48000]),
    tolerance_ms=st.integers(min_value=1, max_value=250),
    seconds=st.integers(min_value=1, max_value=16),
    extremes=st.booleans(),
    odd=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_jitter_below_the_tolerance_loses_and_adds_no_sample(
    rate: int, tolerance_ms: int, seconds: int, extremes: bool, odd: bool, seed: int
) -> None:
    tolerance = tolerance_ms * 1000
    h = (tolerance - 1) // 2  # each push off by at most h: any two differ by < tolerance
    chunk_samples = round(CHUNK_SECONDS * rate)
    rng = random.Random(seed)
    pcm = rng.randbytes(2 * seconds * rate + (rng.randint(0, 1) if odd else 0))
    chunker = make(rate, chunk_samples, tolerance_us=tolerance)
    chunks: list[RawChunk] = []
    first_error = None
    for start, end in pieces(rng, len(pcm), 2 * rate // 50, odd):
        error = rng.choice([-h, h]) if extremes else rng.randint(-h, h)
        first_error = error if first_error is None else first_error
        pushed = at((start + 1) // 2, rate) + error  # its first sample that starts in it
        chunks += chunker.push(pcm[start:end], pushed, now_us=NOW_US)
    chunks += chunker.flush()
    assert first_error is not None
    whole = pcm[: len(pcm) - len(pcm) % 2]
    total = len(whole) // 2

    assert chunker.runs == 1  # no re-anchor
    assert b"".join(c.pcm for c in chunks) == whole  # nothing lost, added or reordered
    assert reader(chunks, rate, fill_gaps=True) == whole  # and the reader gets it back
    full = [c for c in chunks if c.sample_count == chunk_samples]
    assert len(full) == total // chunk_samples  # chunks stay at AUDIOSYNC_CHUNK_SECONDS
    assert chunks[: len(full)] == full and len(chunks) - len(full) == int(total % chunk_samples > 0)
    anchor = ANCHOR_US + first_error  # the first push's own time
    assert [c.start_us for c in chunks] == [
        at(i * chunk_samples, rate, anchor) for i in range(len(chunks))
    ]
    for i, c in enumerate(chunks):  # within the tolerance of the true time
        assert abs(c.start_us - at(i * chunk_samples, rate)) <= h < tolerance


@pytest.mark.parametrize("jitter_ms", [15, 19])
def test_uniform_jitter_on_20_ms_pushes_keeps_whole_chunks(jitter_ms: int) -> None:
    """±15 ms / ±19 ms of uniform jitter on 20 ms pushes, one minute.

    An earlier chunker (20 ms from the first push) made 494 / 784 chunks of this very
    sequence and lost 8.83 % / 13.98 % of the audio on read (bench/bench_timestamps.py's
    model, seed 7). Now: 12 chunks of exactly 5 s, nothing lost or added."""
    rate, frame = 16000, 320
    rng = random.Random(7)
    chunker = make(rate, round(CHUNK_SECONDS * rate))
    pcm = random.Random(1).randbytes(2 * 60 * rate)
    chunks: list[RawChunk] = []
    for i in range(60 * 50):
        pushed = ANCHOR_US + i * 20_000 + round(rng.uniform(-1, 1) * jitter_ms * 1000)
        chunks += chunker.push(pcm[2 * i * frame : 2 * (i + 1) * frame], pushed, now_us=NOW_US)
    chunks += chunker.flush()
    assert [c.sample_count for c in chunks] == [5 * rate] * 12
    assert chunker.runs == 1
    assert reader(chunks, rate, fill_gaps=True) == pcm
    assert reader(chunks, rate, fill_gaps=False) == pcm


@pytest.mark.parametrize(
    ("offset_us", "continuous"),
    [
        pytest.param(0, True, id="on-time"),
        pytest.param(TOLERANCE_US, True, id="late-by-the-tolerance"),
        pytest.param(-TOLERANCE_US, True, id="early-by-the-tolerance"),
        pytest.param(TOLERANCE_US + 1, False, id="gap-just-over-the-tolerance"),
        pytest.param(-TOLERANCE_US - 1, False, id="jump-back-just-over-the-tolerance"),
        pytest.param(5_000_000, False, id="gap-5s"),
        pytest.param(-3_000_000, False, id="jump-back-3s"),
    ],
)
def test_continuity_tolerance(offset_us: int, continuous: bool) -> None:
    rate = 16000
    chunker = make(rate, 16000)
    assert chunker.push(bytes(2 * 800), ANCHOR_US, now_us=NOW_US) == []  # 50 ms
    second = at(800, rate) + offset_us
    out = chunker.push(bytes(2 * 320), second, now_us=NOW_US)
    out += chunker.flush()
    if continuous:  # a gap within the tolerance is absorbed: stamped |offset| early/late
        assert summary(out) == [(0, ANCHOR_US, 1120, bytes(2240))]
    else:
        assert summary(out) == [(0, ANCHOR_US, 800, bytes(1600)), (1, second, 320, bytes(640))]


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 48000]),
    tolerance_ms=st.integers(min_value=1, max_value=250),
    before_frames=st.integers(min_value=1, max_value=300),
    after_frames=st.integers(min_value=1, max_value=300),
    gap_extra_us=st.integers(min_value=1, max_value=60_000_000),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_gap_over_the_tolerance_starts_a_new_chunk_at_its_own_time(
    rate: int,
    tolerance_ms: int,
    before_frames: int,
    after_frames: int,
    gap_extra_us: int,
    seed: int,
) -> None:
    """With jitter ±h (h = tolerance / 4), a gap longer than tolerance + 2h is always seen:
    the run closes its chunk, a new one starts at the push's own timestamp, and the reader
    fills exactly the gap with silence."""
    tolerance = tolerance_ms * 1000
    h = tolerance // 4
    gap = tolerance + 2 * h + gap_extra_us
    frame = rate // 50
    rng = random.Random(seed)
    chunker = make(rate, round(CHUNK_SECONDS * rate), tolerance_us=tolerance)
    chunks: list[RawChunk] = []
    stamps = []
    for i in range(before_frames + after_frames):
        error = rng.randint(-h, h)
        pushed = at(i * frame, rate) + error + (gap if i >= before_frames else 0)
        stamps.append(pushed)
        chunks += chunker.push(bytes(2 * frame), pushed, now_us=NOW_US)
    chunks += chunker.flush()

    assert chunker.runs == 2
    [restart] = [c for c in chunks if c.start_us == stamps[before_frames]]  # its own time
    before = chunks[: chunks.index(restart)]
    assert sum(c.sample_count for c in before) == before_frames * frame  # the old run closed
    assert sum(c.sample_count for c in chunks) == (before_frames + after_frames) * frame
    end_of_before = at(before_frames * frame, rate, stamps[0])
    silence = round((restart.start_us - end_of_before) * rate / 1_000_000)
    assert len(reader(chunks, rate, fill_gaps=False)) == 2 * (before_frames + after_frames) * frame
    assert len(reader(chunks, rate, fill_gaps=True)) == 2 * (
        (before_frames + after_frames) * frame + silence
    )


def test_a_jump_back_overlaps_and_the_reader_drops_the_overlap() -> None:
    """A push 1 s earlier than where the audio ends (more than the tolerance) starts a new
    chunk at its own time: both are stored, but they overlap, and the reader's merge
    (ordered by start, overlaps trimmed from the later-starting segment) drops the first
    second of the new run: jumped-back audio overlapping earlier audio is lost on read."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    first = (1).to_bytes(2, "little") * (2 * rate)  # 2 s of 1s
    second = (2).to_bytes(2, "little") * (3 * rate // 2)  # 1.5 s of 2s
    chunks = chunker.push(first, ANCHOR_US, now_us=NOW_US)
    back = ANCHOR_US + 1_000_000  # 2 s of audio, then a push stamped 1 s in
    chunks += chunker.push(second, back, now_us=NOW_US)
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [
        (ANCHOR_US, 2 * rate),
        (back, 3 * rate // 2),
    ]
    merged = reader(chunks, rate, fill_gaps=True)
    assert runs(merged) == [(1, 2 * rate), (2, rate // 2)]  # 1 s of the second push lost
    assert len(merged) // 2 == 2 * rate + 3 * rate // 2 - rate


def runs(pcm: bytes | bytearray) -> list[tuple[int, int]]:
    """(value, length) runs of the samples of ``pcm``."""
    out: list[tuple[int, int]] = []
    for i in range(0, len(pcm), 2):
        value = int.from_bytes(pcm[i : i + 2], "little", signed=True)
        if out and out[-1][0] == value:
            out[-1] = (value, out[-1][1] + 1)
        else:
            out.append((value, 1))
    return out


@pytest.mark.parametrize("ppm", [100, -100])
def test_clock_drift_of_100_ppm_re_anchors_once_an_hour(ppm: int) -> None:
    """The device's clock runs ``ppm`` fast (+) or slow (-) against its audio: the
    disagreement grows by 0.1 ms a second and passes the 200 ms tolerance after 2000 s,
    so one re-anchor an hour (the next would be at 4000 s). At it, ``+`` leaves a gap the
    reader fills with 200 ms of silence; ``-`` jumps back 200 ms, which the reader trims."""
    rate, piece_us = 8000, 100_000  # 100 ms pushes
    piece = rate // 10
    chunker = make(rate, round(CHUNK_SECONDS * rate))
    chunks: list[RawChunk] = []
    stamps = []
    for i in range(36_000):  # one hour
        stamps.append(ANCHOR_US + round(i * piece_us * (1 + ppm / 1_000_000)))
        chunks += chunker.push(bytes(2 * piece), stamps[-1], now_us=NOW_US)
    chunks += chunker.flush()
    assert chunker.runs == 2
    # The first push whose disagreement |i * 100 ms * ppm| passes 200 ms: i = 20001.
    [restart] = [i for i, c in enumerate(chunks) if c.start_us == stamps[20_001]]
    assert sum(c.sample_count for c in chunks[:restart]) == 20_001 * piece
    pushed = 36_000 * piece
    disagreement = stamps[20_001] - at(20_001 * piece, rate)
    assert abs(disagreement) == round(20_001 * piece_us * 100 / 1_000_000)  # 200.01 ms
    kept = len(reader(chunks, rate, fill_gaps=False)) // 2
    filled = len(reader(chunks, rate, fill_gaps=True)) // 2
    samples = round(abs(disagreement) * rate / 1_000_000)  # 1600
    if ppm > 0:
        assert (kept, filled) == (pushed, pushed + samples)  # 200 ms of silence added
    else:
        assert (kept, filled) == (pushed - samples, pushed - samples)  # 200 ms trimmed


def test_gap_starts_a_new_run_on_its_own_grid() -> None:
    rate = 8000
    chunker = make(rate, 400)
    out = chunker.push(bytes(2 * 600), ANCHOR_US, now_us=NOW_US)  # a chunk + 200 samples pending
    restart = ANCHOR_US + 10_000_000 + 7  # 10 s later, off the old grid
    out += chunker.push(bytes(2 * 900), restart, now_us=NOW_US)
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
    chunker = make(16000, 100)
    chunker.push(b"\x01\x02\x03", ANCHOR_US, now_us=NOW_US)
    restart = ANCHOR_US + 1_000_000
    out = chunker.push(b"\x04\x05\x06", restart, now_us=NOW_US)
    out += chunker.flush()
    assert summary(out) == [
        (0, ANCHOR_US, 2, b"\x01\x02\x03\x04"),
        (1, restart, 1, b"\x05\x06"),
    ]


def test_after_a_switch_at_an_odd_byte_the_next_conversation_starts_at_its_own_time() -> None:
    """The half sample a switch leaves waiting is completed by the next conversation's
    first push, and that sample is placed with it, one sample before its time: the next
    conversation does not start at the end of the previous one's audio, hours early."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    first = chunker.push(bytes(2 * rate + 1), NOW_US, now_us=NOW_US)  # ends half a sample in
    first += chunker.flush()  # switch_conversation
    later = NOW_US + 3 * 3600 * 1_000_000  # the next conversation, three hours later
    second = chunker.push(bytes(2 * rate + 1), later, now_us=later) + chunker.flush()
    assert [c.start_us for c in first] == [NOW_US]
    assert [(c.start_us, c.sample_count) for c in second] == [(later - 125, rate + 1)]
    assert sum(c.sample_count for c in first + second) == 2 * rate + 1


def test_a_switch_at_an_odd_byte_in_continuous_audio_keeps_the_byte_stream() -> None:
    """Audio that goes on through the switch: the sample the switch split is the next
    conversation's first, where it was in the stream; no byte is lost or moved."""
    rate = 8000
    pcm = pcm_bytes(4 * rate + 2)
    chunker = make(rate, 5 * rate)
    first = chunker.push(pcm[: 2 * rate + 1], NOW_US, now_us=NOW_US) + chunker.flush()
    second = chunker.push(pcm[2 * rate + 1 :], at(rate + 1, rate), now_us=NOW_US)
    second += chunker.flush()
    assert summary(first) == [(0, NOW_US, rate, pcm[: 2 * rate])]
    assert summary(second) == [(1, at(rate, rate), rate + 1, pcm[2 * rate :])]
    assert chunker.runs == 1 and not chunker.dangling_byte


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=700),  # bytes pushed (0: a switch instead)
            st.sampled_from(["on-time", "late", "early", "implausible"]),
            st.integers(min_value=0, max_value=20_000_000),  # pusher time passing, µs
        ),
        max_size=40,
    ),
    rate=st.sampled_from([8000, 16000]),
)
def test_whatever_the_timestamps_and_switches_every_byte_comes_out_once_in_order(
    steps: list[tuple[int, str, int]], rate: int
) -> None:
    """Gaps, jumps, implausible times, re-placed runs and switches at odd bytes move
    chunks in time, never bytes: the chunks hold the pushed byte stream (but a dangling
    half sample), numbered in order, none longer than a chunk."""
    chunker = make(rate, 300)
    chunks: list[RawChunk] = []
    pushed, now, stream_at = b"", NOW_US, NOW_US
    for i, (length, kind, elapsed) in enumerate(steps):
        now += elapsed
        if not length:
            chunks += chunker.flush()
            continue
        data = bytes((i * 31 + k) % 256 for k in range(length))
        timestamp = {
            "on-time": stream_at,
            "late": stream_at + 5_000_000,
            "early": stream_at - 5_000_000,
            "implausible": 0,
        }[kind]
        chunks += chunker.push(data, timestamp, now_us=now)
        pushed += data
        stream_at = NOW_US + round((len(pushed) // 2) * 1_000_000 / rate)
    chunks += chunker.flush()
    assert b"".join(c.pcm for c in chunks) == pushed[: len(pushed) - len(pushed) % 2]
    assert chunker.dangling_byte == bool(len(pushed) % 2)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(0 < c.sample_count <= 300 for c in chunks)


def test_expected_us_tracks_the_run() -> None:
    chunker = make(16000, 1000)
    chunker.push(bytes(2 * 1600), ANCHOR_US, now_us=NOW_US)
    assert chunker.expected_us == at(1600, 16000)


# --- implausible timestamps: kept, placed by the pusher's clock ---------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(0.0, id="0.0"),
        pytest.param(1.0, id="1970-after-a-reset"),
        pytest.param(1e12, id="1e12-milliseconds-as-seconds"),
        pytest.param(1e300, id="1e300"),
        pytest.param(1e303, id="1e303"),
        pytest.param(-1.0, id="negative"),
        pytest.param(-1e12, id="very-negative"),
        pytest.param(NOW_US / 1e6 + 86_400.000001, id="just-over-a-day-ahead"),
        pytest.param(NOW_US / 1e6 - 86_400.000001, id="just-over-a-day-behind"),
    ],
)
def test_an_implausible_first_timestamp_is_placed_at_now(timestamp: float) -> None:
    """0.0, 1e12, 1e300 were once accepted as such (a read with fill_gaps then
    built decades of zeros: MemoryError) and refused negatives. Now the audio is kept,
    placed at the pusher's clock, and counted."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    chunks = chunker.push(bytes(2 * rate), timestamp_to_us(timestamp), now_us=NOW_US)
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [(NOW_US, rate)]
    assert chunker.implausible_timestamps == 1


@pytest.mark.parametrize("offset_us", [WINDOW_US, -WINDOW_US, 0])
def test_timestamps_within_the_window_are_kept_as_pushed(offset_us: int) -> None:
    chunker = make(8000, 8000)
    [chunk] = chunker.push(bytes(2 * 8000), NOW_US + offset_us, now_us=NOW_US)
    assert chunk.start_us == NOW_US + offset_us and chunker.implausible_timestamps == 0


def test_a_negative_timestamp_is_implausible_even_inside_the_window() -> None:
    chunker = make(8000, 8000)
    [chunk] = chunker.push(bytes(2 * 8000), -1, now_us=0)  # a pusher clock at 1970
    assert chunk.start_us == 0 and chunker.implausible_timestamps == 1


def test_a_stray_timestamp_inside_a_run_continues_it() -> None:
    """0.0 in the middle of a conversation: the audio stays where it belongs (no 55-year
    gap for the reader to fill); plausible pushes after it continue the same run."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    second = bytes(2 * rate)
    chunks = chunker.push(second, ANCHOR_US, now_us=ANCHOR_US)
    chunks += chunker.push(second, 0, now_us=at(rate, rate) + 30_000)  # arrives 30 ms late
    chunks += chunker.push(second, at(2 * rate, rate), now_us=at(2 * rate, rate))
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [(ANCHOR_US, 3 * rate)]
    assert chunker.runs == 1 and chunker.implausible_timestamps == 1
    assert len(reader(chunks, rate, fill_gaps=True)) == 2 * 3 * rate


def test_implausible_audio_arriving_faster_than_real_time_is_not_a_jump_back() -> None:
    """A device stuck in 1970 sends a 10 s backlog at once: the pusher's clock barely
    moves, but the audio continues the run instead of overlapping itself."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    chunks: list[RawChunk] = []
    for i in range(500):  # 10 s of 20 ms frames within 1 ms of pusher time
        chunks += chunker.push(bytes(2 * 160), 1_000_000 + i * 20_000, now_us=NOW_US + i)
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [
        (NOW_US, 5 * rate),
        (at(5 * rate, rate, NOW_US), 5 * rate),
    ]
    assert chunker.runs == 1 and chunker.implausible_timestamps == 500


def test_implausible_audio_after_a_pause_starts_a_new_run_at_now() -> None:
    """Placed by the pusher's clock, a pause longer than the tolerance (the audio arrives
    later than the sample clock allows) starts a new run at the pusher's time."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    chunks = chunker.push(bytes(2 * rate), 1_000_000, now_us=NOW_US)
    later = NOW_US + 3_000_000  # 1 s of audio, then 3 s of pusher time
    chunks += chunker.push(bytes(2 * rate), 2_000_000, now_us=later)
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [(NOW_US, rate), (later, rate)]
    assert chunker.runs == 2 and chunker.implausible_timestamps == 2


def test_after_an_implausible_start_a_synced_clock_places_the_run() -> None:
    """The device's first push says 1970, then NTP syncs: the run's audio, not yet cut into
    a chunk, takes its time from the first plausible push (the device's clock, 80 ms
    before the pusher's here) and ends where that push starts: one run."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    chunks = chunker.push(bytes(2 * rate), 1_000_000, now_us=NOW_US)
    synced = at(rate, rate) - 80_000  # the device's capture time: 80 ms before arrival
    chunks += chunker.push(bytes(2 * rate), synced, now_us=at(rate, rate))
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [(synced - 1_000_000, 2 * rate)]
    assert chunker.runs == 1 and chunker.implausible_timestamps == 1


def test_a_pause_before_the_first_plausible_push_is_kept() -> None:
    """A live device starts in 1970, is silent for ten minutes, then pushes with a synced
    clock: the pusher's clock saw the pause, so the first second stays where it arrived
    (shifted by the device's offset, -30 ms) and the pause stays a gap."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    chunks = chunker.push(bytes(2 * rate), 1_000_000, now_us=NOW_US)
    resumed = NOW_US + 1_000_000 + 10 * 60 * 1_000_000
    chunks += chunker.push(bytes(2 * rate), resumed, now_us=resumed + 30_000)
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [
        (NOW_US - 30_000, rate),
        (resumed, rate),
    ]
    assert chunker.runs == 2 and chunker.implausible_timestamps == 1


OFFLINE_US = 2 * 3600 * 1_000_000  # a device syncing audio it recorded two hours ago


def test_a_stray_timestamp_after_offline_audio_continues_the_sample_clock() -> None:
    """Timestamps two hours old are plausible (inside the window) and anchor the run; a
    stray 0.0 among them says nothing about time, so its audio continues the run instead
    of starting one at the pusher's clock: 11 s of audio read back as 11 s, not 7,201 s."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    recorded = NOW_US - OFFLINE_US
    chunks = chunker.push(bytes(2 * 5 * rate), recorded, now_us=NOW_US)
    chunks += chunker.push(bytes(2 * rate), 0, now_us=NOW_US + 10_000)
    chunks += chunker.push(bytes(2 * 5 * rate), at(6 * rate, rate, recorded), now_us=NOW_US)
    chunks += chunker.flush()
    assert [c.start_us for c in chunks] == [at(k * 5 * rate, rate, recorded) for k in range(3)]
    assert chunker.runs == 1 and chunker.implausible_timestamps == 1
    assert len(reader(chunks, rate, fill_gaps=True)) == 2 * 11 * rate


@pytest.mark.parametrize(
    ("anchored_at_us", "now_us", "pause_us"),
    [
        pytest.param(
            NOW_US - OFFLINE_US, NOW_US, OFFLINE_US - 1_000_000, id="pusher-two-hours-ahead"
        ),
        pytest.param(NOW_US - OFFLINE_US, NOW_US - 2 * OFFLINE_US, 0, id="pusher-two-hours-behind"),
        pytest.param(
            NOW_US - OFFLINE_US,
            NOW_US - OFFLINE_US + 3_000_000,
            2_000_000,
            id="pusher-after-a-pause",
        ),
        pytest.param(NOW_US, NOW_US, 0, id="offline-device-pushing-at-once"),
        pytest.param(NOW_US, NOW_US + 3_000_000, 2_000_000, id="offline-device-after-a-pause"),
    ],
)
def test_implausible_timestamps_after_a_pushed_anchor_follow_the_devices_offset(
    anchored_at_us: int, now_us: int, pause_us: int
) -> None:
    """The run is anchored by a push of 2-hour-old audio that reached the pusher at
    ``anchored_at_us``: the device's offset from the pusher's clock is 0 (a live device) or
    -2 h (audio recorded offline). Implausible pushes are placed at the pusher's clock
    shifted by that offset, never before the sample clock: they continue the run unless
    the shifted clock is past it by more than the tolerance (a pause of real time, kept as
    a gap); a pusher's clock hours from the device's is no pause."""
    rate = 8000
    chunker = make(rate, rate)
    recorded = NOW_US - OFFLINE_US
    chunks = chunker.push(bytes(2 * rate), recorded, now_us=anchored_at_us)
    for i in range(3):
        chunks += chunker.push(bytes(2 * rate), -1 if i % 2 else 0, now_us=now_us + i)
    assert [c.start_us for c in chunks] == [
        at(k * rate, rate, recorded) + (pause_us if k else 0) for k in range(4)
    ]
    assert chunker.runs == 1 + bool(pause_us) and chunker.implausible_timestamps == 3


def test_a_run_re_anchored_by_a_pushed_timestamp_then_continues_through_stray_ones() -> None:
    """The rule follows the current run's anchor: a session that started in 1970 (placed
    by the pusher's clock, its second already cut into a chunk) and then pushes an old but
    plausible time has a run of its own time; a stray 0.0 after that continues it rather
    than jumping to the pusher's clock."""
    rate = 8000
    chunker = make(rate, rate)
    chunks = chunker.push(bytes(2 * rate), 1_000_000, now_us=NOW_US)  # 1970: pusher's clock
    recorded = NOW_US - OFFLINE_US
    chunks += chunker.push(bytes(2 * rate), recorded, now_us=NOW_US + 1_000_000)
    chunks += chunker.push(bytes(2 * rate), 0, now_us=NOW_US + 2_000_000)
    assert [c.start_us for c in chunks] == [NOW_US, recorded, at(rate, rate, recorded)]
    assert chunker.runs == 2 and chunker.implausible_timestamps == 2


PAUSE_US = 10 * 60 * 1_000_000  # ten minutes without audio (nobody spoke, a device off)


@pytest.mark.parametrize("switch", [False, True], ids=["same-conversation", "next-conversation"])
def test_a_pause_after_a_live_devices_clock_resets_is_kept(switch: bool) -> None:
    """A wearable streams live (its timestamps agree with the pusher's clock), reboots
    into 1970 and keeps streaming; ten minutes later someone speaks again. The pusher's
    clock is the only time there is for that audio, and for this device it agrees with
    the run's: the audio belongs ten minutes later, as it would had the session started
    in 1970 (test_implausible_audio_after_a_pause_starts_a_new_run_at_now)."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    chunks = chunker.push(bytes(2 * rate), NOW_US, now_us=NOW_US + 30_000)  # live, 30 ms late
    chunks += chunker.push(bytes(2 * rate), 4_000_000, now_us=NOW_US + 1_030_000)  # rebooted
    if switch:
        chunks += chunker.flush()  # switch_conversation: the next one starts after the pause
    resumed = NOW_US + 2_000_000 + PAUSE_US
    chunks += chunker.push(bytes(2 * rate), 5_000_000, now_us=resumed + 30_000)
    chunks += chunker.flush()
    assert abs(chunks[-1].start_us - resumed) <= TOLERANCE_US  # placed late by the delay
    assert chunker.implausible_timestamps == 2


def test_a_stray_first_timestamp_before_offline_audio_stays_with_it() -> None:
    """An offline sync whose first push is stamped 0.0: that second, not yet cut into a
    chunk, takes its time from the 2-hour-old push after it and ends where it starts, so
    11 s read back as 11 s (placed by the pusher's clock, as 7,201 s)."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    recorded = NOW_US - OFFLINE_US
    chunks = chunker.push(bytes(2 * rate), 0, now_us=NOW_US)
    chunks += chunker.push(bytes(2 * 10 * rate), recorded + 1_000_000, now_us=NOW_US + 10_000)
    chunks += chunker.flush()
    assert [c.start_us for c in chunks] == [at(k * 5 * rate, rate, recorded) for k in range(3)]
    assert sum(c.sample_count for c in chunks) == 11 * rate
    assert len(reader(chunks, rate, fill_gaps=True)) == 2 * 11 * rate
    assert chunker.runs == 1 and chunker.implausible_timestamps == 1


def test_a_gap_an_offline_syncs_stall_left_closes_when_the_audio_after_it_is_continuous() -> None:
    """An offline sync (2 h behind) stalls 3 s while a push is stamped 0.0: the pusher's
    clock says it fell 2 s behind, a gap. The next push's own (plausible) time shows the
    audio went on without one: the gap's run, not cut yet, is re-placed where it belongs."""
    rate = 8000
    chunker = make(rate, 5 * rate)
    recorded = NOW_US - OFFLINE_US
    chunks = chunker.push(bytes(2 * rate), recorded, now_us=NOW_US)
    chunks += chunker.push(bytes(2 * rate), 0, now_us=NOW_US + 3_000_000)  # after a stall
    chunks += chunker.push(bytes(2 * rate), recorded + 2_000_000, now_us=NOW_US + 3_010_000)
    chunks += chunker.flush()
    assert [(c.start_us, c.sample_count) for c in chunks] == [
        (recorded, rate),  # closed at the gap the stall looked like
        (recorded + 1_000_000, 2 * rate),  # re-placed: continuous after all
    ]
    assert len(reader(chunks, rate, fill_gaps=True)) == 2 * 3 * rate


@pytest.mark.parametrize("cut_by", ["a-full-chunk", "a-conversation-switch"])
def test_a_chunk_cut_before_the_first_plausible_push_keeps_its_time(cut_by: str) -> None:
    """The bound of the re-placement: a chunk already cut (a full one, or the one a
    conversation switch closed) is on its way to Redis with its time; the plausible push
    then judges against the sample clock, and 2-hour-old audio starts a run of its own."""
    rate = 8000
    chunker = make(rate, rate if cut_by == "a-full-chunk" else 5 * rate)
    chunks = chunker.push(bytes(2 * rate), 0, now_us=NOW_US)
    if cut_by == "a-conversation-switch":
        chunks += chunker.flush()
    recorded = NOW_US - OFFLINE_US
    chunks += chunker.push(bytes(2 * rate), recorded, now_us=NOW_US + 10_000)
    chunks += chunker.flush()
    assert [c.start_us for c in chunks] == [NOW_US, recorded]
    assert chunker.runs == 2 and chunker.implausible_timestamps == 1


@pytest.mark.parametrize(
    ("tolerance_us", "window_us"),
    [(0, WINDOW_US), (-1, WINDOW_US), (TOLERANCE_US, TOLERANCE_US)],
)
def test_the_chunker_refuses_a_tolerance_outside_the_window(
    tolerance_us: int, window_us: int
) -> None:
    with pytest.raises(ValueError, match="tolerance_us"):
        Chunker(8000, 8000, tolerance_us=tolerance_us, window_us=window_us)


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
        make(16000, 100).push(pcm, ANCHOR_US, now_us=NOW_US)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pcm",
    [
        pytest.param(bytearray(b"\x01\x02"), id="bytearray"),
        pytest.param(memoryview(b"\x01\x02"), id="memoryview"),
    ],
)
def test_push_accepts_bytes_like(pcm: bytes) -> None:
    [chunk] = make(16000, 1).push(pcm, ANCHOR_US, now_us=NOW_US)
    assert chunk.pcm == b"\x01\x02"


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(-math.inf, id="minus-inf"),
        pytest.param("1700000000", id="str"),
        pytest.param(None, id="none"),
        pytest.param(True, id="bool"),
    ],
)
def test_bad_timestamps_are_refused(timestamp: object) -> None:
    """Not a finite number: refused. Absurd numbers are the chunker's to judge (kept)."""
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
        pytest.param(-1, -1_000_000, id="negative"),
        pytest.param(1e300, round(1e300 * 1_000_000), id="1e300"),
        pytest.param(1e303, int(1e303) * 1_000_000, id="1e303-overflows-a-float-in-us"),
    ],
)
def test_timestamp_to_us(timestamp: float, us: int) -> None:
    assert timestamp_to_us(timestamp) == us


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=700),  # bytes pushed (0: a switch instead)
            # where the timestamp is against the sample clock, µs: the tolerance's edges,
            # past them, and a stand-in for an implausible time (None)
            st.one_of(
                st.sampled_from([0, 1, -1, TOLERANCE_US, -TOLERANCE_US]),
                st.sampled_from([TOLERANCE_US + 1, -TOLERANCE_US - 1, 5_000_000, -5_000_000]),
                st.integers(min_value=-2 * TOLERANCE_US, max_value=2 * TOLERANCE_US),
                st.none(),
            ),
            # the pusher's clock: time passing (µs), or at the window's edges from the push
            st.one_of(
                st.sampled_from([0, 20_000, WINDOW_US + 1]),
                st.sampled_from(["-window", "+window", "-window-1", "+window+1"]),
            ),
        ),
        max_size=40,
    ),
    rate=st.sampled_from([8000, 16000]),
)
def test_bytes_and_bytearray_pushes_cut_the_same_chunks(
    steps: list[tuple[int, int | None, int | str]], rate: int
) -> None:
    """A push of ``bytes`` that continues a run on time takes a short path; whatever the
    timestamps (at the tolerance's and the window's edges too), it cuts exactly what the
    general path (any other buffer type) cuts, and leaves the chunker in the same state."""
    fast, general = make(rate, 300), make(rate, 300)
    out: dict[str, list[RawChunk]] = {"fast": [], "general": []}
    now = NOW_US
    edges = {"-window": -WINDOW_US, "+window": WINDOW_US}
    edges |= {"-window-1": -WINDOW_US - 1, "+window+1": WINDOW_US + 1}
    for i, (length, offset_us, clock) in enumerate(steps):
        timestamp = 0 if offset_us is None else fast.expected_us + offset_us
        now = timestamp + edges[clock] if isinstance(clock, str) else now + clock
        if not length:
            out["fast"] += fast.flush()
            out["general"] += general.flush()
            continue
        data = bytes((i * 31 + k) % 256 for k in range(length))
        out["fast"] += fast.push(data, timestamp, now_us=now)
        # bytearray: accepted (as memoryview) though typed bytes, and never the short path
        out["general"] += general.push(bytearray(data), timestamp, now_us=now)  # type: ignore[arg-type]
        assert fast.expected_us == general.expected_us
        assert (fast.runs, fast.implausible_timestamps, fast.dangling_byte) == (
            general.runs,
            general.implausible_timestamps,
            general.dangling_byte,
        )
    out["fast"] += fast.flush()
    out["general"] += general.flush()
    assert summary(out["fast"]) == summary(out["general"])
