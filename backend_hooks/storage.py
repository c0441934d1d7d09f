"""The read side the backend calls, under the backend's own function names.

Lists, merges and deletes the chunk objects of a conversation: the new 60 s objects
(``.opus``, ``.opus.enc``) and the legacy single-chunk Opus objects next to them. Legacy
raw-PCM objects (``.bin``, ``.enc``, ``.batch.*``) are listed; merging them is ROADMAP 3
and raises ``UnsupportedFormatError`` until then rather than guessing their sample rate.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backend_hooks import container, envelope, gcs, naming
from backend_hooks.errors import ConfigError, UnsupportedFormatError
from backend_hooks.ids import validate_id
from backend_hooks.merge import MergedAudio, merge_segments
from backend_hooks.settings import Settings

_DOWNLOAD_THREADS = 8


@dataclass
class StorageContext:
    settings: Settings
    bucket: gcs.GcsBucket
    keys: envelope.UserKeys | None

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageContext:
        return cls(
            settings=settings,
            bucket=gcs.GcsBucket.from_settings(settings),
            keys=envelope.UserKeys(settings.encryption_secret, settings.encryption_secret_previous)
            if settings.encryption_secret
            else None,
        )


@functools.cache
def default_context() -> StorageContext:
    """The context built from the environment on first use."""
    return StorageContext.from_settings(Settings.from_env(role="reader"))


def reset_default_context() -> None:
    """Forget the cached context (after the environment changed, e.g. in tests)."""
    default_context.cache_clear()


def _objects(
    ctx: StorageContext, uid: str, conversation_id: str
) -> list[tuple[naming.ObjectName, gcs.StoredObject]]:
    """The chunk objects of a conversation with parseable names, oldest first."""
    prefix = naming.conversation_prefix(
        validate_id(uid, "uid"), validate_id(conversation_id, "conversation_id")
    )
    found = []
    for stored in ctx.bucket.list(prefix):
        try:
            found.append((naming.parse_object_name(stored.name), stored))
        except UnsupportedFormatError:
            continue  # not a chunk object (e.g. a stray upload): not audio of ours
    return sorted(found, key=lambda pair: (pair[0].start_us, pair[0].filename))


def _duration(name: naming.ObjectName, metadata: dict[str, str]) -> float | None:
    try:
        return int(metadata["audiosync-samples"]) / int(metadata["audiosync-rate"])
    except (KeyError, ValueError, ZeroDivisionError):
        pass
    if name.is_new and name.end_us is not None:
        return (name.end_us - name.start_us) / 1_000_000
    return None  # legacy objects: ROADMAP 3 computes it from the bytes


def list_audio_chunks(
    uid: str, conversation_id: str, *, context: StorageContext | None = None
) -> list[dict[str, Any]]:
    """Chunk objects of a conversation, oldest first.

    Each: ``timestamp`` (start, float seconds), ``path``, ``size`` (bytes), ``duration``
    (seconds of audio, from the stored sample count; ``None`` for legacy objects).
    """
    ctx = context or default_context()
    return [
        {
            "timestamp": name.timestamp,
            "path": name.path,
            "size": stored.size,
            "duration": _duration(name, stored.metadata),
        }
        for name, stored in _objects(ctx, uid, conversation_id)
    ]


def _selected(
    names: list[naming.ObjectName], timestamps: list[float] | None
) -> list[naming.ObjectName]:
    if timestamps is None:
        return names
    wanted = {round(t * 1000) for t in timestamps}
    return [n for n in names if n.start_us // 1000 in wanted]


def _segments(ctx: StorageContext, uid: str, name: naming.ObjectName) -> list[container.Segment]:
    if name.extension not in (naming.EXT_OPUS, naming.EXT_OPUS_ENC):
        raise UnsupportedFormatError(
            f"{name.filename}: legacy raw-PCM objects are not merged yet (ROADMAP 3)"
        )
    data = ctx.bucket.download(name.path)
    if name.sealed:
        if ctx.keys is None:
            raise ConfigError(f"{name.filename} is sealed: set ENCRYPTION_SECRET to read it")
        records = envelope.open_records(ctx.keys, uid, data, name=name.path)
        data = b"".join(r.plaintext for r in records)
    return container.decode_payload(data, name_start_us=name.start_us)


def download_merged_audio(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    *,
    context: StorageContext | None = None,
) -> MergedAudio:
    """The conversation's audio as PCM16LE mono at the recording's rate, with that rate."""
    ctx = context or default_context()
    names = _selected([n for n, _ in _objects(ctx, uid, conversation_id)], timestamps)
    with ThreadPoolExecutor(_DOWNLOAD_THREADS) as pool:
        per_object = list(pool.map(lambda n: _segments(ctx, uid, n), names))
    return merge_segments([s for segs in per_object for s in segs], fill_gaps=fill_gaps)


def download_audio_chunks_and_merge(
    uid: str,
    conversation_id: str,
    timestamps: list[float] | None = None,
    fill_gaps: bool = True,
    *,
    context: StorageContext | None = None,
) -> bytes:
    """PCM16LE mono at the recording's rate (see ``download_merged_audio`` for the rate)."""
    return download_merged_audio(uid, conversation_id, timestamps, fill_gaps, context=context).pcm


def delete_audio_chunks(
    uid: str,
    conversation_id: str,
    timestamps: list[float],
    *,
    context: StorageContext | None = None,
) -> None:
    """Delete the chunk objects whose listing timestamps are given."""
    ctx = context or default_context()
    for name in _selected([n for n, _ in _objects(ctx, uid, conversation_id)], list(timestamps)):
        ctx.bucket.delete(name.path)
