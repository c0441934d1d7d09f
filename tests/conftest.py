"""Shared fixtures: one local stack (valkey + fake-gcs-server) for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from audiosync_dev.localstack import LocalStack, StackInfo


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The running LocalStack (for tests that restart servers); its env is in os.environ."""
    stack = LocalStack()
    with stack as info, pytest.MonkeyPatch.context() as mp:
        for key, value in info.env().items():
            mp.setenv(key, value)
        yield stack


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> StackInfo:
    """Where the session's servers are; their env is exported into os.environ for the session."""
    return local_stack.info


@pytest.fixture
def redis_client(stack: StackInfo) -> Iterator[redis.Redis]:
    """A client of the session's valkey, emptied (FLUSHALL) before the test."""
    client = redis.Redis.from_url(stack.redis_url)
    client.flushall()
    yield client
    client.close()
