"""AUDIOSYNC_OPUS_BITRATES and AUDIOSYNC_OPUS_COMPLEXITY: parsing, refusals, and the encoder
taking what it is given (the session passes them:
tests/integration/pusher/test_codec_settings.py)."""

from __future__ import annotations

import pytest

from audiosync_dev.speech import speech_like
from backend_hooks.contract import codec
from backend_hooks.contract.audio_format import (
    DEFAULT_BITRATES,
    DEFAULT_COMPLEXITIES,
    SUPPORTED_RATES,
)
from backend_hooks.contract.errors import ConfigError, InvalidInputError
from backend_hooks.contract.settings import ENV_DEFAULTS, ROLE_VARIABLES, Settings

BITRATES = "AUDIOSYNC_OPUS_BITRATES"
COMPLEXITY = "AUDIOSYNC_OPUS_COMPLEXITY"


def test_defaults_are_the_codec_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.opus_bitrates == DEFAULT_BITRATES == codec.BITRATES
    assert settings.opus_complexities == DEFAULT_COMPLEXITIES == codec.COMPLEXITIES
    assert set(settings.opus_bitrates) == set(settings.opus_complexities) == set(SUPPORTED_RATES)
    for rate in SUPPORTED_RATES:
        encoder = codec.ChunkEncoder(rate)
        assert (encoder.bitrate, encoder.complexity) == (
            DEFAULT_BITRATES[rate],
            DEFAULT_COMPLEXITIES[rate],
        )
        assert codec.ChunkEncoder.from_settings(rate, settings).encode(bytes(3200)) == (
            encoder.encode(bytes(3200))
        )


def test_the_pusher_reads_them_and_the_fleet_does_not() -> None:
    env = {BITRATES: "16000:24000", COMPLEXITY: "3"}
    pusher = Settings.from_env(env, role="pusher")
    assert pusher.opus_bitrates == {**DEFAULT_BITRATES, 16000: 24000}
    assert pusher.opus_complexities == dict.fromkeys(SUPPORTED_RATES, 3)  # one for all
    encoder = codec.ChunkEncoder.from_settings(16000, pusher)
    assert (encoder.bitrate, encoder.complexity) == (24000, 3)
    assert {BITRATES, COMPLEXITY} <= ROLE_VARIABLES["pusher"]
    fleet = Settings.from_env({BITRATES: "nonsense", COMPLEXITY: "99"}, role="fleet")
    assert fleet.opus_bitrates == DEFAULT_BITRATES  # ignored: the fleet does not encode


def test_rates_not_named_keep_their_default() -> None:
    settings = Settings.from_env(
        {BITRATES: " 8000:9000 , 48000:64000 ", COMPLEXITY: "16000:10,12000:0"}
    )
    assert settings.opus_bitrates == {**DEFAULT_BITRATES, 8000: 9000, 48000: 64000}
    assert settings.opus_complexities == {**DEFAULT_COMPLEXITIES, 16000: 10, 12000: 0}
    encoder = codec.ChunkEncoder.from_settings(8000, settings)
    assert (encoder.bitrate, encoder.complexity) == (9000, DEFAULT_COMPLEXITIES[8000])


@pytest.mark.parametrize("value", ["0", "10", "5"])
def test_complexity_range(value: str) -> None:
    complexities = Settings.from_env({COMPLEXITY: value}).opus_complexities
    assert complexities == dict.fromkeys(SUPPORTED_RATES, int(value))


def test_empty_means_default() -> None:
    assert ENV_DEFAULTS[COMPLEXITY] == "8000:4,12000:9,16000:6,24000:9,48000:9"
    settings = Settings.from_env({BITRATES: "", COMPLEXITY: ""})
    assert (settings.opus_bitrates, settings.opus_complexities) == (
        DEFAULT_BITRATES,
        DEFAULT_COMPLEXITIES,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (BITRATES, "16000", "rate:bitrate pairs"),  # a bitrate needs its rate
        (BITRATES, "16000=16000", "rate:bitrate pairs"),
        (BITRATES, "16000:16k", "rate:bitrate pairs"),
        (BITRATES, "16000:16000,", "rate:bitrate pairs"),
        (BITRATES, "16000:-16000", "rate:bitrate pairs"),
        (BITRATES, "16000:16000.5", "rate:bitrate pairs"),
        (BITRATES, "16000:16_000", "rate:bitrate pairs"),
        (BITRATES, "44100:16000", "not an Opus rate"),
        (BITRATES, "16000:5999", "outside 6000-510000"),
        (BITRATES, "16000:510001", "outside 6000-510000"),
        (BITRATES, "16000:12000,16000:24000", "16000 Hz twice"),
        (COMPLEXITY, "11", "outside 0-10"),
        (COMPLEXITY, "16000:11", "outside 0-10"),
        (COMPLEXITY, "-1", "rate:complexity pairs .* or one number for every rate"),
        (COMPLEXITY, "5.0", "or one number for every rate"),
        (COMPLEXITY, "max", "or one number for every rate"),
        (COMPLEXITY, "²", "or one number for every rate"),
        (COMPLEXITY, "16000:5,", "or one number for every rate"),
        (COMPLEXITY, "16000:5,5", "or one number for every rate"),
        (COMPLEXITY, "22050:5", "not an Opus rate"),
        (COMPLEXITY, "8000:4,8000:5", "8000 Hz twice"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env({variable: value}, role="pusher")
    assert variable in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bitrate": 5999}, "outside Opus"),
        ({"bitrate": 16000.0}, "must be an int"),
        ({"bitrate": True}, "must be an int"),
        ({"complexity": 11}, "0 to 10"),
        ({"complexity": -1}, "0 to 10"),
        ({"complexity": "5"}, "must be an int"),
    ],
)
def test_the_encoder_refuses_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        codec.ChunkEncoder(16000, **kwargs)  # type: ignore[arg-type]


def test_complexity_and_bitrate_change_the_encoding() -> None:
    pcm = speech_like(5, 16000, seed=7)

    def encoded(bitrate: int, complexity: int) -> list[bytes]:
        return codec.ChunkEncoder(16000, bitrate=bitrate, complexity=complexity).encode(pcm)

    low, high = encoded(16000, 0), encoded(16000, 10)
    assert len(low) == len(high)  # the same frames ...
    assert low != high  # ... encoded differently
    assert encoded(16000, 10) == high  # deterministic: the difference is the setting
    small, large = encoded(8000, 10), encoded(32000, 10)
    assert sum(map(len, large)) > 2 * sum(map(len, small))
    # Each still decodes to the pushed number of samples.
    for packets in (low, high, small, large):
        out = codec.decode_packets(
            packets, 16000, pre_skip=codec.ChunkEncoder(16000).pre_skip, sample_count=80000
        )
        assert len(out) == len(pcm)
