"""Test-only: legacy raw-PCM objects written byte for byte as ../shared/LEGACY_FORMATS.md
describes them, without audiosync's own envelope code (so the reader is checked against
the document, not against itself).

- names: ``{ts:.3f}{ext}``, batches ``{first:.3f}-{last:.3f}.batch.*`` (``{first:.3f}`` for
  a single chunk);
- ``.bin``: raw PCM16LE; ``.batch.bin``: chunks back to back;
- ``.enc``: v0 records ``u32 BE N | nonce (12) | ciphertext | tag (16)``, N = 12 + len +
  16, AES-256-GCM without associated data under HKDF-SHA256(ikm=secret, salt=uid,
  info=b"user-data-encryption", length=32); ``.batch.enc``: one record per chunk.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backend_hooks.adapters.gcs import GcsBucket


def user_key(secret: bytes, uid: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=uid.encode("utf-8"), info=b"user-data-encryption"
    )
    return hkdf.derive(secret)


def v0_record(secret: bytes, uid: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    sealed = AESGCM(user_key(secret, uid)).encrypt(nonce, plaintext, None)  # ciphertext | tag
    return struct.pack(">I", 12 + len(plaintext) + 16) + nonce + sealed


def filename(first: float, ext: str, last: float | None = None) -> str:
    if last is None or last == first:
        return f"{first:.3f}{ext}"
    return f"{first:.3f}-{last:.3f}{ext}"


def legacy_bytes(
    ext: str,
    chunks: Sequence[bytes],
    *,
    secret: bytes | None = None,
    uid: str = "",
    records_per_chunk: int = 1,
) -> bytes:
    """The bytes of a legacy raw object holding ``chunks`` (PCM each). ``.enc`` takes one
    chunk, split into ``records_per_chunk`` records at arbitrary (odd) byte offsets."""
    if ext in (".bin", ".enc") and len(chunks) != 1:
        raise ValueError(f"a {ext} object holds one chunk")
    if ext in (".bin", ".batch.bin"):
        return b"".join(chunks)
    assert secret is not None
    if ext == ".batch.enc":
        return b"".join(v0_record(secret, uid, c) for c in chunks)
    [pcm] = chunks
    step = -(-len(pcm) // records_per_chunk) | 1  # odd: records split samples
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    return b"".join(v0_record(secret, uid, p) for p in pieces)


def write_legacy(
    bucket: GcsBucket,
    uid: str,
    conversation_id: str,
    ext: str,
    starts: Sequence[float],
    chunks: Sequence[bytes],
    *,
    secret: bytes | None = None,
    records_per_chunk: int = 1,
) -> str:
    """Store a legacy object named by its chunks' ``starts`` (seconds); its path."""
    path = f"chunks/{uid}/{conversation_id}/{filename(starts[0], ext, starts[-1])}"
    data = legacy_bytes(ext, chunks, secret=secret, uid=uid, records_per_chunk=records_per_chunk)
    bucket.create_only(path, data, content_type="application/octet-stream", metadata={})
    return path
