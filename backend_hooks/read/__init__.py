"""The read side's engine: list, download and merge, delete (``reader``,
``conversations`` and the modules they use). The backend calls it through its facade,
``backend_hooks.storage``."""
