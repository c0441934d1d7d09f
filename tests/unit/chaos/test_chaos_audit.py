"""The chaos audit itself (no servers): corruptions it must notice in stored objects."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from audiosync_dev.chaos import ExpectedChunk, audit_run, same_audio
from audiosync_dev.chaos.audit import holds_its_audio, reencoder
from audiosync_dev.speech import speech_like
from backend_hooks.contract import container, naming
from backend_hooks.contract.codec import ChunkEncoder

SPEECH = Path(__file__).resolve().parents[2] / "data" / "speech_16k.wav"


class EmptyRedis:
    """Nothing left in Redis, no quarantine."""

    def zrange(self, *args: object) -> list[bytes]:
        return []

    def scan_iter(self, **kwargs: object) -> list[bytes]:
        return []

    def xrange(self, *args: object, **kwargs: object) -> list[object]:
        return []

    def xlen(self, *args: object) -> int:
        return 0

    def zcard(self, *args: object) -> int:
        return 0


RATE, SID, UID, CID = 16000, "s" * 32, "chaos-u000", "chaos-c000a"
T0, N = 1_700_000_000_000_000, 5 * 16000
PCMS = [speech_like(5.0, RATE, seed=s) for s in range(3)]
EXPECTED = {
    (SID, s): ExpectedChunk(
        SID, s, UID, CID, RATE, "standard", T0 + s * 5_000_000, N, s * N, b"".join(PCMS)
    )
    for s in range(3)
}


def chunk(seq: int, pcm: bytes) -> bytes:
    encoder = ChunkEncoder(RATE)
    info = container.ChunkInfo(SID, seq, T0 + seq * 5_000_000, RATE, len(pcm) // 2)
    return container.build_chunk(info, encoder.encode(pcm), encoder.pre_skip)


def store(*chunks: bytes, end_us: int = T0 + 15_000_000) -> dict[str, bytes]:
    data = b"".join(chunks)
    name = naming.object_name(UID, CID, start_us=T0, end_us=end_us, sealed=False, data=data)
    return {name: data}


def audit(objects: dict[str, bytes]) -> dict[str, int]:
    a = audit_run(EXPECTED, [], objects, EmptyRedis(), None)  # type: ignore[arg-type]
    keys = ("lost", "twice", "mismatched", "wrong_audio", "out_of_order", "empty_objects")
    return {k: getattr(a, k) for k in keys if getattr(a, k)}


def test_correct_object_passes() -> None:
    assert audit(store(*(chunk(s, PCMS[s]) for s in range(3)))) == {}


@pytest.mark.parametrize(
    ("objects", "line"),
    [
        (store(*(chunk(s, PCMS[s]) for s in (2, 1, 0))), "out_of_order"),
        (store(chunk(0, PCMS[2]), chunk(1, PCMS[1]), chunk(2, PCMS[0])), "wrong_audio"),
        (store(*(chunk(s, b"\0" * 2 * N) for s in range(3))), "wrong_audio"),
        (
            {**store(*(chunk(s, PCMS[s]) for s in range(3))), **store(end_us=T0 + 1000)},
            "empty_objects",
        ),
        (store(chunk(0, PCMS[0]), chunk(2, PCMS[2]), end_us=T0 + 15_000_000), "lost"),
    ],
)
def test_corruption_is_noticed(objects: dict[str, bytes], line: str) -> None:
    assert line in audit(objects)


def test_a_pause_that_decodes_to_codec_noise_is_its_audio() -> None:
    quiet = bytes(2 * 1340)  # a short chunk of a pause, cut at a conversation switch
    noise = np.random.default_rng(0).integers(-3, 4, 1340).astype("<i2").tobytes()
    assert same_audio(quiet, noise)
    assert not same_audio(quiet, PCMS[0][: 2 * 1340])  # speech where a pause was pushed
    assert not same_audio(PCMS[0], PCMS[1])  # other speech
    assert same_audio(PCMS[0], PCMS[0])


def _speech_16k() -> np.ndarray:
    with wave.open(str(SPEECH)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def test_a_short_tail_chunk_that_does_not_correlate_holds_its_audio_by_its_encoding() -> None:
    """40 ms of quiet speech decoded from a fresh encoder may not correlate with what was
    pushed (the long chaos run's only failure); its exact re-encoding tells it apart from
    another piece of the speech."""
    speech = _speech_16k()
    reencode = reencoder(lambda rate: ChunkEncoder(rate))
    uncorrelated = []
    for start in range(0, len(speech) - 640, 160):
        piece = speech[start : start + 640]
        if not 50 <= float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) < 400:
            continue
        pushed = piece.tobytes()
        decoded = reencode(pushed, 16000)
        if not same_audio(pushed, decoded):
            uncorrelated.append((start, pushed, decoded))
    assert uncorrelated, "no 40 ms window of the speech fails the correlation any more"
    for start, pushed, decoded in uncorrelated:
        assert holds_its_audio(pushed, decoded, 16000, reencode)
        assert not holds_its_audio(pushed, decoded, 16000, None)
        other = speech[start + 4000 : start + 4640].tobytes()
        assert reencode(other, 16000) != decoded  # the exact check tells another piece apart
