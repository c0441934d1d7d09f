"""``GcsBucket.create_only``, the fleet's one upload an object, sends the multipart insert
itself (backend_hooks/adapters/gcs.py): what it stores, and how it meets the faults the
library's path met (412, 503, lost responses, stalls, a 401 with expired credentials),
through the direct path (urllib3, no proxies in the environment) and through the
authorized session (proxies in the environment), against fake-gcs-server."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import Credentials

from audiosync_dev.faults import GcsFaultProxy, is_object_upload
from audiosync_dev.localstack import StackInfo
from backend_hooks.adapters import gcs
from backend_hooks.contract.errors import ObjectConflictError, StorageError
from backend_hooks.contract.settings import Settings

pytestmark = pytest.mark.integration

DATA = bytes(range(256)) * 300 + b"tail"
METADATA = {"audiosync-format": "1", "audiosync-chunks": "12"}


def bucket_at(url: str, bucket: str, path: str) -> gcs.GcsBucket:
    """A bucket whose client talks to ``url``: ``direct`` as the fleet runs without proxy
    variables, ``session`` as it runs with them (requests reads the environment)."""
    settings = Settings.from_env(
        {"STORAGE_EMULATOR_HOST": url, "BUCKET_PRIVATE_CLOUD_SYNC": bucket}
    )
    made = gcs.GcsBucket.from_settings(settings)
    made.client._http.trust_env = path == "session"
    return made


@pytest.fixture(params=["direct", "session"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def unique_name() -> str:
    return f"create-only-test/{uuid.uuid4().hex}.opus"


def first_upload_only() -> Any:
    uploads: list[str] = []

    def match(method: str, url_path: str) -> bool:
        if not is_object_upload(method, url_path):
            return False
        uploads.append(url_path)
        return len(uploads) == 1

    return match


def test_an_upload_stores_its_bytes_type_metadata_and_checksums(
    stack: StackInfo, path: str
) -> None:
    bucket = bucket_at(stack.gcs_url, stack.bucket, path)
    name = unique_name()
    assert bucket.create_only(name, DATA, content_type="audio/ogg", metadata=METADATA) == "created"
    stored = bucket.stored(name)
    assert stored.size == len(DATA) and stored.content_type == "audio/ogg"
    assert stored.metadata == METADATA
    assert stored.crc32c == gcs._crc32c_b64(DATA) and stored.md5_hash == gcs._md5_b64(DATA)
    assert bucket.download(name) == DATA
    assert bucket.holds(name, DATA) is True


def test_a_taken_name_is_already_stored_with_the_same_bytes_and_a_conflict_with_others(
    stack: StackInfo, path: str
) -> None:
    bucket = bucket_at(stack.gcs_url, stack.bucket, path)
    name = unique_name()
    bucket.create_only(name, DATA, content_type="audio/ogg", metadata=METADATA)
    again = bucket.create_only(name, DATA, content_type="audio/ogg", metadata=METADATA)
    assert again == "already_stored"
    with pytest.raises(ObjectConflictError):
        bucket.create_only(name, DATA + b"x", content_type="audio/ogg", metadata=METADATA)
    assert bucket.download(name) == DATA  # never overwritten


def test_a_503_is_retried_and_the_object_stored_once(stack: StackInfo, path: str) -> None:
    name = unique_name()
    with GcsFaultProxy(stack.gcs_url, error_rate=1.0, seed=11, match=first_upload_only()) as proxy:
        bucket = bucket_at(proxy.url, stack.bucket, path)
        outcome = bucket.create_only(name, DATA, content_type="audio/ogg", metadata=METADATA)
        stats = proxy.stats
    assert outcome == "created"
    assert stats.errors == 1
    assert bucket_at(stack.gcs_url, stack.bucket, path).download(name) == DATA


def test_a_lost_response_is_retried_into_a_412_checked_equal(stack: StackInfo, path: str) -> None:
    name = unique_name()
    with GcsFaultProxy(
        stack.gcs_url, lost_response_rate=1.0, seed=12, match=first_upload_only()
    ) as proxy:
        bucket = bucket_at(proxy.url, stack.bucket, path)
        outcome = bucket.create_only(name, DATA, content_type="audio/ogg", metadata=METADATA)
        stats = proxy.stats
    assert stats.lost_responses == 1
    assert outcome == "already_stored"  # stored by the attempt whose answer was lost


def test_uploads_failing_past_the_deadline_raise_storage_error(stack: StackInfo, path: str) -> None:
    name = unique_name()
    with GcsFaultProxy(stack.gcs_url, error_rate=1.0, seed=13, match=is_object_upload) as proxy:
        bucket = bucket_at(proxy.url, stack.bucket, path)
        started = time.monotonic()
        with pytest.raises(StorageError, match=name):
            bucket.create_only(name, DATA, content_type="audio/ogg", metadata={}, deadline=2.0)
        elapsed = time.monotonic() - started
        assert proxy.stats.errors >= 1
    assert elapsed < 30  # bounded by the deadline (generously: a loaded machine)
    assert bucket_at(stack.gcs_url, stack.bucket, path).stored(name) is None


def test_a_stalled_upload_times_out_and_raises_storage_error(stack: StackInfo, path: str) -> None:
    name = unique_name()
    with GcsFaultProxy(
        stack.gcs_url,
        stall_before_rate=1.0,
        stall_seconds=(4.0, 4.0),
        seed=14,
        match=is_object_upload,
    ) as proxy:
        bucket = bucket_at(proxy.url, stack.bucket, path)
        started = time.monotonic()
        with pytest.raises(StorageError):
            bucket.create_only(name, DATA, content_type="audio/ogg", metadata={}, deadline=2.0)
        elapsed = time.monotonic() - started
    assert elapsed < 30


class _Expiring(Credentials):
    """Credentials whose first token the server refuses; a refresh makes the next."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = "first"
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = f"fresh-{self.refreshes}"


@pytest.fixture
def refusing_first_token() -> Iterator[tuple[str, list[str]]]:
    """A server answering an insert 401 unless its bearer token is a refreshed one."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sent = self.rfile.read(int(self.headers["Content-Length"]))
            token = self.headers.get("Authorization", "")
            seen.append(token)
            status = 200 if token.startswith("Bearer fresh-") else 401
            resource = json.loads(sent.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0])
            body = json.dumps(resource if status == 200 else {"error": {"code": 401}})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_401_refreshes_the_credentials_and_sends_again(
    refusing_first_token: tuple[str, list[str]], path: str
) -> None:
    url, seen = refusing_first_token
    bucket = bucket_at(url, "bk", path)
    credentials = _Expiring()
    bucket.client._http.credentials = credentials
    outcome = bucket.create_only(unique_name(), DATA, content_type="audio/ogg", metadata={})
    assert outcome == "created"
    assert seen == ["Bearer first", "Bearer fresh-1"]
    assert credentials.refreshes == 1


class _Wrapped(gcs.GcsBucket):
    """A bucket made as the test doubles make theirs: ``client`` and ``bucket`` set, no
    ``GcsBucket.__init__``."""

    def __init__(self, inner: gcs.GcsBucket) -> None:
        self.client, self.bucket = inner.client, inner.bucket


def test_a_bucket_set_up_without_its_init_uploads_too(stack: StackInfo) -> None:
    bucket = _Wrapped(bucket_at(stack.gcs_url, stack.bucket, "direct"))
    name = unique_name()
    assert bucket.create_only(name, DATA, content_type="audio/ogg", metadata={}) == "created"
    assert bucket.download(name) == DATA


@pytest.fixture
def answering_other_things() -> Iterator[str]:
    """A server (a proxy, a portal, a misrouted endpoint) whose answers to an insert are
    not the inserted object: ``/html`` a 200 page, ``/other`` a 200 resource of another
    object, ``/moved`` a 302 to a 200 resource of another object. It stores nothing."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, status: int, body: bytes, **headers: str) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            bucket = self.path.split("/b/", 1)[1].split("/", 1)[0]
            if bucket == "html":
                self._answer(200, b"<html>signed in</html>", **{"Content-Type": "text/html"})
            elif bucket == "other":
                self.do_GET()
            else:
                self._answer(302, b"", Location="/elsewhere")

        def do_GET(self) -> None:
            body = json.dumps({"name": "another/object.opus", "crc32c": "AAAAAA=="}).encode()
            self._answer(200, body, **{"Content-Type": "application/json"})

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("answer", ["html", "other", "moved"])
def test_an_answer_that_is_not_the_inserted_object_is_no_creation(
    answering_other_things: str, path: str, answer: str
) -> None:
    """A "created" lets the flush delete the stream entries: it is said only when the answer
    is the resource of the object sent (its name and CRC32C), never for a page, another
    object's resource, or a redirect (which requests would follow as a GET)."""
    bucket = bucket_at(answering_other_things, answer, path)
    with pytest.raises(StorageError):
        bucket.create_only(unique_name(), DATA, content_type="audio/ogg", metadata={}, deadline=4)
