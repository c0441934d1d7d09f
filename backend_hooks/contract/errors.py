"""The error hierarchy of audiosync.

Every failure the library reports is an ``AudioSyncError``; callers that want to tell
kinds apart catch the narrower classes. Messages say what to do, not only what failed.
"""

from __future__ import annotations


class AudioSyncError(Exception):
    """Base class of every error raised by audiosync."""


class ConfigError(AudioSyncError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidInputError(AudioSyncError, ValueError):
    """The caller passed something audiosync cannot accept (bad id, rate, level, PCM)."""


class SessionClosedError(AudioSyncError):
    """The session was closed; open a new one with ``client.open_session``."""


class FormatError(AudioSyncError):
    """Bytes do not parse as the format they claim to be (truncated, corrupt, foreign)."""


class UnsupportedFormatError(FormatError):
    """A known but not (yet) readable layout, or an unknown extension or version."""


class SampleRateUnknownError(UnsupportedFormatError):
    """Legacy raw PCM whose sample rate neither the caller gave nor the objects tell
    (docs/FORMATS.md §6): pass ``sample_rate``."""


class DecryptionError(FormatError):
    """A sealed record did not open: wrong key, wrong user, or tampered bytes."""


class SplicedRecordError(FormatError):
    """A sealed record that opens but cannot belong to its object: of another session than
    the object's other records, or an envelope v0 record (which authenticates neither its
    place nor its session) among v1 records. It was written in from elsewhere; read with
    ``skip_broken=True`` to leave it out (docs/FORMATS.md §3.3)."""


class EnqueueError(AudioSyncError):
    """Chunks could not be appended to Redis. They are kept and retried; nothing is dropped."""


class BufferFullError(EnqueueError):
    """A session already holds ``AUDIOSYNC_SESSION_BUFFER_SECONDS`` of audio that Redis has
    not taken and the spool could not (off, or full): this push was refused, not taken."""


class SpoolFullError(BufferFullError):
    """As ``BufferFullError``, and the disk spool is full (``AUDIOSYNC_SPOOL_MAX_BYTES``)."""


class StorageError(AudioSyncError):
    """Cloud storage refused or failed an operation."""


class ObjectGoneError(StorageError):
    """An object the listing named is not there any more (deleted since: a backfill's
    ``--delete``, a conversation delete)."""


class ObjectConflictError(StorageError):
    """A create-only upload found a different object already stored under the same name."""


class GapTooLongError(AudioSyncError):
    """A gap between two objects' audio is longer than ``AUDIOSYNC_MAX_GAP_FILL_SECONDS``,
    so filling it with silence was refused (usually a stray chunk with a wrong timestamp,
    e.g. 0). Read with ``fill_gaps=False``, or leave the stray object out with
    ``timestamps=``. ``before`` and ``after`` name the objects on either side."""

    def __init__(self, message: str, *, before: str, after: str, gap_seconds: float) -> None:
        super().__init__(message)
        self.before = before
        self.after = after
        self.gap_seconds = gap_seconds
