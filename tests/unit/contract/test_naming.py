"""backend_hooks.contract.naming: new object names, legacy names, extension parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend_hooks.contract import naming
from backend_hooks.contract.errors import UnsupportedFormatError

START_US = 1_700_000_000_125_000
END_US = 1_700_000_060_125_000


def name(data: bytes = b"audio", *, sealed: bool = False, start: int = START_US) -> str:
    return naming.object_name(
        "uid-1", "conv-1", start_us=start, end_us=END_US, sealed=sealed, data=data
    )


def test_object_name_layout() -> None:
    assert name() == (
        f"chunks/uid-1/conv-1/1700000000.125-1700000060.125_{naming.content_digest(b'audio')}.opus"
    )
    assert name(sealed=True).endswith(".opus.enc")


def test_object_name_is_deterministic() -> None:
    assert name(b"same bytes") == name(b"same bytes")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(b"a", b"b", id="one-byte"),
        pytest.param(b"", b"\0", id="empty-vs-zero"),
        pytest.param(bytes(1000), bytes(999) + b"\1", id="last-byte"),
    ],
)
def test_object_name_depends_on_content(a: bytes, b: bytes) -> None:
    assert name(a) != name(b)


def test_digest_is_sha256_prefix() -> None:
    # sha256(b"abc"), the FIPS 180-2 example.
    assert naming.content_digest(b"abc") == "ba7816bf8f01cfea"


@pytest.mark.parametrize(
    ("us", "text"),
    [
        pytest.param(1_700_000_000_999_900, "1700000000.999", id="truncates-9999"),
        pytest.param(1_700_000_000_999_999, "1700000000.999", id="truncates-999999"),
        pytest.param(1_700_000_000_000_999, "1700000000.000", id="truncates-below-1ms"),
        pytest.param(1_700_000_000_125_000, "1700000000.125", id="exact"),
        pytest.param(1_000, "0.001", id="one-ms"),
        pytest.param(0, "0.000", id="epoch"),
        pytest.param(5_000_000, "5.000", id="whole-seconds"),
    ],
)
def test_format_time_truncates(us: int, text: str) -> None:
    assert naming.format_time(us) == text


def test_format_time_refuses_negative() -> None:
    with pytest.raises(ValueError, match="1970"):
        naming.format_time(-1)


def test_name_of_a_start_just_before_a_second() -> None:
    # 1700000000.9999 s: "%.3f" would round to .000 of the next second; names truncate.
    assert "/1700000000.999-" in name(start=1_700_000_000_999_900)


@pytest.mark.parametrize("sealed", [False, True], ids=["opus", "opus-enc"])
@pytest.mark.parametrize("data", [b"", b"chunk bytes"], ids=["empty", "bytes"])
def test_parse_round_trip(sealed: bool, data: bytes) -> None:
    path = name(data, sealed=sealed)
    parsed = naming.parse_object_name(path)
    assert parsed.path == path
    assert parsed.filename == path.rsplit("/", 1)[-1]
    assert parsed.extension == (".opus.enc" if sealed else ".opus")
    assert parsed.start_us == START_US
    assert parsed.end_us == END_US
    assert parsed.digest == naming.content_digest(data)
    assert parsed.is_new
    assert parsed.sealed is sealed
    assert parsed.timestamp == 1_700_000_000.125


@given(
    start=st.integers(min_value=0, max_value=4_000_000_000_000_000),
    length=st.integers(min_value=0, max_value=10**10),
    data=st.binary(max_size=64),
    sealed=st.booleans(),
)
def test_parse_round_trip_property(start: int, length: int, data: bytes, sealed: bool) -> None:
    path = naming.object_name(
        "u", "c", start_us=start, end_us=start + length, sealed=sealed, data=data
    )
    parsed = naming.parse_object_name(path)
    assert parsed.start_us == start - start % 1000
    assert parsed.end_us == (start + length) - (start + length) % 1000
    assert parsed.digest == naming.content_digest(data)
    assert parsed.sealed is sealed


@pytest.mark.parametrize(
    ("filename", "extension", "start_us", "end_us", "sealed"),
    [
        pytest.param("1700000000.125.bin", ".bin", START_US, None, False, id="bin"),
        pytest.param("1700000000.125.enc", ".enc", START_US, None, True, id="enc"),
        pytest.param("1700000000.125.opus", ".opus", START_US, None, False, id="opus"),
        pytest.param("1700000000.125.opus.enc", ".opus.enc", START_US, None, True, id="opus-enc"),
        pytest.param(
            "1.000-2.000.batch.enc", ".batch.enc", 1_000_000, 2_000_000, True, id="batch-enc-range"
        ),
        pytest.param("1.000.batch.bin", ".batch.bin", 1_000_000, None, False, id="batch-bin"),
        pytest.param("1.000.batch.enc", ".batch.enc", 1_000_000, None, True, id="batch-enc"),
        pytest.param(
            "1700000000.000-1700000004.980.batch.bin",
            ".batch.bin",
            1_700_000_000_000_000,
            1_700_000_004_980_000,
            False,
            id="batch-bin-range",
        ),
    ],
)
def test_legacy_names(
    filename: str, extension: str, start_us: int, end_us: int | None, sealed: bool
) -> None:
    parsed = naming.parse_object_name(f"chunks/uid-1/conv-1/{filename}")
    assert parsed.filename == filename
    assert parsed.extension == extension
    assert parsed.start_us == start_us
    assert parsed.end_us == end_us
    assert parsed.digest is None
    assert not parsed.is_new
    assert parsed.sealed is sealed
    assert parsed.timestamp == start_us / 1_000_000


def test_legacy_name_without_directory() -> None:
    assert naming.parse_object_name("1.500.bin").start_us == 1_500_000


@pytest.mark.parametrize(
    ("filename", "stem", "extension"),
    [
        pytest.param("a.batch.enc", "a", ".batch.enc", id="batch-enc-not-enc"),
        pytest.param("a.batch.bin", "a", ".batch.bin", id="batch-bin-not-bin"),
        pytest.param("a.opus.enc", "a", ".opus.enc", id="opus-enc-not-enc"),
        pytest.param("a.opus", "a", ".opus", id="opus"),
        pytest.param("a.enc", "a", ".enc", id="enc"),
        pytest.param("a.bin", "a", ".bin", id="bin"),
    ],
)
def test_split_extension_longest_first(filename: str, stem: str, extension: str) -> None:
    assert naming.split_extension(filename) == (stem, extension)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("chunks/u/c/1700000000.125.wav", id="wav"),
        pytest.param("chunks/u/c/1700000000.125.opus.gz", id="opus-gz"),
        pytest.param("chunks/u/c/1700000000.125", id="no-extension"),
        pytest.param("chunks/u/c/.bin", id="extension-only"),
        pytest.param("chunks/u/c/.opus.enc", id="double-extension-only"),
        pytest.param("chunks/u/c/", id="directory"),
        pytest.param("", id="empty"),
        pytest.param("chunks/u/c/abc.bin", id="junk-stem"),
        pytest.param("chunks/u/c/1700000000.12.bin", id="two-decimals"),
        pytest.param("chunks/u/c/1700000000.1250.bin", id="four-decimals"),
        pytest.param("chunks/u/c/1700000000.bin", id="no-decimals"),
        pytest.param("chunks/u/c/-1.000.bin", id="negative"),
        pytest.param("chunks/u/c/1.000-.bin", id="open-range"),
        pytest.param("chunks/u/c/1.000-2.000-3.000.bin", id="three-numbers"),
        pytest.param("chunks/u/c/ 1.000.bin", id="leading-space"),
        pytest.param("chunks/u/c/1.000.batch.opus", id="batch-opus"),
        pytest.param("chunks/u/c/1.000-2.000_0123456789abcdef.enc", id="new-stem-legacy-ext"),
        pytest.param("chunks/u/c/1.000-2.000_0123456789abcdef.bin", id="new-stem-bin"),
        pytest.param("chunks/u/c/1.000-2.000_0123456789ABCDEF.opus", id="upper-digest"),
        pytest.param("chunks/u/c/1.000-2.000_0123456789abcde.opus", id="short-digest"),
        pytest.param("chunks/u/c/1.000_0123456789abcdef.opus", id="digest-without-end"),
        pytest.param("chunks/u/c/1.000\n.bin", id="newline-before-extension"),
        pytest.param("chunks/u/c/1.000-2.000_0123456789abcdef\n.opus", id="new-name-with-newline"),
        pytest.param("chunks/u/c/\u0661\u0667.\u0661\u0662\u0665.bin", id="arabic-indic-digits"),
        pytest.param("chunks/u/c/\uff11.000.bin", id="fullwidth-digit"),
    ],
)
def test_unknown_names_are_unsupported(path: str) -> None:
    with pytest.raises(UnsupportedFormatError):
        naming.parse_object_name(path)


def test_conversation_prefix() -> None:
    assert naming.conversation_prefix("u", "c") == "chunks/u/c/"
    assert name().startswith(naming.conversation_prefix("uid-1", "conv-1"))


def test_parse_time_us() -> None:
    assert naming.parse_time_us("1700000000.125") == START_US
    assert naming.parse_time_us("0.001") == 1000
