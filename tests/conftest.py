"""Shared fixtures: one local stack (valkey + fake-gcs-server) for the whole test session, and
a second one with a 3-master Redis Cluster, started only if a test asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from redis.cluster import RedisCluster

from audiosync_dev.localstack import LocalStack, StackInfo

# Property tests check behaviour, not speed (speed belongs to bench/): no per-example
# deadline and no "too slow" health check, which fail an example or its data generation
# that a busy machine merely ran slowly. A test's own @settings(...) keeps these.
hypothesis_settings.register_profile(
    "audiosync", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("audiosync")


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


@pytest.fixture(scope="session")
def cluster_stack() -> Iterator[LocalStack]:
    """A second running LocalStack, with a 3-master Redis Cluster for the streams (plain
    valkey as the broker). Its env is not in os.environ: pass ``cluster_stack.info.env()``."""
    stack = LocalStack(cluster=True)
    with stack:
        yield stack


@pytest.fixture
def cluster_client(cluster_stack: LocalStack) -> Iterator[RedisCluster]:
    """A RedisCluster client of ``cluster_stack``'s cluster, every primary emptied first."""
    url = cluster_stack.info.redis_cluster_url
    assert url is not None
    client = RedisCluster.from_url(url)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()
