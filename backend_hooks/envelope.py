"""Sealed records for the ``enhanced`` protection level (AES-256-GCM under a per-user key).

Key: HKDF-SHA256(ikm=ENCRYPTION_SECRET, salt=uid as UTF-8, info=b"user-data-encryption",
length=32). Record, as in LEGACY_FORMATS.md (envelope v0)::

    u32 big-endian N | nonce (12) | ciphertext | tag (16)        N = 12 + len(plaintext) + 16

A sealed object is records back to back; opening walks them and returns each plaintext.
Any record that does not authenticate is a ``DecryptionError``: never garbage, never the
input returned unchanged. Because N < 2**24 for every record audiosync writes, a record's
first byte is 0x00; a later envelope version (ROADMAP 1: key ids, associated data) starts
with a non-zero version byte, so both open side by side.
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backend_hooks.errors import ConfigError, DecryptionError, FormatError
from backend_hooks.settings import MIN_SECRET_BYTES

NONCE_BYTES = 12
TAG_BYTES = 16
_LENGTH = struct.Struct(">I")
HKDF_INFO = b"user-data-encryption"
MAX_RECORD_BYTES = 1 << 24


def derive_user_key(secret: bytes, uid: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"ENCRYPTION_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=uid.encode("utf-8"), info=HKDF_INFO)
    return hkdf.derive(secret)


class UserKeys:
    """Per-user keys derived from one master secret, cached."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._cached = lru_cache(maxsize=4096)(self._derive)

    def _derive(self, uid: str) -> AESGCM:
        return AESGCM(derive_user_key(self._secret, uid))

    def cipher(self, uid: str) -> AESGCM:
        return self._cached(uid)


def seal(cipher: AESGCM, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """One record. ``nonce`` is for golden tests only; leave it ``None``."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    body = nonce + cipher.encrypt(nonce, plaintext, None)
    if len(body) >= MAX_RECORD_BYTES:
        raise ValueError("record too large for envelope v0")
    return _LENGTH.pack(len(body)) + body


def split_records(data: bytes) -> list[tuple[bytes, bytes]]:
    """(nonce, ciphertext+tag) of each record, checking the framing but not the keys."""
    records = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise FormatError(f"sealed record header truncated at byte {pos}")
        (length,) = _LENGTH.unpack_from(data, pos)
        if length < NONCE_BYTES + TAG_BYTES:
            raise FormatError(f"sealed record at byte {pos} declares {length} bytes, too short")
        if data[pos] != 0:
            raise FormatError(f"unknown envelope version byte {data[pos]:#x} at byte {pos}")
        end = pos + 4 + length
        if end > len(data):
            raise FormatError(
                f"sealed record at byte {pos} truncated ({len(data) - pos - 4} of {length} bytes)"
            )
        body = data[pos + 4 : end]
        records.append((body[:NONCE_BYTES], body[NONCE_BYTES:]))
        pos = end
    if not records:
        raise FormatError("no sealed record in an empty payload")
    return records


def open_records(cipher: AESGCM, data: bytes) -> list[bytes]:
    """Plaintexts of every record in ``data``; ``DecryptionError`` if any fails."""
    out = []
    for index, (nonce, sealed) in enumerate(split_records(data)):
        try:
            out.append(cipher.decrypt(nonce, sealed, None))
        except InvalidTag:
            raise DecryptionError(
                f"sealed record {index} does not open with this user's key: wrong "
                "ENCRYPTION_SECRET, another user's data, or tampered bytes"
            ) from None
    return out
