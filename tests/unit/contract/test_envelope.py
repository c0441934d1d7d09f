"""backend_hooks.contract.envelope: per-user HKDF keys and AES-256-GCM records, envelope v0
(legacy).

Envelope v1 (header, key id, associated data, rotation) is tests/unit/contract/test_envelope_v1.py.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from backend_hooks.contract import envelope
from backend_hooks.contract.errors import ConfigError, DecryptionError, FormatError

SECRET = b"0123456789abcdef0123456789abcdef"  # exactly 32 bytes
OTHER_SECRET = b"fedcba9876543210fedcba9876543210"
UID = "user-1"
NONCE = bytes(range(12))


def _open(data: bytes, secret: bytes = SECRET, uid: str = UID) -> list[bytes]:
    return [r.plaintext for r in envelope.open_records(envelope.UserKeys(secret), uid, data)]


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869, written out: extract, then expand."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_independent_hkdf_matches_rfc5869_test_case_1() -> None:
    # The helper itself, against RFC 5869 appendix A.1.
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("000102030405060708090a0b0c"),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


@pytest.mark.parametrize(
    ("secret", "uid"),
    [
        pytest.param(SECRET, UID, id="ascii-uid"),
        pytest.param(SECRET, "ünïcødé-user", id="utf8-uid"),
        pytest.param(b"s" * 100, "x" * 256, id="long-secret-long-uid"),
        pytest.param(OTHER_SECRET, UID, id="other-secret"),
    ],
)
def test_user_key_is_hkdf_sha256(secret: bytes, uid: str) -> None:
    expected = hkdf_sha256(secret, uid.encode("utf-8"), b"user-data-encryption", 32)
    assert envelope.derive_user_key(secret, uid) == expected


def test_user_keys_differ_by_uid_and_secret() -> None:
    keys = {
        envelope.derive_user_key(SECRET, "a"),
        envelope.derive_user_key(SECRET, "b"),
        envelope.derive_user_key(OTHER_SECRET, "a"),
    }
    assert len(keys) == 3


# Produced once with seal_v0(UserKeys(SECRET).cipher("user-1"), b"hello audiosync",
# nonce=bytes(range(12))).hex(); the test below also rebuilds it from first principles.
GOLDEN_RECORD_HEX = (
    "0000002b"  # N = 12 + 15 + 16 = 43
    "000102030405060708090a0b"  # nonce
    "f86958c1c8f3304ae0ded95dd06fdf"  # ciphertext (15 bytes)
    "9a203f0068e001f45d25d21e0a20afb1"  # tag
)


def test_golden_record() -> None:
    cipher = envelope.UserKeys(SECRET).cipher(UID)
    assert envelope.seal_v0(cipher, b"hello audiosync", nonce=NONCE).hex() == GOLDEN_RECORD_HEX


def test_golden_record_from_first_principles() -> None:
    key = hkdf_sha256(SECRET, UID.encode(), b"user-data-encryption", 32)
    body = NONCE + AESGCM(key).encrypt(NONCE, b"hello audiosync", None)
    assert (struct.pack(">I", len(body)) + body).hex() == GOLDEN_RECORD_HEX


def test_golden_record_opens() -> None:
    assert _open(bytes.fromhex(GOLDEN_RECORD_HEX)) == [b"hello audiosync"]


@pytest.mark.parametrize(
    "plaintexts",
    [
        pytest.param([b""], id="empty-plaintext"),
        pytest.param([b"x"], id="one-byte"),
        pytest.param([b"a" * 1000, b"", b"b" * 70_000], id="three-records"),
        pytest.param([bytes(range(256)) * 10] * 5, id="five-equal-records"),
    ],
)
def test_round_trip_of_records(plaintexts: list[bytes]) -> None:
    cipher = envelope.UserKeys(SECRET).cipher(UID)
    records = [envelope.seal_v0(cipher, p) for p in plaintexts]
    for plaintext, record in zip(plaintexts, records, strict=True):
        (length,) = struct.unpack_from(">I", record)
        assert length == 12 + len(plaintext) + 16 == len(record) - 4
    assert _open(b"".join(records)) == plaintexts


@settings(max_examples=50, deadline=None)
@given(plaintexts=st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_round_trip_property(plaintexts: list[bytes]) -> None:
    cipher = envelope.UserKeys(SECRET).cipher(UID)
    data = b"".join(envelope.seal_v0(cipher, p) for p in plaintexts)
    assert _open(data) == plaintexts
    sizes = [len(r.sealed) - 16 for r in envelope.split_records(data)]
    assert sizes == [len(p) for p in plaintexts]


def test_nonces_are_random() -> None:
    cipher = envelope.UserKeys(SECRET).cipher(UID)
    nonces = {envelope.seal_v0(cipher, b"same")[4:16] for _ in range(20)}
    assert len(nonces) == 20


def test_seal_refuses_a_short_nonce() -> None:
    cipher = envelope.UserKeys(SECRET).cipher(UID)
    with pytest.raises(ValueError, match="12 bytes"):
        envelope.seal_v0(cipher, b"x", nonce=bytes(8))


def test_user_keys_cache_returns_the_same_cipher() -> None:
    keys = envelope.UserKeys(SECRET)
    assert keys.cipher(UID) is keys.cipher(UID)
    assert keys.cipher(UID) is not keys.cipher("user-2")


# --- refusals ------------------------------------------------------------------------------


def _sealed(plaintexts: list[bytes] | None = None) -> bytes:
    cipher = envelope.UserKeys(SECRET).cipher(UID)
    return b"".join(
        envelope.seal_v0(cipher, p, nonce=bytes([i]) * 12)
        for i, p in enumerate(plaintexts or [b"first record", b"second record"])
    )


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


RECORD = 4 + 12 + len(b"first record") + 16  # byte length of the first record


@pytest.mark.parametrize(
    ("secret", "uid", "data", "error", "message"),
    [
        pytest.param(SECRET, "user-2", _sealed(), DecryptionError, "record 0", id="wrong-uid"),
        pytest.param(OTHER_SECRET, UID, _sealed(), DecryptionError, "record 0", id="wrong-secret"),
        pytest.param(SECRET, UID, _flip(_sealed(), 4), DecryptionError, "record 0", id="nonce"),
        pytest.param(
            SECRET, UID, _flip(_sealed(), 20), DecryptionError, "record 0", id="ciphertext"
        ),
        pytest.param(
            SECRET, UID, _flip(_sealed(), RECORD - 1), DecryptionError, "record 0", id="tag"
        ),
        pytest.param(
            SECRET,
            UID,
            _flip(_sealed(), RECORD + 20),
            DecryptionError,
            "record 1",
            id="second-record",
        ),
        pytest.param(SECRET, UID, _sealed()[:-1], FormatError, "truncated", id="truncated-body"),
        pytest.param(SECRET, UID, _sealed()[: RECORD + 3], FormatError, "header", id="half-header"),
        pytest.param(
            SECRET, UID, _sealed()[:RECORD] + b"\0\0\0\x1b", FormatError, "too short", id="n-27"
        ),
        pytest.param(SECRET, UID, b"", FormatError, "empty", id="empty"),
        pytest.param(SECRET, UID, b"\x02" + bytes(40), FormatError, "version", id="version-2"),
        pytest.param(
            SECRET, UID, b"\x80" + _sealed()[1:], FormatError, "version", id="version-0x80"
        ),
        pytest.param(SECRET, UID, b"RIFF" + bytes(60), FormatError, "version", id="foreign-wav"),
        pytest.param(
            SECRET, UID, b"OggS\x00\x02" + bytes(40), FormatError, "version", id="foreign-ogg"
        ),
        pytest.param(
            SECRET, UID, b"\0\0\0\x28" + bytes(40), DecryptionError, "record 0", id="zeros"
        ),
    ],
)
def test_bad_records_are_refused(
    secret: bytes, uid: str, data: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _open(data, secret, uid)


def test_the_refusal_table_starts_from_records_that_open() -> None:
    assert _open(_sealed()) == [b"first record", b"second record"]


def test_every_single_bit_flip_is_refused() -> None:
    data = _sealed([b"abc"])
    for index in range(len(data)):
        for bit in range(8):
            corrupted = bytearray(data)
            corrupted[index] ^= 1 << bit
            with pytest.raises(FormatError):  # DecryptionError is a FormatError
                _open(bytes(corrupted))


def test_decryption_error_is_a_format_error() -> None:
    assert issubclass(DecryptionError, FormatError)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"x" * 31, id="31-bytes"),
        pytest.param("é".encode() * 15 + b"x", id="31-bytes-utf8"),
    ],
)
def test_short_secret_is_refused(secret: bytes) -> None:
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET"):
        envelope.derive_user_key(secret, UID)
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET"):
        envelope.UserKeys(secret).cipher(UID)


def test_32_byte_secret_is_accepted() -> None:
    assert len(envelope.derive_user_key(b"x" * 32, UID)) == 32
