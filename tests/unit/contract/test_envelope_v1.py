"""backend_hooks.contract.envelope v1: cleartext header, key id, associated data, key rotation.

One test per bad input of sealing and opening (docs/FORMATS.md 3.2, 3.3); the reader's
checks after opening (splices, gaps, swaps) are tests/unit/read/test_sealed_read.py.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract import envelope
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.container import ChunkInfo
from backend_hooks.contract.entries import MAX_SEQ
from backend_hooks.contract.errors import (
    ConfigError,
    DecryptionError,
    FormatError,
    InvalidInputError,
    UnsupportedFormatError,
)
from tests.unit.contract.test_envelope import GOLDEN_RECORD_HEX, hkdf_sha256

SECRET = b"0123456789abcdef0123456789abcdef"
OLD_SECRET = b"an-older-secret-that-still-opens-records"
OTHER_SECRET = b"fedcba9876543210fedcba9876543210"
UID = "user-1"
NONCE = bytes(range(12))
SESSION = "0123456789abcdef0123456789abcdef"
INFO = ChunkInfo(SESSION, 7, 1_700_000_000_125_000, 16000, 80000)
OBJECT = "chunks/user-1/conv/1700000000.125-1700000005.125_0123456789abcdef.opus.enc"

# docs/FORMATS.md §3.2: seal(UserKeys(SECRET), "user-1", INFO, b"hello audiosync",
# nonce=bytes(range(12))); rebuilt from first principles below.
GOLDEN_V1_HEX = (
    "01"  # version
    "52465c28de43aac9"  # key id = HMAC-SHA256(SECRET, b"audiosync envelope key id v1")[:8]
    "20"  # session id length (32)
    "3031323334353637383961626364656630313233343536373839616263646566"  # session id
    "00000007"  # seq
    "00060a2418202848"  # start_us = 1_700_000_000_125_000
    "00003e80"  # rate = 16000
    "00013880"  # samples = 80000
    "0000002b"  # N = 12 + 15 + 16
    "000102030405060708090a0b"  # nonce
    "f86958c1c8f3304ae0ded95dd06fdf"  # ciphertext (15 bytes)
    "388f847d0e286aa676b4924d9f321685"  # tag over header + uid
)
HEADER_BYTES = 1 + 8 + 1 + 32 + 4 + 8 + 4 + 4 + 4


def _keys(secret: bytes = SECRET, previous: tuple[bytes, ...] = ()) -> envelope.UserKeys:
    return envelope.UserKeys(secret, previous)


def _seal(
    info: ChunkInfo = INFO,
    plaintext: bytes = b"hello audiosync",
    *,
    secret: bytes = SECRET,
    uid: str = UID,
) -> bytes:
    return envelope.seal(_keys(secret), uid, info, plaintext, nonce=NONCE)


def _open(
    data: bytes, *, secret: bytes = SECRET, previous: tuple[bytes, ...] = (), uid: str = UID
) -> list[envelope.OpenedRecord]:
    return envelope.open_records(_keys(secret, previous), uid, data, name=OBJECT)


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def _edit_header(record: bytes, info: ChunkInfo) -> bytes:
    """``record`` with its cleartext header rewritten to say ``info`` (same lengths)."""
    header = envelope.v1_header(record[1:9], info, len(record) - HEADER_BYTES)
    return header + record[len(header) :]


# --- the golden vector -------------------------------------------------------------------


def test_golden_v1_record() -> None:
    assert _seal().hex() == GOLDEN_V1_HEX


def test_golden_v1_record_from_first_principles() -> None:
    key_id = hmac.new(SECRET, b"audiosync envelope key id v1", hashlib.sha256).digest()[:8]
    header = (
        b"\x01"
        + key_id
        + bytes([len(SESSION)])
        + SESSION.encode()
        + struct.pack(">IQIII", 7, 1_700_000_000_125_000, 16000, 80000, 12 + 15 + 16)
    )
    key = hkdf_sha256(SECRET, UID.encode(), b"user-data-encryption", 32)  # the v0 key
    sealed = AESGCM(key).encrypt(NONCE, b"hello audiosync", header + UID.encode())
    assert len(header) == HEADER_BYTES
    assert (header + NONCE + sealed).hex() == GOLDEN_V1_HEX


def test_golden_v1_record_opens_with_its_header() -> None:
    [record] = _open(bytes.fromhex(GOLDEN_V1_HEX))
    assert (record.index, record.version, record.info) == (0, 1, INFO)
    assert record.plaintext == b"hello audiosync"


def test_v0_golden_record_still_opens() -> None:
    [record] = _open(bytes.fromhex(GOLDEN_RECORD_HEX))
    assert (record.version, record.info, record.plaintext) == (0, None, b"hello audiosync")


def test_v0_and_v1_records_open_side_by_side_in_one_object() -> None:
    v0 = envelope.seal_v0(_keys().cipher(UID), b"legacy")
    data = v0 + _seal(plaintext=b"new") + v0
    assert [(r.version, r.plaintext) for r in _open(data)] == [
        (0, b"legacy"),
        (1, b"new"),
        (0, b"legacy"),
    ]


def test_the_key_id_names_the_secret_not_the_user_key() -> None:
    ids = {envelope.key_id(s) for s in (SECRET, OLD_SECRET, OTHER_SECRET)}
    assert len(ids) == 3 and all(len(i) == 8 for i in ids)
    user_key = envelope.derive_user_key(SECRET, UID)
    assert envelope.key_id(SECRET) not in (user_key[:8], SECRET[:8])
    # the same for every user: it identifies the master secret only
    assert _seal(uid="a")[1:9] == _seal(uid="b")[1:9] == envelope.key_id(SECRET)


@settings(max_examples=60, deadline=None)
@given(
    session=st.text("0123456789abcdefABCXYZ._:@+=-", min_size=1, max_size=64),
    seq=st.integers(0, MAX_SEQ),
    start_us=st.integers(0, 2**63 - 1),
    rate=st.sampled_from(SUPPORTED_RATES),
    samples=st.integers(1, envelope.MAX_SAMPLES),
    plaintexts=st.lists(st.binary(max_size=200), min_size=1, max_size=4),
)
def test_round_trip_property(
    session: str, seq: int, start_us: int, rate: int, samples: int, plaintexts: list[bytes]
) -> None:
    info = ChunkInfo(session, seq, start_us, rate, samples)
    keys = _keys()
    data = b"".join(
        envelope.seal(keys, UID, replace(info, seq=i), p) for i, p in enumerate(plaintexts)
    )
    opened = envelope.open_records(keys, UID, data)
    assert [(r.info, r.plaintext) for r in opened] == [
        (replace(info, seq=i), p) for i, p in enumerate(plaintexts)
    ]
    framed = envelope.split_records(data)  # what the fleet sees, without a key
    assert [r.info for r in framed] == [replace(info, seq=i) for i in range(len(plaintexts))]


def test_nonces_are_random() -> None:
    keys = _keys()
    nonces = {envelope.seal(keys, UID, INFO, b"same")[HEADER_BYTES:][:12] for _ in range(20)}
    assert len(nonces) == 20


# --- rotation ----------------------------------------------------------------------------


def test_rotated_secret_previous_opens_current_seals() -> None:
    old_record = _seal(secret=OLD_SECRET, plaintext=b"sealed before the rotation")
    old_v0 = envelope.seal_v0(_keys(OLD_SECRET).cipher(UID), b"v0 before the rotation")
    rotated = _keys(SECRET, (OLD_SECRET,))
    assert [r.plaintext for r in envelope.open_records(rotated, UID, old_record + old_v0)] == [
        b"sealed before the rotation",
        b"v0 before the rotation",
    ]
    new_record = envelope.seal(rotated, UID, INFO, b"after")
    assert new_record[1:9] == envelope.key_id(SECRET) != envelope.key_id(OLD_SECRET)
    assert rotated.key_id == envelope.key_id(SECRET)
    # a reader that has only the old secret names the key id it lacks and what to do
    with pytest.raises(DecryptionError, match=f"key id {envelope.key_id(SECRET).hex()}.*PREVIOUS"):
        envelope.open_records(_keys(OLD_SECRET), UID, new_record)


def test_v0_records_try_the_current_secret_then_each_previous_one() -> None:
    sealed = {s: envelope.seal_v0(_keys(s).cipher(UID), s[:6]) for s in (SECRET, OLD_SECRET)}
    keys = _keys(SECRET, (OTHER_SECRET, OLD_SECRET))
    data = sealed[OLD_SECRET] + sealed[SECRET]
    assert [r.plaintext for r in envelope.open_records(keys, UID, data)] == [b"an-old", b"012345"]
    with pytest.raises(DecryptionError, match=r"record 0.*ENCRYPTION_SECRET_PREVIOUS"):
        envelope.open_records(_keys(SECRET), UID, sealed[OLD_SECRET])


def test_a_previous_secret_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        _keys(SECRET, (b"short",))


# --- refusals: one row each ---------------------------------------------------------------

RECORD = _seal()
AFTER_HEADER = HEADER_BYTES + 12  # first ciphertext byte


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        pytest.param(
            RECORD, {"secret": OTHER_SECRET}, DecryptionError, "key id", id="wrong-secret"
        ),
        pytest.param(
            _seal(secret=OTHER_SECRET), {}, DecryptionError, "key id", id="sealed-by-unknown-secret"
        ),
        pytest.param(
            RECORD, {"uid": "user-2"}, DecryptionError, "user-2", id="copied-under-another-uid"
        ),
        pytest.param(
            _edit_header(RECORD, replace(INFO, start_us=INFO.start_us + 60_000_000)),
            {},
            DecryptionError,
            "header",
            id="moved-in-time",
        ),
        pytest.param(
            _edit_header(RECORD, replace(INFO, seq=8)),
            {},
            DecryptionError,
            "header",
            id="seq-edited",
        ),
        pytest.param(
            _edit_header(RECORD, replace(INFO, session_id="f" * 32)),
            {},
            DecryptionError,
            "header",
            id="session-edited",
        ),
        pytest.param(
            _edit_header(RECORD, replace(INFO, sample_rate=8000)),
            {},
            DecryptionError,
            "header",
            id="rate-edited",
        ),
        pytest.param(
            _edit_header(RECORD, replace(INFO, sample_count=79999)),
            {},
            DecryptionError,
            "header",
            id="samples-edited",
        ),
        pytest.param(_flip(RECORD, 1), {}, DecryptionError, "key id", id="key-id-byte"),
        pytest.param(
            _flip(RECORD, AFTER_HEADER + 3), {}, DecryptionError, "record 0", id="ciphertext"
        ),
        pytest.param(_flip(RECORD, len(RECORD) - 1), {}, DecryptionError, "record 0", id="tag"),
        pytest.param(_flip(RECORD, HEADER_BYTES), {}, DecryptionError, "record 0", id="nonce"),
        pytest.param(
            b"\x02" + RECORD[1:], {}, UnsupportedFormatError, "version byte 0x02", id="v2"
        ),
        pytest.param(
            b"\xff" + RECORD[1:], {}, UnsupportedFormatError, "version byte 0xff", id="vff"
        ),
        pytest.param(RECORD[:-1], {}, FormatError, "truncated", id="truncated-body"),
        pytest.param(RECORD[:20], {}, FormatError, "truncated", id="truncated-header"),
        pytest.param(RECORD[:5], {}, FormatError, "truncated", id="truncated-key-id"),
        pytest.param(
            RECORD + RECORD[:30], {}, FormatError, "record 1.*truncated", id="truncated-second"
        ),
        pytest.param(b"", {}, FormatError, "empty", id="empty"),
        pytest.param(
            RECORD[:9] + b"\x00" + RECORD[10:], {}, FormatError, "session id of 0 bytes", id="sid-0"
        ),
        pytest.param(
            RECORD[:9] + b"\x41" + RECORD[10:], {}, FormatError, "session id of 65", id="sid-65"
        ),
        pytest.param(
            RECORD[:10] + b"/" + RECORD[11:], {}, FormatError, "not an id", id="sid-slash"
        ),
        pytest.param(
            RECORD[: HEADER_BYTES - 4] + b"\x00\x00\x00\x1b" + RECORD[HEADER_BYTES:],
            {},
            FormatError,
            "body of 27 bytes",
            id="n-27",
        ),
        pytest.param(
            RECORD[: HEADER_BYTES - 4] + b"\x01\x00\x00\x00" + RECORD[HEADER_BYTES:],
            {},
            FormatError,
            "too long",
            id="n-2-24",
        ),
    ],
)
def test_bad_v1_records_are_refused(
    data: bytes, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        _open(data, **kwargs)  # type: ignore[arg-type]
    assert OBJECT in str(caught.value)  # errors name the object ...
    assert "sealed record " in str(caught.value) or "empty" in str(caught.value)  # ... and record


def test_the_refusal_table_starts_from_a_record_that_opens() -> None:
    assert [r.plaintext for r in _open(RECORD)] == [b"hello audiosync"]
    assert _edit_header(RECORD, INFO) == RECORD


def test_every_single_bit_flip_of_a_v1_record_is_refused() -> None:
    record = _seal(plaintext=b"abc")
    for index in range(len(record)):
        for bit in range(8):
            with pytest.raises(FormatError):  # DecryptionError is a FormatError
                _open(_flip(record, index, 1 << bit))


def test_errors_name_the_record_index_in_its_object() -> None:
    records = [_seal(replace(INFO, seq=i), bytes([i]) * 10) for i in range(4)]
    offset = sum(len(r) for r in records[:2])
    data = b"".join(records)
    with pytest.raises(DecryptionError, match=rf"{OBJECT}: sealed record 2 \(byte {offset}\)"):
        _open(_flip(data, offset + AFTER_HEADER))


@pytest.mark.parametrize(
    "info",
    [
        pytest.param(replace(INFO, session_id=""), id="empty-session"),
        pytest.param(replace(INFO, session_id="s" * 65), id="65-char-session"),
        pytest.param(replace(INFO, session_id="a/b"), id="slash-in-session"),
        pytest.param(replace(INFO, session_id="é"), id="non-ascii-session"),
        pytest.param(replace(INFO, seq=-1), id="seq-negative"),
        pytest.param(replace(INFO, seq=MAX_SEQ + 1), id="seq-over-max"),
        pytest.param(replace(INFO, start_us=-1), id="start-negative"),
        pytest.param(replace(INFO, start_us=2**63), id="start-2-63"),
        pytest.param(replace(INFO, sample_rate=44100), id="rate-44100"),
        pytest.param(replace(INFO, sample_count=0), id="samples-0"),
        pytest.param(replace(INFO, sample_count=envelope.MAX_SAMPLES + 1), id="samples-over"),
    ],
)
def test_seal_refuses_a_header_it_cannot_write(info: ChunkInfo) -> None:
    with pytest.raises(InvalidInputError, match="envelope v1 header"):
        envelope.seal(_keys(), UID, info, b"x")


def test_seal_refuses_a_short_nonce() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        envelope.seal(_keys(), UID, INFO, b"x", nonce=bytes(8))
