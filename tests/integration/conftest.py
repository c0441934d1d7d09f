"""Fixtures of the integration tests: a worker context on the session's servers, a settable
clock, a valkey of a test's own, credentials that sign URLs offline, and a backfill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from audiosync_dev.localstack import StackInfo, StandaloneValkey
from backend_hooks import storage
from backend_hooks.adapters.redis_store import redis_time
from backend_hooks.contract.settings import Settings
from tests.integration.backfilling import SECRET as BACKFILL_SECRET
from tests.integration.flushing import FakeClock
from workers import backfill
from workers.context import WorkerContext


@pytest.fixture
def clock(redis_client: redis.Redis) -> FakeClock:
    """Starts at Redis server time, the clock the stream ids and due times come from."""
    return FakeClock(redis_time(redis_client))


@pytest.fixture
def ctx(stack: StackInfo, redis_client: redis.Redis, clock: FakeClock) -> WorkerContext:
    """A worker context on the (emptied) session servers, with ``clock`` as its clock."""
    return WorkerContext.from_settings(Settings.from_env(stack.env()), clock=clock)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[StandaloneValkey]:
    """A valkey of the test's own, to stop, stall (SIGSTOP) and restart."""
    with StandaloneValkey(tmp_path / "valkey") as server:
        yield server


@pytest.fixture(scope="module")
def signer() -> service_account.Credentials:
    """Service-account credentials from a locally made RSA key: they sign URLs offline."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "client_email": "reader@audiosync-test.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
        "project_id": "audiosync-test",
    }
    credentials: service_account.Credentials = (
        service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    )
    return credentials


@pytest.fixture(scope="module")
def backfill_settings(stack: StackInfo) -> Settings:
    """The backfill role's settings on the session's servers, with the secret the backfill
    tests seal their legacy objects with (tests/integration/backfilling.py)."""
    return Settings.from_env({**stack.env(), "ENCRYPTION_SECRET": BACKFILL_SECRET}, role="backfill")


@pytest.fixture
def bf(backfill_settings: Settings) -> backfill.Backfill:
    """A backfill on the session's servers (its bucket counts its calls: one per test)."""
    return backfill.Backfill.from_settings(backfill_settings)


@pytest.fixture(scope="module")
def backfill_reader(backfill_settings: Settings) -> storage.StorageContext:
    """A reader's context that opens what the backfill tests seal (``backfill_settings``)."""
    return storage.StorageContext.from_settings(backfill_settings)
