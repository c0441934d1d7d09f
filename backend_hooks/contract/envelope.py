"""Sealed records for the ``enhanced`` protection level (AES-256-GCM under a per-user key).

Key: HKDF-SHA256(ikm=master secret, salt=uid as UTF-8, info=b"user-data-encryption",
length=32), for v0 and v1 alike, so one secret serves old and new data. The byte layouts
are docs/FORMATS.md §3:

- **v0** (LEGACY_FORMATS.md): ``u32 BE N | nonce (12) | ciphertext | tag (16)``, no
  associated data. N < 2**24, so a v0 record's first byte is 0x00.
- **v1** (what the pusher writes): ``0x01 | key id (8) | cleartext header (session id, seq,
  start_us, rate, samples) | u32 BE N | nonce | ciphertext | tag``; the associated data is
  the whole header (version byte to N) followed by the uid, which is not stored: the
  reader supplies it from the object path. A record edited, moved in time, given another
  session's header or copied under another user does not open.

The key id is the first 8 bytes of HMAC-SHA256(master secret, ``KEY_ID_LABEL``): it says
which master secret sealed a record (so rotation needs no trial decryption) and reveals
nothing about the secret or the user key. ``UserKeys`` holds the current secret (which
seals) and the previous ones (which still open): v1 picks by key id, v0 (no key id) tries
the current secret and then each previous one.

A sealed object is records back to back; opening walks them and returns each plaintext
with the header it was authenticated with. Any record that does not authenticate is a
``DecryptionError`` naming the object and the record: never garbage, never the input
returned unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
from backend_hooks.contract.settings import MIN_SECRET_BYTES

NONCE_BYTES = 12
TAG_BYTES = 16
HKDF_INFO = b"user-data-encryption"
#: N (nonce + ciphertext + tag) is below this in v0 and v1: a v0 record starts with 0x00.
MAX_RECORD_BYTES = 1 << 24
MIN_BODY_BYTES = NONCE_BYTES + TAG_BYTES

V0 = 0x00
V1 = 0x01
KEY_ID_BYTES = 8
KEY_ID_LABEL = b"audiosync envelope key id v1"
MAX_SESSION_ID_BYTES = 64
MAX_START_US = 2**63 - 1
#: The most samples one record may say it holds: 600 s at 48 kHz (the fleet's cap per chunk).
MAX_SAMPLES = 600 * 48000

_LENGTH = struct.Struct(">I")
_V1_PREFIX = struct.Struct(">B8sB")  # version, key id, session id length
_V1_FIELDS = struct.Struct(">IQIII")  # seq, start_us, rate, samples, N
_SESSION_ID = re.compile(rb"[A-Za-z0-9._:@+=-]+")


def derive_user_key(secret: bytes, uid: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"ENCRYPTION_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=uid.encode("utf-8"), info=HKDF_INFO)
    return hkdf.derive(secret)


def key_id(secret: bytes) -> bytes:
    """Which master secret sealed a v1 record: HMAC-SHA256(secret, KEY_ID_LABEL)[:8]."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"ENCRYPTION_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    return hmac.new(secret, KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_BYTES]


class UserKeys:
    """Per-user keys of the current master secret (seals, opens) and of previous ones
    (open only), cached."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        self._secrets = list(dict.fromkeys([secret, *previous]))  # current first, no repeats
        ids = [key_id(s) for s in self._secrets]  # checks every length too
        if len(set(ids)) != len(ids):
            raise ConfigError(
                "two different encryption secrets have the same key id; replace one of them"
            )
        self._by_key_id = dict(zip(ids, range(len(ids)), strict=True))
        self._key_id = ids[0]
        self._cached = lru_cache(maxsize=4096)(self._derive)

    def _derive(self, index: int, uid: str) -> AESGCM:
        return AESGCM(derive_user_key(self._secrets[index], uid))

    @property
    def key_id(self) -> bytes:
        """The key id of the current secret, the one ``seal`` writes."""
        return self._key_id

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        return tuple(self._by_key_id)

    def cipher(self, uid: str) -> AESGCM:
        """The user's cipher under the current secret."""
        return self._cached(0, uid)

    def cipher_for(self, record_key_id: bytes, uid: str) -> AESGCM | None:
        """The user's cipher under the secret with this key id, if it is held here."""
        index = self._by_key_id.get(record_key_id)
        return None if index is None else self._cached(index, uid)

    def all_ciphers(self, uid: str) -> Iterator[AESGCM]:
        """The user's ciphers, current secret first (for v0 records, which have no key id)."""
        for index in range(len(self._secrets)):
            yield self._cached(index, uid)


# --- layouts ----------------------------------------------------------------------------


def _check_info(info: ChunkInfo, where: str, error: type[Exception] = FormatError) -> bytes:
    """The session id's bytes when every field of ``info`` fits the v1 header, else
    ``error`` naming the field."""
    session = info.session_id.encode("utf-8", "replace")
    if not 0 < len(session) <= MAX_SESSION_ID_BYTES or not _SESSION_ID.fullmatch(session):
        raise error(
            f"{where}: session id {info.session_id[:80]!r} is not 1 to {MAX_SESSION_ID_BYTES} "
            "characters of A-Z a-z 0-9 . _ : @ + = -"
        )
    if not 0 <= info.seq <= MAX_SEQ:
        raise error(f"{where}: seq {info.seq} is not from 0 to {MAX_SEQ}")
    if not 0 <= info.start_us <= MAX_START_US:
        raise error(f"{where}: start_us {info.start_us} is not from 0 to 2**63 - 1")
    if info.sample_rate not in SUPPORTED_RATES:
        raise error(f"{where}: rate {info.sample_rate} is not one of {SUPPORTED_RATES}")
    if not 0 < info.sample_count <= MAX_SAMPLES:
        raise error(f"{where}: samples {info.sample_count} is not from 1 to {MAX_SAMPLES}")
    return session


def v1_header(record_key_id: bytes, info: ChunkInfo, body_length: int) -> bytes:
    """The cleartext v1 header, version byte to N (docs/FORMATS.md §3.2)."""
    session = _check_info(info, "envelope v1 header", InvalidInputError)
    if len(record_key_id) != KEY_ID_BYTES:
        raise ValueError(f"key id must be {KEY_ID_BYTES} bytes")
    if not MIN_BODY_BYTES <= body_length < MAX_RECORD_BYTES:
        raise ValueError(f"record body of {body_length} bytes is too large for envelope v1")
    return (
        _V1_PREFIX.pack(V1, record_key_id, len(session))
        + session
        + _V1_FIELDS.pack(info.seq, info.start_us, info.sample_rate, info.sample_count, body_length)
    )


def associated_data(header: bytes, uid: str) -> bytes:
    """What a v1 tag authenticates: the whole header, then the uid as UTF-8."""
    return header + uid.encode("utf-8")


def seal_v0(cipher: AESGCM, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """One legacy v0 record (no associated data). Only tests and tools write these now;
    ``nonce`` is for golden tests only."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    body = nonce + cipher.encrypt(nonce, plaintext, None)
    if len(body) >= MAX_RECORD_BYTES:
        raise ValueError("record too large for envelope v0")
    return _LENGTH.pack(len(body)) + body


def seal(
    keys: UserKeys, uid: str, info: ChunkInfo, plaintext: bytes, nonce: bytes | None = None
) -> bytes:
    """One v1 record of chunk ``info`` of user ``uid`` under the current secret.

    ``nonce`` is for golden tests only; leave it ``None``.
    """
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    header = v1_header(keys.key_id, info, NONCE_BYTES + len(plaintext) + TAG_BYTES)
    sealed = keys.cipher(uid).encrypt(nonce, plaintext, associated_data(header, uid))
    return header + nonce + sealed


# --- framing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record's framing, parsed without a key."""

    index: int  # position in its object, from 0
    offset: int  # its first byte in the object
    end: int  # the byte after it
    version: int
    key_id: bytes | None  # v1
    info: ChunkInfo | None  # v1: the cleartext header (authenticated once opened)
    header: bytes  # v1: version byte to N, the start of the associated data; v0: b""
    nonce: bytes
    sealed: bytes  # ciphertext + tag


@dataclass(frozen=True)
class OpenedRecord:
    index: int
    version: int
    info: ChunkInfo | None  # v1: the authenticated header; v0: None (nothing authenticated)
    plaintext: bytes


def _where(name: str, index: int, pos: int) -> str:
    return f"{name}: sealed record {index} (byte {pos})"


def _body_length(data: bytes, pos: int, where: str) -> int:
    if pos + 4 > len(data):
        raise FormatError(f"{where}: record header truncated at byte {len(data)}")
    (length,) = _LENGTH.unpack_from(data, pos)
    if not MIN_BODY_BYTES <= length < MAX_RECORD_BYTES:
        raise FormatError(f"{where}: declares a body of {length} bytes, too short or too long")
    return int(length)


def frame_at(data: bytes, pos: int, *, index: int = 0, name: str = "sealed data") -> Record:
    """The framing of the record starting at byte ``pos``; ``FormatError`` (unknown version,
    out-of-range header field, truncation) naming ``name``, the record and the byte."""
    where = _where(name, index, pos)
    if pos >= len(data):
        raise FormatError(f"{where}: no record (empty)")
    version = data[pos]
    if version == V0:
        length = _body_length(data, pos, where)
        start = pos + 4
        header = b""
        record_key_id = None
        info = None
    elif version == V1:
        if pos + _V1_PREFIX.size > len(data):
            raise FormatError(f"{where}: v1 header truncated at byte {len(data)}")
        _, record_key_id, session_length = _V1_PREFIX.unpack_from(data, pos)
        if not 0 < session_length <= MAX_SESSION_ID_BYTES:
            raise FormatError(
                f"{where}: session id of {session_length} bytes (1 to {MAX_SESSION_ID_BYTES})"
            )
        fields_at = pos + _V1_PREFIX.size + session_length
        start = fields_at + _V1_FIELDS.size
        if start > len(data):
            raise FormatError(f"{where}: v1 header truncated at byte {len(data)}")
        session = data[pos + _V1_PREFIX.size : fields_at]
        seq, start_us, rate, samples, _ = _V1_FIELDS.unpack_from(data, fields_at)
        length = _body_length(data, start - 4, where)
        if not _SESSION_ID.fullmatch(session):
            raise FormatError(f"{where}: session id {session[:80]!r} is not an id")
        info = ChunkInfo(session.decode("ascii"), seq, start_us, rate, samples)
        _check_info(info, where)
        header = data[pos:start]
    else:
        raise UnsupportedFormatError(
            f"{where}: unknown envelope version byte {version:#04x}; this reader opens v0 "
            "and v1 (upgrade the reader if a newer pusher wrote it)"
        )
    end = start + length
    if end > len(data):
        raise FormatError(f"{where}: truncated ({len(data) - start} of {length} body bytes)")
    return Record(
        index=index,
        offset=pos,
        end=end,
        version=version,
        key_id=record_key_id,
        info=info,
        header=header,
        nonce=data[start : start + NONCE_BYTES],
        sealed=data[start + NONCE_BYTES : end],
    )


def split_records(data: bytes, *, name: str = "sealed data") -> list[Record]:
    """The framing of every record in ``data``, checked without a key."""
    if not data:
        raise FormatError(f"{name}: no sealed record in an empty payload")
    records: list[Record] = []
    pos = 0
    while pos < len(data):
        record = frame_at(data, pos, index=len(records), name=name)
        records.append(record)
        pos = record.end
    return records


def open_record(keys: UserKeys, uid: str, record: Record, *, name: str = "sealed data") -> bytes:
    """The plaintext of one framed record, or ``DecryptionError`` naming it."""
    where = _where(name, record.index, record.offset)
    if record.version == V1:
        assert record.key_id is not None
        cipher = keys.cipher_for(record.key_id, uid)
        if cipher is None:
            raise DecryptionError(
                f"{where}: sealed under key id {record.key_id.hex()}, which is neither "
                "ENCRYPTION_SECRET nor one of ENCRYPTION_SECRET_PREVIOUS(_JSON); add the "
                "secret that sealed it to ENCRYPTION_SECRET_PREVIOUS_JSON"
            )
        try:
            return cipher.decrypt(record.nonce, record.sealed, associated_data(record.header, uid))
        except InvalidTag:
            raise DecryptionError(
                f"{where}: does not authenticate for user {uid!r}: its header or bytes were "
                "changed, or it was copied from another user's object"
            ) from None
    for cipher in keys.all_ciphers(uid):
        try:
            return cipher.decrypt(record.nonce, record.sealed, None)
        except InvalidTag:
            continue
    raise DecryptionError(
        f"{where}: v0 record does not open with this user's key under ENCRYPTION_SECRET or "
        "any of ENCRYPTION_SECRET_PREVIOUS(_JSON): wrong secret, another user's data, or "
        "tampered bytes"
    )


def open_records(
    keys: UserKeys, uid: str, data: bytes, *, name: str = "sealed data"
) -> list[OpenedRecord]:
    """Every record of ``data`` opened, in order; ``FormatError``/``DecryptionError``
    naming ``name`` (the object) and the record if any fails."""
    return [
        OpenedRecord(
            index=record.index,
            version=record.version,
            info=record.info,
            plaintext=open_record(keys, uid, record, name=name),
        )
        for record in split_records(data, name=name)
    ]
