"""What the speech backend's pusher calls: ``AudioSyncClient`` and its sessions.

The read side (list, download-and-merge, delete) is ``backend_hooks.storage``, the
backend's facade over the read engine (``backend_hooks.read.reader``) and ``conversations``.
``AudioSyncClient`` and ``Session`` load on first use: the worker fleet imports the
shared contract modules of this package (entries, naming, container framing, keys)
without the pusher's codec, so it runs without libopus.
"""

from typing import TYPE_CHECKING, Any

from backend_hooks.contract.build_info import __version__
from backend_hooks.contract.errors import (
    AudioSyncError,
    BufferFullError,
    ConfigError,
    DecryptionError,
    EnqueueError,
    FormatError,
    InvalidInputError,
    SessionClosedError,
    SplicedRecordError,
    SpoolFullError,
    StorageError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:
    from backend_hooks.pusher.client import AudioSyncClient
    from backend_hooks.pusher.session import Session


def __getattr__(name: str) -> Any:
    if name in ("AudioSyncClient", "Session"):
        from backend_hooks.pusher import client, session

        return getattr(client if name == "AudioSyncClient" else session, name)
    raise AttributeError(f"module 'backend_hooks' has no attribute {name!r}")


__all__ = [
    "AudioSyncClient",
    "AudioSyncError",
    "BufferFullError",
    "ConfigError",
    "DecryptionError",
    "EnqueueError",
    "FormatError",
    "InvalidInputError",
    "Session",
    "SessionClosedError",
    "SplicedRecordError",
    "SpoolFullError",
    "StorageError",
    "UnsupportedFormatError",
    "__version__",
]
