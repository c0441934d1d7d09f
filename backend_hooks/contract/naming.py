"""Object names under ``chunks/{uid}/{conversation_id}/``: building and parsing.

New objects (audiosync v1)::

    chunks/{uid}/{conversation_id}/{start}-{end}_{digest}.opus       standard
    chunks/{uid}/{conversation_id}/{start}-{end}_{digest}.opus.enc   enhanced

``start`` is the Unix time of the first sample and ``end`` the time just after the last,
both ``%.3f`` (truncated to the millisecond, never rounded up); ``digest`` is the first 16
hex digits of SHA-256 over the object's bytes. The name is a function of the content
alone: a retry or replay of the same chunks yields the same name and the same bytes, and a
create-only upload can never overwrite different audio with the same name.

Legacy names (LEGACY_FORMATS.md): ``{ts:.3f}{ext}`` or ``{first:.3f}-{last:.3f}{ext}`` with
the extensions below, matched longest first. For every name the listing timestamp is the
first number.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from backend_hooks.contract.errors import UnsupportedFormatError
from backend_hooks.contract.ids import validate_id

EXT_OPUS = ".opus"
EXT_OPUS_ENC = ".opus.enc"
#: Every extension found in buckets, longest first (the order matters when parsing).
KNOWN_EXTENSIONS = (".batch.enc", ".batch.bin", ".opus.enc", ".opus", ".enc", ".bin")
SEALED_EXTENSIONS = frozenset({".batch.enc", ".opus.enc", ".enc"})
DIGEST_HEX = 16
#: GCS refuses object names longer than this many bytes of UTF-8.
MAX_NAME_BYTES = 1024

_TIME = r"[0-9]+\.[0-9]{3}"
_NEW = re.compile(rf"^(?P<start>{_TIME})-(?P<end>{_TIME})_(?P<digest>[0-9a-f]{{{DIGEST_HEX}}})\Z")
_LEGACY = re.compile(rf"^(?P<start>{_TIME})(?:-(?P<end>{_TIME}))?\Z")


def conversation_prefix(uid: str, conversation_id: str) -> str:
    return f"chunks/{uid}/{conversation_id}/"


def conversation_prefixes(uid: str, conversation_id: str) -> dict[str, str]:
    """Pure: every prefix holding a conversation's audio (LEGACY_FORMATS.md, "Bucket and
    names"): its chunk objects, its ``audio/`` files and its ``merged/`` WAV cache. The
    reader deletes them (conversations.py) and the fleet lists them again (deletions.py)."""
    uid = validate_id(uid, "uid")
    cid = validate_id(conversation_id, "conversation_id")
    return {kind: f"{kind}/{uid}/{cid}/" for kind in ("chunks", "audio", "merged")}


def format_time(us: int) -> str:
    """``%.3f`` of a Unix time given in microseconds, truncated to the millisecond."""
    if us < 0:
        raise ValueError("timestamps before 1970 are not supported")
    return f"{us // 1_000_000}.{us % 1_000_000 // 1000:03d}"


def parse_time_us(text: str) -> int:
    seconds, _, millis = text.partition(".")
    return int(seconds) * 1_000_000 + int(millis.ljust(3, "0")[:3]) * 1000


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_HEX]


def object_name(
    uid: str, conversation_id: str, *, start_us: int, end_us: int, sealed: bool, data: bytes
) -> str:
    ext = EXT_OPUS_ENC if sealed else EXT_OPUS
    stem = f"{format_time(start_us)}-{format_time(end_us)}_{content_digest(data)}"
    return f"{conversation_prefix(uid, conversation_id)}{stem}{ext}"


@dataclass(frozen=True)
class ObjectName:
    path: str
    filename: str
    extension: str
    start_us: int
    end_us: int | None  # new objects: just after the last sample; legacy ranges: last start
    digest: str | None  # set for new objects only

    @property
    def timestamp(self) -> float:
        """The listing timestamp (seconds), as the backend has always reported it."""
        return self.start_us / 1_000_000

    @property
    def is_new(self) -> bool:
        return self.digest is not None

    @property
    def sealed(self) -> bool:
        return self.extension in SEALED_EXTENSIONS


def split_extension(filename: str) -> tuple[str, str]:
    for ext in KNOWN_EXTENSIONS:
        if filename.endswith(ext) and len(filename) > len(ext):
            return filename[: -len(ext)], ext
    raise UnsupportedFormatError(
        f"{filename!r} has no known extension; expected one of {', '.join(KNOWN_EXTENSIONS)}"
    )


def parse_object_name(path: str) -> ObjectName:
    """Parse a chunk object's path; ``UnsupportedFormatError`` for names we do not know."""
    filename = path.rsplit("/", 1)[-1]
    stem, ext = split_extension(filename)
    new = _NEW.match(stem)
    if new and ext in (EXT_OPUS, EXT_OPUS_ENC):
        return ObjectName(
            path=path,
            filename=filename,
            extension=ext,
            start_us=parse_time_us(new["start"]),
            end_us=parse_time_us(new["end"]),
            digest=new["digest"],
        )
    legacy = _LEGACY.match(stem)
    if legacy is None:
        raise UnsupportedFormatError(f"{filename!r} does not start with a %.3f timestamp")
    end = legacy["end"]
    return ObjectName(
        path=path,
        filename=filename,
        extension=ext,
        start_us=parse_time_us(legacy["start"]),
        end_us=None if end is None else parse_time_us(end),
        digest=None,
    )
