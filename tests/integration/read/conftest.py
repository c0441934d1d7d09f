"""Fixtures of the read-side integration tests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audiosync_dev.localstack import StackInfo
from backend_hooks import storage
from backend_hooks.contract.settings import Settings
from tests.integration.read.sealing import SECRET


@pytest.fixture(scope="module")
def sctx(stack: StackInfo) -> storage.StorageContext:
    """A reader's context on the session's emulator and Redis, with no encryption secret
    (a test module that needs one defines its own ``sctx``)."""
    return storage.StorageContext.from_settings(Settings.from_env(stack.env(), role="reader"))


@pytest.fixture(scope="module")
def sealed_settings(stack: StackInfo) -> Settings:
    """Every setting of the session's servers, with the read-side tests' secret."""
    return replace(Settings.from_env(stack.env()), encryption_secret=SECRET)


@pytest.fixture(scope="module")
def sealed_sctx(stack: StackInfo) -> storage.StorageContext:
    """A reader's context on the session's emulator and Redis that opens what the
    read-side tests seal (tests/integration/read/sealing.py)."""
    settings = replace(Settings.from_env(stack.env(), role="reader"), encryption_secret=SECRET)
    return storage.StorageContext.from_settings(settings)
