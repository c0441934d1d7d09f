"""Shared helpers of the unit tests: test signals, and an independent Ogg Opus encoder/decoder.

The independent side is PyAV (FFmpeg with libopus and FFmpeg's own Ogg muxer/demuxer), so
the tests check audiosync's bytes against a second implementation, not against itself.
"""

from __future__ import annotations

import io
from typing import Literal

import av
import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]


def sine(samples: int, rate: int, *, freq: float = 440.0, amplitude: float = 0.3) -> Int16Array:
    t = np.arange(samples, dtype=np.float64) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def chirp(samples: int, rate: int, *, low: float = 200.0, high: float = 3000.0) -> Int16Array:
    """A linear sweep from ``low`` to ``min(high, rate / 3)`` Hz: no period, so one best lag."""
    top = min(high, rate / 3)
    t = np.arange(samples, dtype=np.float64) / rate
    duration = samples / rate
    phase = 2 * np.pi * (low * t + (top - low) * t * t / (2 * duration))
    return np.round(0.3 * 32767 * np.sin(phase)).astype(np.int16)


def sine_pcm(samples: int, rate: int, *, freq: float = 440.0) -> bytes:
    """PCM16LE mono of a sine."""
    return sine(samples, rate, freq=freq).astype("<i2").tobytes()


def pcm_to_array(pcm: bytes) -> Int16Array:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16)


def av_encode_ogg_opus(
    samples: Int16Array,
    *,
    rate: int = 48000,
    channels: int = 1,
    bit_rate: int | None = None,
    page_duration_us: int | None = None,
) -> bytes:
    """An Ogg Opus file written by FFmpeg (libopus + FFmpeg's Ogg muxer), in memory."""
    layout = "mono" if channels == 1 else "stereo"
    options = {} if page_duration_us is None else {"page_duration": str(page_duration_us)}
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg", options=options) as out:
        stream = out.add_stream("libopus", rate=rate, layout=layout)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        frame_samples = rate // 50
        interleaved = np.repeat(samples, channels)
        for start in range(0, len(samples), frame_samples):
            block = interleaved[start * channels : (start + frame_samples) * channels]
            frame = av.AudioFrame.from_ndarray(block[None, :], format="s16", layout=layout)
            frame.rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def av_decode(data: bytes, *, decoder: Literal["libopus"] | None = None) -> tuple[int, int]:
    """(sample count per channel, sample rate) as FFmpeg demuxes and decodes ``data``.

    ``decoder=None`` uses FFmpeg's default (its native Opus decoder); ``"libopus"`` runs
    libopus behind FFmpeg's demuxer, with the same pre-skip and end trimming.
    """
    total, rate = 0, 0
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        context = stream.codec_context
        if decoder == "libopus":
            context = av.CodecContext.create("libopus", "r")
            context.extradata = stream.codec_context.extradata
        for packet in container.demux(stream):  # ends with an empty packet that flushes
            for frame in context.decode(packet):
                total += frame.samples
                rate = frame.sample_rate
    return total, rate


def best_correlation(reference: Int16Array, decoded: Int16Array, max_lag: int = 4) -> float:
    """Highest Pearson correlation of the two signals over lags of ``-max_lag..max_lag``."""
    a = reference.astype(np.float64)
    b = decoded.astype(np.float64)
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            x, y = a[: len(a) - lag], b[lag:]
        else:
            x, y = a[-lag:], b[: len(b) + lag]
        n = min(len(x), len(y))
        if n < 2 or np.std(x[:n]) == 0 or np.std(y[:n]) == 0:
            continue
        best = max(best, float(np.corrcoef(x[:n], y[:n])[0, 1]))
    return best
