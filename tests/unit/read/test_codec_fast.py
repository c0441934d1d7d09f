"""codec's direct libopus path (ctypes ``opus_decode``) against opuslib, sample for sample,
and its fallback when the library lacks a symbol."""

from __future__ import annotations

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks.contract import codec
from backend_hooks.contract.errors import FormatError


@pytest.mark.parametrize("rate", [8000, 12000, 16000, 24000, 48000])
def test_the_direct_path_decodes_exactly_what_opuslib_does(rate: int) -> None:
    assert codec._FAST is not None, "libopus without opus_decode?"
    encoder = codec.ChunkEncoder(rate)
    pcm = speech_like(0.5, rate, seed=rate)
    packets = encoder.encode(pcm)
    samples = len(pcm) // 2
    for pre_skip, count in ((encoder.pre_skip, samples), (0, samples), (7, 10)):
        fast = codec.decode_packets(packets, rate, pre_skip=pre_skip, sample_count=count)
        slow = codec.decode_packets_opuslib(packets, rate, pre_skip=pre_skip, sample_count=count)
        assert fast == slow and len(fast) == 2 * count
        assert fast != bytes(len(fast)) or count < 100  # audio, not silence


def test_packets_holding_far_more_than_asked_are_all_decoded() -> None:
    encoder = codec.ChunkEncoder(16000)
    packets = encoder.encode(speech_like(2, 16000, seed=3))  # 100 packets
    fast = codec.decode_packets(packets, 16000, pre_skip=0, sample_count=1)  # the buffer grows
    assert fast == codec.decode_packets_opuslib(packets, 16000, pre_skip=0, sample_count=1)
    broken = [*packets, b"\xff\xff\xff"]  # a corrupt last packet is still an error
    for decode in (codec.decode_packets, codec.decode_packets_opuslib):
        with pytest.raises(FormatError, match="does not decode"):
            decode(broken, 16000, pre_skip=0, sample_count=1)


def test_too_few_samples_is_the_same_error_on_both_paths() -> None:
    packets = codec.ChunkEncoder(8000).encode(speech_like(0.1, 8000, seed=4))
    for decode in (codec.decode_packets, codec.decode_packets_opuslib):
        with pytest.raises(FormatError, match=r"hold \d+ samples, 100000 expected"):
            decode(packets, 8000, pre_skip=0, sample_count=100_000)


def test_a_library_without_opus_decode_falls_back_to_opuslib() -> None:
    class NoDecode:
        def __getitem__(self, name: str) -> object:
            raise AttributeError(name)

    assert codec._load_fast(NoDecode()) is None
