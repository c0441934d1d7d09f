"""The only module that speaks Google Cloud Storage (or its emulator).

Uploads are create-only (``if_generation_match=0``). A 412 means an object of that name
exists: it is checked against what would have been written (size, MD5 and CRC32C) and is
success only when they match; otherwise ``ObjectConflictError``. Because the precondition
is set, retrying transient errors is safe; ``create_only`` bounds the retries by a deadline.

``create_only`` (the fleet's one upload an object) sends the JSON API's multipart insert
itself, the request google-cloud-storage's ``upload_from_string`` sends (object resource
with its CRC32C, then the bytes; ``ifGenerationMatch=0``), through the client's own
authorized session (its credentials, refreshed as they expire), to a URL made once per
bucket: the library's path builds a blob, an upload object, headers and a tracing span
per call, a third of a flush's CPU. Errors are typed as the library types them
(``google.api_core.exceptions.from_http_response``: 412 ``PreconditionFailed``, 503
``ServiceUnavailable``...) and retried by the library's own ``DEFAULT_RETRY``. A 200 is
"created" only when its body is the sent object's resource (name, CRC32C): a proxy's page or
another object's resource is a ``StorageError``; redirects are not followed.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
import os
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any, Literal
from urllib.parse import quote

import google_crc32c
import requests
import urllib3
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Signing
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from backend_hooks.contract.errors import (
    ConfigError,
    InvalidInputError,
    ObjectConflictError,
    ObjectGoneError,
    StorageError,
)
from backend_hooks.contract.settings import Settings

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


@dataclass(frozen=True)
class ObjectVersion:
    """One stored object as listed with what identifies its bytes: the generation (a new
    one at every write) and the hashes GCS keeps (base64, as the API returns them)."""

    name: str
    size: int
    generation: int
    md5_hash: str | None
    crc32c: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    def same_bytes(self, other: Any) -> bool:
        """Whether ``other`` (a ``Blob`` or an ``ObjectVersion``) holds the same bytes:
        size, and every hash both have (CRC32C at least)."""
        if int(other.size or 0) != self.size or not self.crc32c or self.crc32c != other.crc32c:
            return False
        return self.md5_hash is None or other.md5_hash is None or self.md5_hash == other.md5_hash


CopyOutcome = Literal["copied", "already_there"]
#: Objects deleted at once by ``delete_prefix``.
DELETE_THREADS = 8
#: Bytes of a file upload (``upload_file_if_generation``) over 8 MiB sent per request
#: (the client reads each chunk into memory, and copies it once); a multiple of the
#: 256 KiB GCS asks of chunks. A file of at most 8 MiB goes in one request.
UPLOAD_CHUNK_BYTES = 2 * 1024 * 1024
#: The longest a v4 signed URL may be valid (GCS refuses more: 7 days).
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600


def checked_expiration(expiration: object) -> timedelta:
    """Pure: ``expiration`` if it is a ``timedelta`` from 1 s to 7 days (what GCS signs),
    else ``InvalidInputError``. Callers check it before any work the URL is for (a merged
    WAV is not made and uploaded only to be refused its URL)."""
    if not isinstance(expiration, timedelta):
        raise InvalidInputError(
            f"a signed URL's expiration must be a datetime.timedelta, got "
            f"{type(expiration).__name__} {expiration!r} (seconds: timedelta(seconds=...))"
        )
    if not 1 <= expiration.total_seconds() <= MAX_SIGNED_URL_SECONDS:
        raise InvalidInputError(
            f"a signed URL's expiration must be from 1 s to 7 days, got {expiration}"
        )
    return expiration


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _crc32c_b64(data: bytes) -> str:
    return base64.b64encode(struct.pack(">I", google_crc32c.value(data))).decode()


#: The JSON API's multipart insert, create-only: ``{base}`` the client's endpoint.
_INSERT_URL = "{base}/upload/storage/v1/b/{bucket}/o?uploadType=multipart&ifGenerationMatch=0"


@dataclass(frozen=True)
class _InsertTarget:
    """Where and how a bucket's create-only inserts go, made once per client and bucket."""

    client: Any
    bucket: str
    url: str
    path: str  # the URL's path and query, for the connection pool
    request: requests.PreparedRequest  # for the adapter's pool and TLS settings
    user_agent: str
    extra_headers: dict[str, str]

    @classmethod
    def of(cls, client: storage.Client, bucket: str) -> _InsertTarget:
        connection = client._connection
        base = connection.get_api_base_url_for_mtls()
        url = _INSERT_URL.format(base=base, bucket=quote(bucket, safe=""))
        return cls(
            client=client,
            bucket=bucket,
            url=url,
            path="/" + url.split("/", 3)[3],
            request=requests.Request("POST", url).prepare(),
            user_agent=str(connection.user_agent),
            extra_headers=dict(getattr(client, "_extra_headers", None) or {}),
        )


def _multipart(resource: dict[str, Any], data: bytes, content_type: str) -> tuple[bytes, str]:
    """The body of a multipart insert (the object resource as JSON, then the bytes) and
    its content type; the boundary is random, as the library's is."""
    boundary = b"===============" + os.urandom(12).hex().encode() + b"=="
    separator = b"--" + boundary
    body = b"".join(
        [
            separator,
            b"\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n",
            json.dumps(resource).encode(),
            b"\r\n",
            separator,
            b"\r\ncontent-type: ",
            content_type.encode(),
            b"\r\n\r\n",
            data,
            b"\r\n",
            separator,
            b"--",
        ]
    )
    return body, f'multipart/related; boundary="{boundary.decode()}"'


def _check_inserted(answer: bytes, name: str, crc32c: str, bucket: str) -> None:
    """A 200 is the insert's success only when its body is the resource of the object sent
    (its name, and its CRC32C when given): anything else (a proxy's or portal's page,
    another object's resource) stored nothing we know of, and "created" would let the
    flush delete the entries. ``StorageError`` (not retried: the flush tries again)."""
    try:
        stored = json.loads(answer)
    except ValueError:
        stored = None
    if (
        not isinstance(stored, dict)
        or stored.get("name") != name
        or stored.get("crc32c", crc32c) != crc32c
    ):
        raise StorageError(
            f"upload of gs://{bucket}/{name} answered 200 with no resource of that object: "
            f"{answer[:200].decode(errors='replace')!r}"
        )


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
        ends = time.monotonic() + deadline
        try:  # the upload may take three quarters of the deadline, the 412 check the rest
            self._insert_new(name, data, content_type, metadata, deadline)
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

    def _insert_new(
        self,
        name: str,
        data: bytes,
        content_type: str,
        metadata: dict[str, str],
        deadline: float,
    ) -> None:
        """One create-only multipart insert (see the module docstring): each request may
        take a quarter of ``deadline``, retries start within half of it. Raises what the
        library raises: ``PreconditionFailed`` when the name is taken, another
        ``GoogleAPIError`` (``RetryError`` once retries ran out) otherwise."""
        target = self._insert_target()
        crc32c = _crc32c_b64(data)
        resource = {
            "name": name,
            "contentType": content_type,
            "metadata": metadata,
            "crc32c": crc32c,  # GCS refuses the bytes if they do not match it
        }
        body, body_type = _multipart(resource, data, content_type)
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": target.user_agent,
            "x-goog-api-client": f"{target.user_agent} gccl-invocation-id/{uuid.uuid4()}",
            "content-type": body_type,
            **target.extra_headers,
        }
        timeout = deadline / 4

        def attempt() -> None:
            status, answer = self._post(target, body, headers, timeout)
            if status != 200:
                text = answer.decode(errors="replace")
                message = f"POST {target.url}: {text}"
                raise gexc.from_http_status(status, message)  # type: ignore[no-untyped-call]
            _check_inserted(answer, name, crc32c, target.bucket)

        DEFAULT_RETRY.with_timeout(deadline / 2)(attempt)()

    def _insert_target(self) -> _InsertTarget:
        """This bucket's insert target, made on first use (and again if ``client`` or
        ``bucket`` was replaced: a subclass may set them without ``__init__``)."""
        target: _InsertTarget | None = self.__dict__.get("_insert")
        if target is None or target.client is not self.client or target.bucket != self.bucket.name:
            target = _InsertTarget.of(self.client, self.bucket.name)
            self.__dict__["_insert"] = target
        return target

    def _post(
        self, target: _InsertTarget, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        """POST ``body`` to the insert URL as the client's authorized session would: its
        credentials' headers (refreshed when they expire, and after a 401 as the session
        does), the connection pool and TLS settings of its transport adapter; urllib3
        straight, without requests' per-call machinery (hooks, cookies, settings merged
        from the environment), when the session reads no proxies from the environment
        (``_read_environment_once``) and speaks no mutual TLS; else (or for a session that
        is not google-auth's ``AuthorizedSession``) the session itself."""
        session = self.client._http
        url = target.url
        adapter = session.get_adapter(url)
        pool_for = getattr(adapter, "get_connection_with_tls_context", None)
        authorized = hasattr(session, "_auth_request")  # google-auth's AuthorizedSession
        if pool_for is None or not authorized or session.trust_env or session.is_mtls:
            response = session.request(
                "POST", url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
            return int(response.status_code), bytes(response.content)
        pool = pool_for(target.request, session.verify, None, session.cert)
        credentials, auth_request = session.credentials, session._auth_request
        refreshes = int(getattr(session, "_max_refresh_attempts", 2))
        for refreshed in range(refreshes + 1):
            sent = dict(headers)
            credentials.before_request(auth_request, "POST", url, sent)
            answer = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=sent,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=False,
                redirect=False,
                assert_same_host=False,
            )
            if answer.status != 401 or refreshed == refreshes:
                break
            credentials.refresh(auth_request)  # as the session does on a 401
        return int(answer.status), bytes(answer.data)

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
        except gexc.NotFound as exc:
            raise ObjectGoneError(
                f"gs://{self.bucket.name}/{name} is not there (deleted since it was listed?)"
            ) from exc
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

    def delete(self, name: str, *, deadline: float | None = None) -> None:
        """Delete ``name`` (gone already: not an error). ``deadline`` bounds the call,
        retries included, as ``stored`` does; None: the client library's defaults (60 s a
        request, retried for 120 s)."""
        try:
            if deadline is None:
                self.bucket.blob(name).delete()
            else:
                retry = DEFAULT_RETRY.with_timeout(deadline / 2)
                self.bucket.blob(name).delete(timeout=deadline / 2, retry=retry)
        except gexc.NotFound:
            return  # already gone: deleting is idempotent
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"delete of gs://{self.bucket.name}/{name} failed: {exc}") from exc

    def list_versions(self, prefix: str) -> builtins.list[ObjectVersion]:
        """Every object under ``prefix`` with its generation and hashes."""
        try:
            return [
                ObjectVersion(
                    name=b.name,
                    size=int(b.size or 0),
                    generation=int(b.generation or 0),
                    md5_hash=b.md5_hash,
                    crc32c=b.crc32c,
                    metadata=dict(b.metadata or {}),
                )
                for b in self.client.list_blobs(self.bucket, prefix=prefix)
            ]
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"listing gs://{self.bucket.name}/{prefix} failed: {exc}") from exc

    def copy_create_only(
        self, source: ObjectVersion, destination: str, *, deadline: float = DEFAULT_DEADLINE
    ) -> CopyOutcome:
        """Server-side copy (``rewrite``: no bytes pass through this process) of the
        listed ``source`` to ``destination``, unless ``destination`` exists.

        A destination already holding the same bytes (size, CRC32C, MD5) is
        ``already_there``, one holding other bytes ``ObjectConflictError``: it is looked
        at first (one GET, cheaper than a rewrite, so a second run copies nothing), and
        the rewrite itself is create-only (``if_generation_match=0``) and pinned to the
        listed generation of the source (``if_source_generation_match``), so two copies
        racing, or a source rewritten meanwhile, never overwrite anything on GCS.
        (fake-gcs-server ignores both preconditions on rewrite; the GET before, and the
        CRC32C of the copy checked after, stand in for them there.) A source gone since it
        was listed, or any other failure, is ``StorageError`` naming both objects: never a
        silent skip."""
        what = f"copy of gs://{self.bucket.name}/{source.name} to {destination}"
        existing = self.stored(destination, deadline=deadline / 4)
        if existing is None:
            target = self.bucket.blob(destination)
            retry = DEFAULT_RETRY.with_timeout(deadline / 2)
            try:
                token: str | None = None
                while True:  # rewrite answers in steps for large objects; ours take one
                    token, _, _ = target.rewrite(
                        self.bucket.blob(source.name),
                        token=token,
                        if_generation_match=0,
                        if_source_generation_match=source.generation,
                        timeout=deadline / 4,
                        retry=retry,
                    )
                    if token is None:
                        break
            except gexc.PreconditionFailed:
                existing = self.stored(destination, deadline=deadline / 4)
                if existing is None:
                    raise StorageError(
                        f"{what} failed: the source was rewritten since it was listed "
                        f"(generation {source.generation} is gone); list it again and retry"
                    ) from None
            except gexc.NotFound as exc:
                raise StorageError(
                    f"{what} failed: the source is gone (deleted since it was listed?): "
                    f"{exc}; list the conversation again and retry"
                ) from exc
            except gexc.GoogleAPIError as exc:
                raise StorageError(f"{what} failed: {exc}; retry (copies are create-only)") from exc
            else:
                if not source.same_bytes(target):
                    raise StorageError(
                        f"{what}: the copy holds other bytes than the source as listed "
                        f"(crc32c {target.crc32c}, listed {source.crc32c}): the source "
                        "changed while it was copied; look at both, then retry"
                    )
                return "copied"
        if source.same_bytes(existing):
            return "already_there"
        raise ObjectConflictError(
            f"{what}: gs://{self.bucket.name}/{destination} exists with other bytes "
            f"({int(existing.size or 0)} bytes, crc32c {existing.crc32c}; the source has "
            f"{source.size} bytes, crc32c {source.crc32c}); nothing was overwritten: "
            "look at both objects before deleting either"
        )

    def upload_file_if_generation(
        self,
        name: str,
        fileobj: IO[bytes],
        *,
        size: int,
        if_generation_match: int,
        content_type: str,
        metadata: dict[str, str],
        deadline: float = DEFAULT_DEADLINE,
    ) -> bool:
        """Upload ``size`` bytes from ``fileobj`` (read as it goes, never held whole) if
        the object's generation is still ``if_generation_match`` (0: it does not exist);
        False when it is not (another writer came first: nothing was overwritten).

        Memory: a file of at most 8 MiB is read whole (one request); a larger one in
        chunks of ``UPLOAD_CHUNK_BYTES`` (the client's default chunk is 100 MiB)."""
        blob = self.bucket.blob(name)
        blob.chunk_size = UPLOAD_CHUNK_BYTES
        blob.metadata = metadata
        try:
            blob.upload_from_file(
                fileobj,
                size=size,
                content_type=content_type,
                if_generation_match=if_generation_match,
                timeout=deadline / 2,
                retry=DEFAULT_RETRY.with_timeout(deadline / 2),
            )
        except gexc.PreconditionFailed:
            return False
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"upload of gs://{self.bucket.name}/{name} failed: {exc}") from exc
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (which must end with ``/``, so that
        ``chunks/u/c/`` never takes ``chunks/u/c2/`` with it); how many this call deleted
        (objects already gone are not counted: deleting is idempotent)."""
        if not prefix.endswith("/") or prefix == "/":
            raise ValueError(f"delete_prefix needs a folder prefix ending with '/', got {prefix!r}")
        names = [stored.name for stored in self.list(prefix)]

        def one(name: str) -> int:
            try:
                self.bucket.blob(name).delete()
            except gexc.NotFound:
                return 0
            except gexc.GoogleAPIError as exc:
                raise StorageError(
                    f"delete of gs://{self.bucket.name}/{name} failed: {exc}; the rest of "
                    f"{prefix} may still be there: run the delete again"
                ) from exc
            return 1

        if not names:
            return 0
        with ThreadPoolExecutor(min(DELETE_THREADS, len(names))) as pool:
            return sum(pool.map(one, names))

    def signer(self, credentials: Any, name: str) -> Signing:
        """The credentials that sign URLs of ``name``: ``credentials``, or the client's
        own when None; ``ConfigError`` when they cannot sign. Callers ask before any work
        the URL is for."""
        signer = credentials if credentials is not None else self.client._credentials
        if not isinstance(signer, Signing):
            raise ConfigError(
                f"cannot sign a URL for gs://{self.bucket.name}/{name}: the storage client's "
                f"credentials ({type(signer).__name__}) cannot sign; pass signing "
                "credentials (a service account's), or run with a service account key"
            )
        return signer

    def signed_url(
        self,
        name: str,
        *,
        expiration: timedelta,
        credentials: Any = None,
        api_access_endpoint: str | None = None,
    ) -> str:
        """A v4 signed GET URL of ``name``, valid for ``expiration`` (1 s to 7 days).

        ``credentials`` sign it (a ``google.auth.credentials.Signing``, e.g. service
        account credentials); None: the client's own, which must be able to sign.
        ``api_access_endpoint``: where the URL points (the emulator's address in tests)."""
        checked_expiration(expiration)
        signer = self.signer(credentials, name)
        try:
            return str(
                self.bucket.blob(name).generate_signed_url(
                    version="v4",
                    expiration=expiration,
                    method="GET",
                    credentials=signer,
                    **({"api_access_endpoint": api_access_endpoint} if api_access_endpoint else {}),
                )
            )
        except (gexc.GoogleAPIError, ValueError, AttributeError) as exc:
            raise StorageError(
                f"signing a URL for gs://{self.bucket.name}/{name} failed: {exc}"
            ) from exc
