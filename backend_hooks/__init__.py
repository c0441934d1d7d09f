"""What the speech backend's pusher calls: ``AudioSyncClient`` and its sessions.

The read side (list, download-and-merge, delete) is ``backend_hooks.storage``.
"""

from backend_hooks.errors import (
    AudioSyncError,
    ConfigError,
    DecryptionError,
    EnqueueError,
    FormatError,
    InvalidInputError,
    SessionClosedError,
    StorageError,
    UnsupportedFormatError,
)
from backend_hooks.session import AudioSyncClient, Session

__all__ = [
    "AudioSyncClient",
    "AudioSyncError",
    "ConfigError",
    "DecryptionError",
    "EnqueueError",
    "FormatError",
    "InvalidInputError",
    "Session",
    "SessionClosedError",
    "StorageError",
    "UnsupportedFormatError",
]
