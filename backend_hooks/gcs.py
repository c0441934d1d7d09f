"""The only module that speaks Google Cloud Storage (or its emulator).

Uploads are create-only (``if_generation_match=0``). A 412 means an object of that name
exists: it is checked against what would have been written (size, MD5 and CRC32C) and is
success only when they match; otherwise ``ObjectConflictError``. Because the precondition
is set, retrying transient errors is safe; ``create_only`` bounds the retries by a deadline.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import google_crc32c
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from backend_hooks.errors import ObjectConflictError, StorageError
from backend_hooks.settings import Settings

UploadOutcome = Literal["created", "already_stored"]
#: Seconds one create-only upload may take by default, retries included (the flush passes
#: a share of its lease instead).
DEFAULT_DEADLINE = 60.0


#: Variables through which requests finds proxies in the environment.
_PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def make_client(settings: Settings) -> storage.Client:
    if settings.storage_emulator_host:
        # The client reads STORAGE_EMULATOR_HOST itself; pass it too so the Settings win.
        client = storage.Client(
            project="local",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": settings.storage_emulator_host},
        )
    else:
        client = storage.Client()
    _read_environment_once(client._http)
    return client


def _read_environment_once(session: Any) -> None:
    """requests reads the proxy and CA variables (walking all of os.environ) on every
    request: a tenth of a flush's CPU. Without proxy variables, read the CA bundle once,
    as requests would (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE), and stop it looking."""
    names = {name.lower() for name in os.environ}
    if any(n in names for n in _PROXY_ENV):
        return  # proxies with no_proxy rules: leave them to requests
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _crc32c_b64(data: bytes) -> str:
    return base64.b64encode(struct.pack(">I", google_crc32c.value(data))).decode()


class GcsBucket:
    def __init__(self, client: storage.Client, bucket_name: str) -> None:
        self.client = client
        self.bucket = client.bucket(bucket_name)

    @classmethod
    def from_settings(cls, settings: Settings) -> GcsBucket:
        return cls(make_client(settings), settings.bucket)

    def create_only(
        self,
        name: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str],
        deadline: float = DEFAULT_DEADLINE,
    ) -> UploadOutcome:
        """Upload unless the name exists; ``deadline`` bounds the whole call, retries included.

        Each upload request may take a quarter of it and retries stop starting after half,
        so the call returns (or raises ``StorageError``) within about ``deadline`` seconds,
        the check after a 412 included.
        """
        blob = self.bucket.blob(name)
        blob.metadata = metadata
        ends = time.monotonic() + deadline
        try:  # the upload may take three quarters of the deadline, the 412 check the rest
            blob.upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=0,
                timeout=deadline / 4,
                retry=DEFAULT_RETRY.with_timeout(deadline / 2),
            )
            return "created"
        except gexc.PreconditionFailed:
            pass
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"upload of gs://{self.bucket.name}/{name} failed: {exc}") from exc
        same = self.holds(name, data, deadline=ends - time.monotonic())
        if same is None:
            raise StorageError(f"gs://{self.bucket.name}/{name} answered 412 but is not there")
        if not same:
            raise ObjectConflictError(
                f"gs://{self.bucket.name}/{name} exists with other content than the "
                f"{len(data)} bytes this flush would write; the stream entries are kept"
            )
        return "already_stored"

    def holds(self, name: str, data: bytes, *, deadline: float = DEFAULT_DEADLINE) -> bool | None:
        """Whether the object ``name`` holds exactly ``data`` (size, MD5, CRC32C); None if
        there is no such object."""
        existing = self.stored(name, deadline=deadline)
        if existing is None:
            return None
        return bool(
            existing.size == len(data)
            and existing.md5_hash == _md5_b64(data)
            and existing.crc32c == _crc32c_b64(data)
        )

    def stored(self, name: str, *, deadline: float = DEFAULT_DEADLINE) -> Any:
        """The object's metadata (a ``Blob``), or None if there is none of that name."""
        if deadline <= 0:
            raise StorageError(f"no time left to check gs://{self.bucket.name}/{name}")
        try:
            retry = DEFAULT_RETRY.with_timeout(deadline / 2)
            return self.bucket.get_blob(name, timeout=deadline / 2, retry=retry)
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"checking gs://{self.bucket.name}/{name} failed: {exc}") from exc

    def list(self, prefix: str) -> list[StoredObject]:
        try:
            return [
                StoredObject(name=b.name, size=int(b.size or 0), metadata=dict(b.metadata or {}))
                for b in self.client.list_blobs(self.bucket, prefix=prefix)
            ]
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"listing gs://{self.bucket.name}/{prefix} failed: {exc}") from exc

    def download(self, name: str) -> bytes:
        try:
            return bytes(self.bucket.blob(name).download_as_bytes())
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"download of gs://{self.bucket.name}/{name} failed: {exc}") from exc

    def download_range(self, name: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object from byte ``start`` (one ranged read)."""
        try:
            data = self.bucket.blob(name).download_as_bytes(start=start, end=start + length - 1)
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"download of gs://{self.bucket.name}/{name} failed: {exc}") from exc
        if len(data) != length:
            raise StorageError(
                f"gs://{self.bucket.name}/{name}: asked for {length} bytes at {start}, got "
                f"{len(data)} (the object changed while it was read?)"
            )
        return bytes(data)

    def delete(self, name: str) -> None:
        try:
            self.bucket.blob(name).delete()
        except gexc.NotFound:
            return  # already gone: deleting is idempotent
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"delete of gs://{self.bucket.name}/{name} failed: {exc}") from exc
