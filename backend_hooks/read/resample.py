"""Pure (no I/O): PCM16LE mono from one supported sample rate to another, with soxr.

The reader merges a conversation at ONE rate (the recording's own, or the caller's
``sample_rate``) and places every segment by its timestamp, so a resampled segment must
have a length the merger can compute before it resamples anything:
``resampled_length(n, from, to) = round(n * to / from)``, rounded half to even exactly as
Python's ``round`` (the rule of ``merge``'s ``round(gap * rate)``), in integer arithmetic so
that no float error creeps in for long runs. soxr's own output may differ from it by a
sample (it rounds halves up); both forms here pad (with zeros) or trim to it exactly.

Two forms, the same filter:

- ``Resampler(from_rate, to_rate)``: ``feed`` blocks of a run of *contiguous* audio,
  ``flush`` at its end (soxr's stream). It holds soxr's filter state and at most a few
  pending samples, so memory is bounded by the caller's block; its output over the run is
  that of soxr's one-shot call on the whole run (equal samples as measured, ±1 in the last
  bit allowed by the tests; the same length exactly), with no click at block boundaries.
  Start a new run (``flush``, then feed again: the ``Resampler`` is reset and reusable, or
  make another) wherever the audio is not contiguous: at a gap filled with silence or left
  out, at an overlap trimmed, at a change of source rate, after a segment that is not
  followed by its successor. Two segments that are not contiguous fed into one run would
  smear the filter across the seam and misplace everything after it by the rounding of
  the first one's length. A new run starts its filter afresh, with the same edges as
  soxr's one-shot call on that stretch alone.
- ``resample_pcm16(pcm, from_rate, to_rate)``: one buffer, through a ``Resampler`` in
  ``BLOCK_SECONDS`` blocks, so its temporaries are the output (twice, while joined) and
  one block's floats, not floats of the whole buffer.

Quality ``HQ`` (soxr's 20-bit-precision preset): the output is 16-bit, and
``bench/bench_resample.py`` measured HQ's error 136 dB down (44 dB under what 16 bits
carry), no int16 sample changed by ``VHQ``, and ``VHQ`` 2-23 % slower
(docs/BENCHMARKS.md, "Resampling").

Samples are processed as float32 (``/ 32768``) and rounded back half to even, clipped to
the int16 range (an upsampled full-scale step overshoots; it must not wrap around). Not
soxr's own int16 I/O: that dithers, so digital silence would come out as ±1 noise.

Only the reader imports this module (``numpy`` and ``soxr``: the ``reader`` extra).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soxr

from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.errors import InvalidInputError

#: soxr's quality preset (see the module docstring for why not ``VHQ``).
QUALITY: Final = "HQ"
#: ``resample_pcm16`` feeds soxr's stream this much input at a time: a block's temporaries
#: stay under 3 MB whatever the length (2.9 MB at 8 -> 48 kHz), and blocks of 1 to 60 s ran
#: 1.5-3x faster than one soxr call on the whole buffer (bench/bench_resample.py).
BLOCK_SECONDS: Final = 5
_SCALE: Final = 32768.0
_INT16_MIN: Final = -32768.0
_INT16_MAX: Final = 32767.0

PcmBuffer = bytes | bytearray | memoryview
_Float32Array = npt.NDArray[np.float32]


def _check_rate(rate: object, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in SUPPORTED_RATES:
        raise InvalidInputError(
            f"{what} {rate!r} is not a supported sample rate; use one of "
            f"{list(SUPPORTED_RATES)} Hz (backend_hooks.contract.audio_format.SUPPORTED_RATES)"
        )
    return rate


def _pcm_bytes(pcm: object, what: str) -> int:
    """The byte length of ``pcm``, which must be a bytes-like buffer of whole samples."""
    if not isinstance(pcm, bytes | bytearray | memoryview):
        raise InvalidInputError(f"{what} must be PCM16LE bytes, not {type(pcm).__name__}")
    size = memoryview(pcm).nbytes
    if size % 2:
        raise InvalidInputError(
            f"{what} has {size} bytes, an odd length: PCM16LE holds whole 2-byte samples; "
            "drop or carry the trailing byte before resampling"
        )
    return size


def resampled_length(samples: int, from_rate: int, to_rate: int) -> int:
    """How many samples ``samples`` at ``from_rate`` become at ``to_rate``:
    ``round(samples * to_rate / from_rate)`` with halves to even (Python's ``round``, as
    the merger rounds positions), computed exactly on integers."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise InvalidInputError(f"sample count {samples!r} must be an int >= 0")
    _check_rate(from_rate, "from_rate")
    _check_rate(to_rate, "to_rate")
    quotient, remainder = divmod(samples * to_rate, from_rate)
    if 2 * remainder > from_rate or (2 * remainder == from_rate and quotient % 2):
        quotient += 1
    return quotient


def _to_float(pcm: PcmBuffer) -> _Float32Array:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    samples *= 1.0 / _SCALE
    return samples


def _to_pcm16(samples: _Float32Array) -> bytes:
    scaled = samples * np.float32(_SCALE)
    np.rint(scaled, out=scaled)
    np.clip(scaled, _INT16_MIN, _INT16_MAX, out=scaled)
    return scaled.astype("<i2").tobytes()


def _fit(pcm: bytes, samples: int) -> bytes:
    """``pcm`` trimmed or zero-padded to exactly ``samples`` samples."""
    have = len(pcm) // 2
    if have > samples:
        return pcm[: 2 * samples]
    if have < samples:
        return pcm + bytes(2 * (samples - have))
    return pcm


def resample_pcm16(pcm: PcmBuffer, from_rate: int, to_rate: int) -> bytes:
    """PCM16LE mono at ``from_rate`` as PCM16LE mono at ``to_rate``, exactly
    ``resampled_length(len(pcm) // 2, from_rate, to_rate)`` samples (one run: ``pcm``
    must be contiguous audio). Equal rates return
    ``pcm`` itself (no copy) when it is ``bytes``. ``InvalidInputError`` for an odd byte
    length or a rate outside ``SUPPORTED_RATES``."""
    size = _pcm_bytes(pcm, "pcm")
    _check_rate(from_rate, "from_rate")
    _check_rate(to_rate, "to_rate")
    if from_rate == to_rate:
        return pcm if isinstance(pcm, bytes) else bytes(pcm)
    resampler = Resampler(from_rate, to_rate)
    view = memoryview(pcm).cast("B")
    block = 2 * from_rate * BLOCK_SECONDS
    pieces = [resampler.feed(view[start : start + block]) for start in range(0, size, block)]
    pieces.append(resampler.flush())
    return b"".join(pieces)


class Resampler:
    """Resamples one run of contiguous PCM16LE mono block by block (soxr's stream).

    ``feed`` returns what is ready (it lags the input by the filter's delay, a few ms);
    ``flush`` ends the run with the rest, so that the run's output totals exactly
    ``resampled_length(samples fed)`` samples, and resets the ``Resampler`` for the next
    run. Start a new run at every discontinuity (module docstring). Equal rates pass the
    blocks through unchanged. Not thread-safe: one run, one caller.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = _check_rate(from_rate, "from_rate")
        self.to_rate = _check_rate(to_rate, "to_rate")
        self._stream: Any = (
            None
            if from_rate == to_rate
            else soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32", quality=QUALITY)
        )
        self._pending = b""  # output held back so that feed never runs ahead of the run
        self.samples_in = 0  # fed since the run began
        self.samples_out = 0  # returned since the run began

    def feed(self, pcm: PcmBuffer) -> bytes:
        """Resample the next block of the run (whole samples; ``InvalidInputError`` for
        an odd length) and return the output that is ready."""
        size = _pcm_bytes(pcm, "the block fed")
        self.samples_in += size // 2
        if self._stream is None:
            self.samples_out += size // 2
            return pcm if isinstance(pcm, bytes) else bytes(pcm)
        if size == 0:
            return b""
        ready = self._pending + _to_pcm16(self._stream.resample_chunk(_to_float(pcm)))
        # Never return more than the floor of the exact length so far: the run's total,
        # rounded at flush, can then always be met by padding or trimming the tail.
        allowed = self.samples_in * self.to_rate // self.from_rate - self.samples_out
        out, self._pending = ready[: 2 * allowed], ready[2 * allowed :]
        self.samples_out += len(out) // 2
        return out

    def flush(self) -> bytes:
        """End the run: the rest of its output, to exactly ``resampled_length`` samples in
        all; then the ``Resampler`` is ready for a new run."""
        target = resampled_length(self.samples_in, self.from_rate, self.to_rate)
        rest = b""
        if self._stream is not None:
            if self.samples_in:
                tail = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
                rest = self._pending + _to_pcm16(tail)
            self._stream.clear()
        rest = _fit(rest, target - self.samples_out)
        self._pending = b""
        self.samples_in = 0
        self.samples_out = 0
        return rest
