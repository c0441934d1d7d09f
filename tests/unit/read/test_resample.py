"""backend_hooks.read.resample: exact lengths, the signal kept, streaming == one-shot, errors.

Pure (soxr and numpy, no servers).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.errors import InvalidInputError
from backend_hooks.read import resample
from backend_hooks.read.resample import Resampler, resample_pcm16, resampled_length

PAIRS = [(a, b) for a, b in itertools.product(SUPPORTED_RATES, repeat=2) if a != b]
RATE_PAIRS = st.sampled_from(PAIRS)


def pcm_of(samples: npt.ArrayLike) -> bytes:
    return np.asarray(samples).astype("<i2").tobytes()


def samples_of(pcm: bytes) -> npt.NDArray[np.int64]:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def noise(count: int, seed: int = 1, scale: float = 4000.0) -> bytes:
    rng = np.random.default_rng(seed)
    return pcm_of(np.clip(rng.standard_normal(count) * scale, -32768, 32767))


def sine(freq: float, rate: int, seconds: float, amplitude: float) -> bytes:
    t = np.arange(round(rate * seconds)) / rate
    return pcm_of(np.round(amplitude * np.sin(2 * np.pi * freq * t)))


def tone(pcm: bytes, rate: int) -> tuple[float, float]:
    """The dominant frequency (Hz, to the FFT bin) of ``pcm`` and its peak amplitude,
    from a Hann-windowed spectrum of the middle (the edges ring by design)."""
    x = samples_of(pcm).astype(np.float64)
    x = x[len(x) // 8 : len(x) - len(x) // 8]
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window))
    peak = int(np.argmax(spectrum))
    return peak * rate / len(x), 2 * spectrum[peak] / window.sum()


def run(resampler: Resampler, pcm: bytes, cuts: list[int]) -> bytes:
    """``pcm`` fed in blocks ending at the sample offsets ``cuts``, then flushed."""
    out = bytearray()
    start = 0
    for cut in [*sorted(cuts), len(pcm) // 2]:
        out += resampler.feed(pcm[2 * start : 2 * max(cut, start)])
        start = max(cut, start)
    out += resampler.flush()
    return bytes(out)


# --- resampled_length ---------------------------------------------------------------


@given(st.integers(0, 10**12), RATE_PAIRS)
def test_length_is_the_exact_ratio_rounded_half_to_even(
    samples: int, pair: tuple[int, int]
) -> None:
    from_rate, to_rate = pair
    assert resampled_length(samples, from_rate, to_rate) == round(
        Fraction(samples * to_rate, from_rate)
    )


@pytest.mark.parametrize(
    ("samples", "from_rate", "to_rate", "expected"),
    [
        (1, 16000, 8000, 0),  # 0.5 -> 0 (even), where soxr itself gives 1
        (3, 16000, 8000, 2),  # 1.5 -> 2
        (5, 16000, 8000, 2),  # 2.5 -> 2
        (3, 8000, 12000, 4),  # 4.5 -> 4
        (1, 48000, 8000, 0),  # 1/6
        (4, 48000, 8000, 1),  # 2/3
        (80_000, 8000, 16000, 160_000),
        (0, 8000, 48000, 0),
        (12345, 16000, 16000, 12345),
    ],
)
def test_length_examples(samples: int, from_rate: int, to_rate: int, expected: int) -> None:
    assert resampled_length(samples, from_rate, to_rate) == expected


def test_length_rounds_as_the_merger_rounds_a_position() -> None:
    # the merger places a segment at round(offset_us * rate / 1_000_000): Python's round of
    # an integer ratio, halves to even; a run's length is rounded the same way
    for n in range(0, 2000, 7):
        for from_rate, to_rate in PAIRS:
            assert resampled_length(n, from_rate, to_rate) == round(n * to_rate / from_rate)


@pytest.mark.parametrize("samples", [-1, 1.5, True, "10", None])
def test_length_rejects_a_bad_count(samples: object) -> None:
    with pytest.raises(InvalidInputError, match="sample count"):
        resampled_length(samples, 8000, 16000)  # type: ignore[arg-type]


# --- resample_pcm16 -----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3000), RATE_PAIRS)
def test_one_shot_length_is_exact(samples: int, pair: tuple[int, int]) -> None:
    from_rate, to_rate = pair
    out = resample_pcm16(noise(samples, seed=samples), from_rate, to_rate)
    assert len(out) == 2 * resampled_length(samples, from_rate, to_rate)


@pytest.mark.parametrize(("from_rate", "to_rate"), PAIRS)
def test_every_pair_lengths_at_the_half_sample_edges(from_rate: int, to_rate: int) -> None:
    for samples in (0, 1, 2, 3, 5, 159, 160, 161, 1001):
        out = resample_pcm16(noise(samples), from_rate, to_rate)
        assert len(out) == 2 * resampled_length(samples, from_rate, to_rate)


def test_an_8k_sine_keeps_its_frequency_and_amplitude_at_16k() -> None:
    pcm = sine(1000.0, 8000, 2.0, 12000.0)
    out = resample_pcm16(pcm, 8000, 16000)
    freq, amplitude = tone(out, 16000)
    bin_hz = 16000 / (len(out) // 2 * 3 // 4)
    assert abs(freq - 1000.0) <= bin_hz
    assert amplitude == pytest.approx(12000.0, rel=0.01)
    # and sample by sample, it is the same sine at the new rate (edges aside)
    expected = samples_of(sine(1000.0, 16000, 2.0, 12000.0))
    assert np.abs(samples_of(out) - expected)[200:-200].max() <= 4


def test_16k_to_8k_keeps_a_3k_tone_and_removes_a_6k_one() -> None:
    kept = resample_pcm16(sine(3000.0, 16000, 1.0, 10000.0), 16000, 8000)
    freq, amplitude = tone(kept, 8000)
    assert abs(freq - 3000.0) <= 8000 / (len(kept) // 2 * 3 // 4)
    assert amplitude == pytest.approx(10000.0, rel=0.01)
    # above the new Nyquist (4 kHz): filtered out, not folded back to 2 kHz
    aliased = resample_pcm16(sine(6000.0, 16000, 1.0, 10000.0), 16000, 8000)
    assert np.abs(samples_of(aliased))[100:-100].max() < 10


def test_silence_stays_digital_silence() -> None:
    # soxr's own int16 output dithers: zeros would come back as +-1
    for from_rate, to_rate in PAIRS:
        assert resample_pcm16(bytes(2000), from_rate, to_rate) == bytes(
            2 * resampled_length(1000, from_rate, to_rate)
        )


def test_full_scale_overshoot_clips_instead_of_wrapping() -> None:
    square = np.tile(np.r_[np.full(20, 32767), np.full(20, -32768)], 50)
    out = samples_of(resample_pcm16(pcm_of(square), 8000, 48000))
    reference = soxr.resample(square.astype(np.float32) / 32768, 8000, 48000) * 32768
    reference = reference[: len(out)]
    assert (reference > 32767.5).any() and (reference < -32768.5).any()  # it does overshoot
    assert (out[reference > 32767.5] == 32767).all()
    assert (out[reference < -32768.5] == -32768).all()


def test_equal_rates_return_the_same_object() -> None:
    pcm = noise(1000)
    assert resample_pcm16(pcm, 16000, 16000) is pcm
    assert resample_pcm16(bytearray(pcm), 8000, 8000) == pcm
    assert resample_pcm16(memoryview(pcm), 8000, 16000) == resample_pcm16(pcm, 8000, 16000)


def test_odd_length_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="odd length"):
        resample_pcm16(b"\x00\x01\x02", 8000, 16000)
    with pytest.raises(InvalidInputError, match="odd length"):
        resample_pcm16(b"\x00", 16000, 16000)  # equal rates too: the contract is the same


@pytest.mark.parametrize("rate", [44100, 0, -8000, 16000.0, True, None])
def test_unsupported_rates_are_refused(rate: object) -> None:
    with pytest.raises(InvalidInputError, match="supported sample rate"):
        resample_pcm16(b"", rate, 16000)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="supported sample rate"):
        resample_pcm16(b"", 16000, rate)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="supported sample rate"):
        Resampler(rate, 8000)  # type: ignore[arg-type]


def test_a_non_buffer_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="PCM16LE bytes"):
        resample_pcm16([0, 0], 8000, 16000)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="PCM16LE bytes"):
        Resampler(8000, 16000).feed("ab")  # type: ignore[arg-type]


# --- Resampler ----------------------------------------------------------------------


def soxr_one_call(pcm: bytes, from_rate: int, to_rate: int) -> npt.NDArray[np.int64]:
    """The oracle: soxr's own one-shot call on the whole buffer (not its stream, which
    both forms here use), rounded to int16 the way the module documents."""
    x = samples_of(pcm).astype(np.float32) / 32768
    y: npt.NDArray[np.float32] = soxr.resample(x, from_rate, to_rate, quality="HQ") * 32768
    return np.clip(np.rint(y), -32768, 32767).astype(np.int64)


def assert_close_to_oracle(out: bytes, pcm: bytes, from_rate: int, to_rate: int) -> None:
    samples = len(pcm) // 2
    assert len(out) == 2 * resampled_length(samples, from_rate, to_rate)
    oracle = soxr_one_call(pcm, from_rate, to_rate)
    assert abs(len(oracle) - len(out) // 2) <= 1  # soxr rounds halves up; we round to even
    common = min(len(oracle), len(out) // 2)
    if common:
        assert np.abs(samples_of(out)[:common] - oracle[:common]).max() <= 1


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 4000),
    RATE_PAIRS,
    st.lists(st.integers(0, 4000), max_size=8),
)
def test_stream_in_any_blocks_equals_soxr_one_call(
    samples: int, pair: tuple[int, int], cuts: list[int]
) -> None:
    from_rate, to_rate = pair
    pcm = noise(samples, seed=samples + 7)
    streamed = run(Resampler(from_rate, to_rate), pcm, [c for c in cuts if c <= samples])
    assert_close_to_oracle(streamed, pcm, from_rate, to_rate)
    assert len(streamed) == len(resample_pcm16(pcm, from_rate, to_rate))


@pytest.mark.parametrize(("from_rate", "to_rate"), [(8000, 16000), (16000, 8000), (48000, 8000)])
def test_one_shot_across_its_blocks_equals_soxr_one_call(from_rate: int, to_rate: int) -> None:
    # 11 s: two whole BLOCK_SECONDS blocks and a part, so seams fall inside the input
    assert resample.BLOCK_SECONDS * 2 < 11
    pcm = noise(11 * from_rate + 3, seed=from_rate)
    assert_close_to_oracle(resample_pcm16(pcm, from_rate, to_rate), pcm, from_rate, to_rate)


def test_feed_never_returns_more_than_the_run_so_far_allows() -> None:
    pcm = noise(8000)
    resampler = Resampler(16000, 48000)
    returned = 0
    for start in range(0, 8000, 333):
        returned += len(resampler.feed(pcm[2 * start : 2 * (start + 333)])) // 2
        fed = min(start + 333, 8000)
        assert returned <= fed * 3
        assert resampler.samples_in == fed and resampler.samples_out == returned
    assert returned + len(resampler.flush()) // 2 == 24000


class _RunsAhead:
    """A stand-in for soxr's stream that returns 2 samples more than its input allows at
    every block (soxr itself lags; another build might not): the cap must hold them."""

    def __init__(self, ratio: int) -> None:
        self.ratio = ratio

    def resample_chunk(
        self, x: npt.NDArray[np.float32], last: bool = False
    ) -> npt.NDArray[np.float32]:
        return np.zeros(0 if last else len(x) * self.ratio + 2, np.float32)

    def clear(self) -> None:
        pass


def test_feed_holds_back_output_that_runs_ahead_of_the_input() -> None:
    resampler = Resampler(8000, 16000)
    resampler._stream = _RunsAhead(2)
    returned = [len(resampler.feed(bytes(2 * n))) // 2 for n in (3, 1, 5)]
    assert returned == [6, 2, 10]
    assert len(resampler.flush()) == 0  # the 6 held back are over the run's 18


class _Counts:
    """A stand-in stream whose output samples are 1, 2, 3, ... and that returns one sample
    more than the input so far allows at every block, nothing more at the end."""

    def __init__(self, ratio: Fraction) -> None:
        self.ratio, self.fed, self.made = ratio, 0, 0

    def resample_chunk(
        self, x: npt.NDArray[np.float32], last: bool = False
    ) -> npt.NDArray[np.float32]:
        if last:
            return np.zeros(0, np.float32)
        self.fed += len(x)
        count = int(self.fed * self.ratio) + 1 - self.made
        out = np.arange(self.made + 1, self.made + count + 1, dtype=np.float32) / np.float32(32768)
        self.made += count
        return out

    def clear(self) -> None:
        pass


def test_samples_held_back_come_out_in_order_at_flush() -> None:
    resampler = Resampler(16000, 24000)
    resampler._stream = _Counts(Fraction(3, 2))
    first, second = resampler.feed(bytes(2)), resampler.feed(bytes(8))
    assert (len(first) // 2, len(second) // 2) == (1, 6)  # floor(1.5), floor(7.5) - 1
    # 5 samples fed: round(7.5) = 8 out in all, the last one held back until the flush
    out = first + second + resampler.flush()
    assert samples_of(out).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_conversion_rounds_half_to_even_and_clips() -> None:
    values = np.array([0.5, 1.5, 2.5, -0.5, -1.6, 1e6, -1e6], np.float32) / np.float32(32768)
    assert samples_of(resample._to_pcm16(values)).tolist() == [0, 2, 2, 0, -2, 32767, -32768]


def test_stream_blocks_of_one_sample_give_the_same_sine() -> None:
    pcm = sine(440.0, 8000, 0.5, 8000.0)
    streamed = run(Resampler(8000, 16000), pcm, list(range(1, 4000)))
    assert np.abs(samples_of(streamed) - samples_of(resample_pcm16(pcm, 8000, 16000))).max() <= 1


def test_no_click_at_block_boundaries() -> None:
    # a contiguous sine fed in 20 ms blocks: no sample departs from the sine at a seam
    pcm = sine(700.0, 8000, 1.0, 10000.0)
    streamed = samples_of(run(Resampler(8000, 16000), pcm, list(range(160, 8000, 160))))
    expected = samples_of(sine(700.0, 16000, 1.0, 10000.0))
    assert np.abs(streamed - expected)[200:-200].max() <= 4


def test_flush_resets_for_a_new_run() -> None:
    first, second = noise(3001, seed=1), noise(2000, seed=2)
    resampler = Resampler(24000, 16000)
    run(resampler, first, [1000])
    assert (resampler.samples_in, resampler.samples_out) == (0, 0)
    again = run(resampler, second, [999])
    assert again == run(Resampler(24000, 16000), second, [999])


def test_flush_of_an_empty_run_and_empty_feeds() -> None:
    resampler = Resampler(8000, 16000)
    assert resampler.flush() == b""
    assert resampler.feed(b"") == b""
    assert resampler.flush() == b""


def test_equal_rates_pass_blocks_through() -> None:
    pcm = noise(500)
    resampler = Resampler(16000, 16000)
    assert resampler.feed(pcm) is pcm
    assert resampler.feed(bytearray(pcm[:10])) == pcm[:10]
    assert resampler.flush() == b""


def test_feed_of_an_odd_block_is_refused() -> None:
    resampler = Resampler(8000, 16000)
    resampler.feed(bytes(10))
    with pytest.raises(InvalidInputError, match="odd length"):
        resampler.feed(b"\x00")
    # the refused block was not counted
    assert resampler.samples_in == 5


def test_the_bench_runs_quick() -> None:
    # bench/bench_resample.py --quick end to end (it checks every length it produces)
    script = Path(__file__).resolve().parents[3] / "bench" / "bench_resample.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "| 8000 -> 16000 | HQ | resample_pcm16 |" in done.stdout
    assert "int16 output within 0 LSB" in done.stdout
