"""Adversary 8's reader fixtures: a reader context on the session's emulator and Redis,
service-account credentials that sign offline, and a one-chunk legacy conversation."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from audiosync_dev.localstack import StackInfo
from backend_hooks import storage
from backend_hooks.settings import Settings
from tests.legacy_objects import write_legacy

T0 = float(int(time.time())) - 3600


@pytest.fixture(scope="module")
def sctx(stack: StackInfo) -> storage.StorageContext:
    return storage.StorageContext.from_settings(Settings.from_env(stack.env(), role="reader"))


@pytest.fixture(scope="module")
def signer() -> service_account.Credentials:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "client_email": "adv8@audiosync-test.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
        "project_id": "audiosync-test",
    }
    credentials: service_account.Credentials = (
        service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    )
    return credentials


def _conversation(sctx: storage.StorageContext, tag: str) -> tuple[str, str]:
    uid, cid = f"adv8{tag}-{uuid.uuid4().hex[:8]}", "conv"
    pcm = random.Random(tag).randbytes(2 * 16000 * 2)
    write_legacy(sctx.bucket, uid, cid, ".bin", [T0], [pcm])
    return uid, cid
