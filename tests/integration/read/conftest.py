"""Fixtures of the read-side integration tests."""

from __future__ import annotations

import pytest

from audiosync_dev.localstack import StackInfo
from backend_hooks import storage
from backend_hooks.settings import Settings


@pytest.fixture(scope="module")
def sctx(stack: StackInfo) -> storage.StorageContext:
    """A reader's context on the session's emulator and Redis, with no encryption secret
    (a test module that needs one defines its own ``sctx``)."""
    return storage.StorageContext.from_settings(Settings.from_env(stack.env(), role="reader"))
