"""backend_hooks.contract.legacy_pcm: the rate rule (docs/FORMATS.md §6), record framing, odd bytes.

Pure; the same objects in the real bucket are tests/integration/read/test_legacy_pcm.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backend_hooks.contract import envelope, legacy_pcm, naming
from backend_hooks.contract.errors import FormatError, SampleRateUnknownError
from tests.legacy_objects import filename, legacy_bytes

T0 = 1_700_000_000.0
SECRET = b"legacy-pcm-unit-secret-0123456789abcdef"


def raw(
    ext: str, start: float, *chunk_bytes: int, last: float | None = None
) -> legacy_pcm.RawObject:
    name = naming.parse_object_name(f"chunks/u/c/{filename(start, ext, last)}")
    return legacy_pcm.RawObject(name, tuple(chunk_bytes))


def bins(byte_count: int, spacing: float, n: int, ext: str = ".bin") -> list[legacy_pcm.RawObject]:
    return [raw(ext, T0 + i * spacing, byte_count) for i in range(n)]


def infer(objects: list[legacy_pcm.RawObject]) -> int:
    return legacy_pcm.infer_sample_rate(objects, conversation="conversation c of user u")


@pytest.mark.parametrize(
    ("objects", "rate"),
    [
        pytest.param(bins(80_000, 5.0, 4), 8000, id="80000-bytes-per-5s-is-8k"),
        pytest.param(bins(160_000, 5.0, 4), 16000, id="160000-bytes-per-5s-is-16k"),
        pytest.param(bins(160_000, 5.0, 2, ".enc"), 16000, id="two-enc"),
        pytest.param(bins(80_001, 5.0, 3), 8000, id="odd-lengths"),
        pytest.param(
            [raw(".bin", T0 + t, 160_000) for t in (0, 5.03, 9.98, 15.0)], 16000, id="jitter"
        ),
        pytest.param(  # a 5 s gap after one chunk implies 8 kHz for that pair: outvoted
            [raw(".bin", T0 + t, 160_000) for t in (0, 5, 15, 20, 25)], 16000, id="16k-one-gap"
        ),
        pytest.param(  # the duplicate at T0 + 5 (.bin and .enc) is no evidence
            [*bins(80_000, 5.0, 3), raw(".enc", T0 + 5, 80_000)], 8000, id="duplicate"
        ),
        pytest.param(  # a single batch object tells its rate by its records and its name
            [raw(".batch.enc", T0, 160_000, 160_000, 80_000, last=T0 + 10)],
            16000,
            id="batch-enc-alone",
        ),
        pytest.param(
            [raw(".batch.bin", T0, 400_000, last=T0 + 20), raw(".bin", T0 + 25, 80_000)],
            8000,
            id="batch-bin-then-bin",
        ),
        pytest.param(bins(240_000, 5.0, 3), 24000, id="24k"),
        pytest.param(  # the .bin at T0 + 10 is a copy of the batch's last chunk: not after it
            [
                raw(".batch.bin", T0, 480_000, last=T0 + 10),
                raw(".bin", T0 + 10, 160_000),
                raw(".bin", T0 + 15, 160_000),
            ],
            16000,
            id="batch-then-a-copy-of-its-last-chunk",
        ),
    ],
)
def test_the_rate_is_told_by_bytes_over_spacing(
    objects: list[legacy_pcm.RawObject], rate: int
) -> None:
    assert infer(objects) == rate


@pytest.mark.parametrize(
    ("objects", "match"),
    [
        pytest.param(
            [raw(".bin", T0, 80_000)], "1 legacy raw-PCM object.*no evidence", id="single"
        ),
        pytest.param(
            [raw(".bin", T0, 80_000), raw(".enc", T0, 80_000)], "no evidence", id="same-start-only"
        ),
        pytest.param(  # a 12-record .batch.bin alone: no record boundaries to measure
            [raw(".batch.bin", T0, 960_000, last=T0 + 55)], "no evidence", id="batch-bin-alone"
        ),
        pytest.param(bins(100_000, 5.0, 3), r"fits none of .*10000 Hz", id="fits-nothing"),
        pytest.param(  # one pair 8k, one 16k: a tie
            [raw(".bin", T0, 80_000), raw(".bin", T0 + 5, 160_000), raw(".bin", T0 + 10, 1)],
            "equally often",
            id="tie",
        ),
        pytest.param(  # 16 kHz with one 2 s overlap: 26667 Hz for that pair
            [raw(".bin", T0 + t, 160_000) for t in (0, 5, 10, 13, 18)],
            r"inconsistent spacing.*most fit 16000 Hz.*1 hold more",
            id="overlap",
        ),
    ],
)
def test_a_rate_that_cannot_be_told_is_a_typed_error_naming_what_was_seen(
    objects: list[legacy_pcm.RawObject], match: str
) -> None:
    with pytest.raises(SampleRateUnknownError, match=match) as caught:
        infer(objects)
    assert "conversation c of user u" in str(caught.value)
    assert "pass sample_rate=" in str(caught.value)


def test_sealed_chunk_lengths_read_the_framing_of_legacy_records() -> None:
    chunks = [bytes(range(256)) * 3 + b"\x01", b"\x02" * 1000]
    data = legacy_bytes(".batch.enc", chunks, secret=SECRET, uid="u")
    assert legacy_pcm.sealed_chunk_lengths(
        lambda at, n: data[at : at + n], len(data), "x.batch.enc"
    ) == [769, 1000]
    keys = envelope.UserKeys(SECRET)  # the helper's records open with audiosync's reader
    assert [r.plaintext for r in envelope.open_records(keys, "u", data)] == chunks


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        pytest.param(lambda d: d[:-1], "truncated", id="truncated-body"),
        pytest.param(lambda d: d + b"\x00\x00", "header truncated", id="trailing-bytes"),
        pytest.param(lambda d: b"\x01" + d[1:], "version byte 0x01", id="v1-byte"),
        pytest.param(lambda d: b"\x00\x00\x00\x05" + d[4:], "body of 5 bytes", id="short-n"),
        pytest.param(lambda d: b"", "empty", id="empty"),
    ],
)
def test_broken_framing_names_the_object_and_the_record(
    cut: Callable[[bytes], bytes], match: str
) -> None:
    data = legacy_bytes(".enc", [b"\x03" * 100], secret=SECRET, uid="u")
    broken = cut(data)
    with pytest.raises(FormatError, match=match) as caught:
        legacy_pcm.sealed_chunk_lengths(lambda at, n: broken[at : at + n], len(broken), "p/x.enc")
    assert "p/x.enc" in str(caught.value)


def test_no_odd_length_comes_out() -> None:
    enc = naming.parse_object_name(f"chunks/u/c/{T0:.3f}.enc")
    batch = naming.parse_object_name(f"chunks/u/c/{filename(T0, '.batch.enc', T0 + 1)}")
    assert legacy_pcm.raw_pcm(enc, [b"abc", b"defg"]) == b"abcdef"  # split inside a sample
    assert legacy_pcm.raw_pcm(batch, [b"abc", b"defg"]) == b"abdefg"  # per chunk
    assert legacy_pcm.RawObject(enc, (3, 4)).sample_count == 3
    assert legacy_pcm.RawObject(batch, (3, 4)).sample_count == 3
    assert legacy_pcm.RawObject(batch, (3, 5)).sample_count == 3


def test_kinds() -> None:
    kinds = {
        ext: legacy_pcm.kind_of(naming.parse_object_name(f"{T0:.3f}{ext}"))
        for ext in naming.KNOWN_EXTENSIONS
    }
    new = naming.parse_object_name("1.000-2.000_0123456789abcdef.opus.enc")
    assert legacy_pcm.kind_of(new) == "opus"
    assert kinds == {
        ".batch.enc": "legacy-pcm-batch",
        ".batch.bin": "legacy-pcm-batch",
        ".opus.enc": "legacy-opus",
        ".opus": "legacy-opus",
        ".enc": "legacy-pcm",
        ".bin": "legacy-pcm",
    }


@pytest.mark.parametrize(
    ("filename_", "records", "want"),
    [
        pytest.param(  # back to back: the last record at 1 s, where the first ends
            "1700000000.000-1700000001.000.batch.enc",
            [16000, 8000],
            [(0, 16000), (1.0, 8000)],
            id="continuous",
        ),
        pytest.param(  # the name's last start 20 ms early (jitter): back to back, no trim
            "1700000000.000-1700000000.980.batch.enc",
            [16000, 8000],
            [(0, 16000), (1.0, 8000)],
            id="jitter-early",
        ),
        pytest.param(  # a 1 s pause before the last chunk: it starts where the name says
            "1700000000.000-1700000002.000.batch.enc",
            [16000, 8000],
            [(0, 16000), (2.0, 8000)],
            id="pause",
        ),
        pytest.param(  # three records: the first two back to back, the last at its start
            "1700000000.000-1700000003.000.batch.enc",
            [8000, 8000, 8000],
            [(0, 16000), (3.0, 8000)],
            id="three",
        ),
        pytest.param("1700000000.000.batch.enc", [16000, 8000], [(0, 24000)], id="no-last"),
        pytest.param("1700000000.000.enc", [16001, 7999], [(0, 24000)], id="enc-one-chunk"),
    ],
)
def test_placed_runs_put_a_batch_last_record_at_its_named_start_after_a_pause(
    filename_: str, records: list[int], want: list[tuple[float, int]]
) -> None:
    n = naming.parse_object_name(f"chunks/u/c/{filename_}")
    runs = legacy_pcm.placed_runs(n, [b"\1" * r for r in records], 8000)
    got = [((at - n.start_us) / 1e6, len(pcm)) for at, pcm in runs]
    assert got == want
