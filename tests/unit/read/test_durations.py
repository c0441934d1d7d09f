"""Pure parts of backend_hooks.read.durations: sample counts read from legacy Opus headers, v1
chains, sealed records and metadata, without decoding. In the GCS emulator:
tests/integration/read/test_conversations.py.
"""

from __future__ import annotations

import pytest

from backend_hooks.contract import container, envelope
from backend_hooks.contract.errors import ConfigError, FormatError
from backend_hooks.read import durations
from tests.legacy_objects import v0_record
from tests.legacy_opus import legacy_container

T0_US = 1_700_000_000_000_000
SECRET = b"durations-unit-secret-0123456789abcdef"


def test_the_legacy_header_gives_the_samples_and_a_corrupt_one_is_refused() -> None:
    pcm = bytes(2 * 16000 * 3 + 2 * 100)  # 3 s + 100 samples: the last frame is partial
    data = legacy_container(pcm, packets=[b"\x08"] * 151)
    count = durations.legacy_header_samples(data[:8], "x.opus")
    assert (count.samples, count.sample_rate) == (48100, 16000)
    assert durations.payload_samples(data, "x.opus").seconds == pytest.approx(48100 / 16000)
    odd = legacy_container(bytes(3201), packets=[b"\x08"] * 6)  # an odd byte length
    assert durations.legacy_header_samples(odd[:8], "x.opus").samples == 1600
    with pytest.raises(FormatError, match=r"x\.opus: legacy Opus container of 5 bytes"):
        durations.legacy_header_samples(data[:5], "x.opus")
    lying = legacy_container(pcm, packets=[b"\x08"] * 10)  # 10 packets cannot hold 3 s
    with pytest.raises(FormatError, match=r"x\.opus: legacy Opus header says 96200 bytes"):
        durations.legacy_header_samples(lying[:8], "x.opus")


def _v1_chunk(
    seq: int, start_us: int, samples: int, rate: int
) -> tuple[container.ChunkInfo, bytes]:
    info = container.ChunkInfo("sess-1", seq, start_us, rate, samples)
    frame = rate // 50
    packets = [b"\x08"] * (-(-samples // frame) + 1)  # config 1: 20 ms SILK NB, 1 frame each
    return info, container.build_chunk(info, packets, pre_skip=frame // 2)


def test_new_payloads_and_sealed_objects_are_counted_from_their_headers() -> None:
    first, a = _v1_chunk(0, T0_US, 40000, 8000)
    second, b = _v1_chunk(1, T0_US + 5_000_000, 12000, 8000)
    count = durations.payload_samples(a + b, "n.opus")
    assert (count.samples, count.sample_rate) == (52000, 8000)
    keys = envelope.UserKeys(SECRET)
    sealed = envelope.seal(keys, "u", first, a) + envelope.seal(keys, "u", second, b)
    # v1: the cleartext headers, no key needed.
    assert durations.sealed_samples(sealed, "u", None, "n.opus.enc").samples == 52000
    # v0 (audiosync's first release, or legacy): opened with the user's key.
    legacy = v0_record(SECRET, "u", a) + v0_record(SECRET, "u", b)
    assert durations.sealed_samples(legacy, "u", keys, "n.opus.enc").samples == 52000
    with pytest.raises(ConfigError, match=r"n\.opus\.enc holds v0 sealed records"):
        durations.sealed_samples(legacy, "u", None, "n.opus.enc")
    with pytest.raises(FormatError, match=r"n\.opus\.enc: sealed record 1 \(byte \d+\): truncated"):
        durations.sealed_samples(sealed[:-3], "u", None, "n.opus.enc")


def test_metadata_counts_only_when_it_parses() -> None:
    good = durations.metadata_samples({"audiosync-samples": "80000", "audiosync-rate": "16000"})
    assert good is not None and good.seconds == 5.0
    for bad in (
        {},
        {"audiosync-samples": "80000"},
        {"audiosync-samples": "x", "audiosync-rate": "16000"},
        {"audiosync-samples": "80000", "audiosync-rate": "11025"},
        {"audiosync-samples": "0", "audiosync-rate": "16000"},
    ):
        assert durations.metadata_samples(bad) is None
