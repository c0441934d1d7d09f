"""The pusher's encoder calls libopus directly; its packets are opuslib's, byte for byte."""

from __future__ import annotations

import wave
from pathlib import Path

import opuslib
import pytest

from backend_hooks.contract import codec

SPEECH = Path(__file__).resolve().parents[2] / "data" / "speech_16k.wav"


def speech(rate: int) -> bytes:
    """Real speech at ``rate``: the 16 kHz sample, or every other sample of it (a byte
    comparison needs speech-like signal, not a faithful resampling)."""
    with wave.open(str(SPEECH)) as w:
        pcm: bytes = w.readframes(w.getnframes())
    if rate == 8000:
        pcm = b"".join(pcm[i : i + 2] for i in range(0, len(pcm) - 1, 4))
    return pcm


def opuslib_packets(encoder: codec.ChunkEncoder, pcm: bytes) -> list[bytes]:
    """``encoder.encode`` through opuslib's ``Encoder.encode``, one call per frame."""
    encoder._encoder.reset_state()
    samples = len(pcm) // 2
    frames = -(-(samples + encoder.pre_skip) // encoder.frame)
    padded = pcm + bytes(2 * (frames * encoder.frame - samples))
    return encoder.encode_opuslib_padded(padded, frames)


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize(
    ("bitrate", "complexity"), [(None, None), (6000, 0), (32000, 10), (64000, 5)]
)
def test_direct_libopus_packets_are_opuslibs(
    rate: int, bitrate: int | None, complexity: int | None
) -> None:
    """Every 5 s chunk of the speech sample (and a short tail), encoded by the direct path
    and by opuslib on two encoders with the same settings, gives the same packets."""
    assert codec._FAST_ENCODE is not None  # the direct path is what the pusher runs here
    pcm = speech(rate)
    direct = codec.ChunkEncoder(rate, bitrate=bitrate, complexity=complexity)
    reference = codec.ChunkEncoder(rate, bitrate=bitrate, complexity=complexity)
    step = 2 * 5 * rate
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)] + [pcm[: 2 * 137]]
    for piece in pieces:
        got = direct.encode(piece)
        assert got == opuslib_packets(reference, piece)
        assert len(got) == -(-(len(piece) // 2 + direct.pre_skip) // direct.frame)


def test_the_direct_path_decodes_to_the_chunk() -> None:
    """What the direct path writes decodes (libopus) to as many samples as were pushed."""
    rate = 16000
    pcm = speech(rate)[: 2 * 5 * rate]
    encoder = codec.ChunkEncoder(rate)
    packets = encoder.encode(pcm)
    decoded = codec.decode_packets(
        packets, rate, pre_skip=encoder.pre_skip, sample_count=len(pcm) // 2
    )
    assert len(decoded) == len(pcm)


def test_an_encoder_error_is_opuslibs_error_with_its_code() -> None:
    """A negative return of opus_encode (here OPUS_BAD_ARG: a frame size Opus has not) is
    an ``opuslib.OpusError`` carrying libopus's code, whose message is libopus's: it can
    be logged and shown (a string for a code made ``str()`` raise), never packets."""
    encoder = codec.ChunkEncoder(16000)
    encoder.frame = 100  # 6.25 ms at 16 kHz: no Opus frame size
    with pytest.raises(opuslib.OpusError) as raised:
        encoder.encode(bytes(3200))
    assert raised.value.code == -1  # OPUS_BAD_ARG
    assert "invalid argument" in str(raised.value)
