"""The local stack against its real servers: valkey and fake-gcs-server, no mocks."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from google.api_core.exceptions import PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from audiosync_dev.localstack import LocalStack, LocalStackError, StackInfo

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


def gcs_client() -> storage.Client:
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return storage.Client(project="local", credentials=credentials)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ports(info: StackInfo) -> list[int]:
    return [urlsplit(url).port or 0 for url in (info.redis_url, info.gcs_url)]


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains text."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass  # the process ended meanwhile
    return found


def test_env_is_exported(stack: StackInfo) -> None:
    env = stack.env()
    assert env == {
        "AUDIOSYNC_REDIS_URL": stack.redis_url,
        "CELERY_BROKER_URL": stack.redis_url,
        "BUCKET_PRIVATE_CLOUD_SYNC": stack.bucket,
        "STORAGE_EMULATOR_HOST": stack.gcs_url,
        "GOOGLE_CLOUD_PROJECT": "local",
    }
    assert stack.redis_url.startswith("redis://127.0.0.1:") and stack.redis_url.endswith("/0")
    assert stack.gcs_url.startswith("http://127.0.0.1:")
    assert {key: os.environ.get(key) for key in env} == env


def test_valkey_answers_with_appendonly(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"


def test_bucket_exists(stack: StackInfo) -> None:
    bucket = gcs_client().get_bucket(stack.bucket)
    assert bucket.name == stack.bucket


def test_upload_if_generation_match_zero_succeeds_once(stack: StackInfo) -> None:
    name = f"tests/{uuid.uuid4().hex}.txt"
    bucket = gcs_client().bucket(stack.bucket)
    bucket.blob(name).upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob(name).upload_from_string(b"second", if_generation_match=0)
    assert bucket.blob(name).download_as_bytes() == b"first"


def test_write_survives_restart_redis() -> None:
    stack = LocalStack()
    with stack as info:
        client = redis.Redis.from_url(info.redis_url)
        client.set("survivor", "still here")
        time.sleep(1.5)  # appendfsync everysec: the write is on disk after a second
        pid_before = stack.pids["valkey"]
        stack.restart_redis()
        assert stack.pids["valkey"] != pid_before
        assert not alive(pid_before)
        # `--save ""` keeps no RDB snapshot: the value can only come back from the AOF.
        assert client.get("survivor") == b"still here"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()


def test_stop_ends_servers_and_frees_ports() -> None:
    stack = LocalStack()
    info = stack.start()
    pids = stack.pids
    assert set(pids) == {"valkey", "fake-gcs-server"}
    assert all(alive(pid) for pid in pids.values())
    stack.stop()
    assert not any(alive(pid) for pid in pids.values())
    assert all(refuses(port) for port in ports(info))
    assert not info.workdir.exists()
    stack.stop()  # idempotent


def test_stop_runs_when_with_body_raises() -> None:
    stack = LocalStack()
    with pytest.raises(Boom), stack as info:
        pids = stack.pids
        raise Boom
    assert pids and not any(alive(pid) for pid in pids.values())
    assert all(refuses(port) for port in ports(info))
    assert not info.workdir.exists()


def test_failed_start_stops_what_was_started(tmp_path: Path) -> None:
    (tmp_path / "gcs").write_text("a file where fake-gcs-server wants its directory")
    stack = LocalStack(workdir=tmp_path)
    with pytest.raises(LocalStackError, match="fake-gcs-server exited") as err:
        stack.start()
    assert "couldn't start the server" in str(err.value)  # the tail of the server's log
    assert (tmp_path / "valkey.log").exists()  # valkey was started first ...
    assert stack.pids == {}
    assert processes_mentioning(str(tmp_path)) == []  # ... and stopped again


def test_invalid_bucket_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match="invalid bucket name"):
        LocalStack(bucket="Not A Bucket", workdir=tmp_path).start()
    assert processes_mentioning(str(tmp_path)) == []
