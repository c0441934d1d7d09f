"""Settings, read from the environment once, validated, with documented defaults.

Every environment variable audiosync reads is a row of ``VARIABLES``: its name, default,
parser, the roles that read it and a line of doc (README.md's settings table repeats it;
``ROLE_VARIABLES`` and ``ENV_DEFAULTS`` derive from it). A missing or invalid value raises
``ConfigError`` naming the variable, at start-up.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from json import JSONDecodeError
from typing import Any, TypeVar

from backend_hooks.contract.audio_format import (
    DEFAULT_BITRATES,
    DEFAULT_COMPLEXITIES,
    MAX_BITRATE,
    MAX_COMPLEXITY,
    MIN_BITRATE,
    SUPPORTED_RATES,
)
from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.rollout import EVERYBODY, NOBODY, Rollout, parse_percent, parse_uids

#: How long a deleted conversation's mark is kept (AUDIOSYNC_DELETED_MARK_SECONDS): audio
#: of it still in a stream, a pusher's spool or quarantine, appended or replayed within
#: this time, is dropped by the fleet instead of uploaded (backend_hooks/adapters/redis_store.py).
DELETED_MARK_SECONDS = 30 * 24 * 3600
#: How long after a conversation delete (and after a flush dropped an object of a deleted
#: conversation) the fleet lists the conversation again and deletes what it finds there
#: (AUDIOSYNC_DELETE_RECHECK_SECONDS): an upload attempt its client gave up on can still
#: land; it must have landed by then. Why an hour: docs/ARCHITECTURE.md, "Deleted
#: conversations".
DELETE_RECHECK_SECONDS = 3600
#: The shortest re-check delay accepted (a sanity bound: a value below the longest an
#: abandoned request stays in flight, minutes, lets a late upload outlive its re-check).
MIN_DELETE_RECHECK_SECONDS = 1

log = logging.getLogger("backend_hooks.settings")
_N = TypeVar("_N", int, float)
MIN_SECRET_BYTES = 32
MAX_DUE_SHARDS = 4096  # each is a key the sweep reads every interval
MAX_FLUSH_CONCURRENCY = 64  # flushes in flight per shard task (threads)
MAX_PUSHER_THREADS = 256  # encoders and Redis appends in flight per pusher process
FRAME_SECONDS = 0.02
MAX_TIMESTAMP_TOLERANCE_MS = 10_000  # WebRTC's jitter buffer delay is capped there too


#: The roles ``Settings.from_env(role=...)`` knows (README "Settings"): the pusher
#: (``AudioSyncClient.from_env``, the ``spool`` command), the reader (the backend's storage
#: functions), the flush fleet (workers, beat, the exporter, Flower) and the backfill (the
#: ``audiosync backfill`` command and the ``audiosync.backfill`` queue's workers: it reads,
#: opens and reseals objects, so it reads the fleet's settings, the reader's and the
#: encoder's).
PUSHER, READER, FLEET, BACKFILL = "pusher", "reader", "fleet", "backfill"

#: How a setting's text becomes its value: ``parse(name, text)``, where ``text`` is the
#: environment's (the default when unset or empty); a bad value raises ``ConfigError``
#: naming ``name``.
Parser = Callable[[str, str | None], Any]


@dataclass(frozen=True)
class Variable:
    """One environment variable audiosync reads: a row of ``VARIABLES`` (and of README's
    settings table)."""

    name: str
    #: Its default, as the environment's text would give it; None: unset unless given.
    default: str | None
    #: Its parser and validator; None for a variable ``Settings`` does not hold (``read_in``).
    parse: Parser | None
    #: The roles whose ``Settings.from_env(role=...)`` read it (``ROLE_VARIABLES``).
    roles: frozenset[str]
    doc: str
    #: The ``Settings`` field its value fills; None: combined with others in ``from_env``.
    field: str | None = None
    #: Set only with another variable: (its name, what to do), a ``ConfigError`` otherwise.
    needs: tuple[str, str] | None = None
    #: Where it is read when not by ``Settings``: that module parses it.
    read_in: str | None = None
    #: Another program that reads it from the environment too (passed through to it).
    passed_to: str | None = None


def _roles(*roles: str) -> frozenset[str]:
    return frozenset(roles)


def _text(name: str, value: str | None) -> str | None:
    """Free text, taken as it is."""
    return value


def _positive(name: str, value: str | None) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return number


def _whole(name: str, value: str | None) -> int:
    number = _positive(name, value)
    if number != int(number):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _at_most(name: str, number: _N, limit: int) -> _N:
    if number > limit:
        raise ConfigError(f"{name} must be at most {limit}, got {number}")
    return number


def _whole_at_most(limit: int) -> Parser:
    def parse(name: str, value: str | None) -> int:
        return _at_most(name, _whole(name, value), limit)

    return parse


def _positive_at_most(limit: int) -> Parser:
    def parse(name: str, value: str | None) -> float:
        return _at_most(name, _positive(name, value), limit)

    return parse


def _flag(name: str, value: str | None) -> bool:
    if value not in ("0", "1"):
        raise ConfigError(f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def _url(name: str, value: str | None) -> str:
    if not value or "://" not in value:
        raise ConfigError(f"{name} must be a URL such as redis://host:6379/0, got {value!r}")
    return value


def _url_or_unset(name: str, value: str | None) -> str | None:
    return None if value is None else _url(name, value)


def _bucket(name: str, value: str | None) -> str:
    bucket = value or ""
    if not bucket or "/" in bucket:
        raise ConfigError(f"{name} must be a bucket name, got {bucket!r}")
    return bucket


def _secret(name: str, value: str | None) -> bytes | None:
    secret = None if value is None else _utf8(name, value)
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET_BYTES} bytes of UTF-8 "
            f"(got {len(secret)}); set a longer secret or unset it to disable `enhanced`"
        )
    return secret


def _chunk_seconds(name: str, value: str | None) -> float:
    chunk = _positive(name, value)
    frames = chunk / FRAME_SECONDS
    if abs(frames - round(frames)) > 1e-9:
        raise ConfigError(f"{name} must be a whole number of 20 ms frames, got {chunk}")
    return chunk


def _spool_dir(name: str, value: str | None) -> str | None:
    if value is not None and (not os.path.isabs(value) or "\0" in value):
        raise ConfigError(
            f"{name} must be an absolute directory path, got {value!r} "
            "(unset it to run without a spool)"
        )
    return value


def _opus_bitrates(name: str, value: str | None) -> dict[int, int]:
    return _per_rate(
        name,
        value,
        DEFAULT_BITRATES,
        (MIN_BITRATE, MAX_BITRATE),
        what="bitrate",
        note="bits per second",
        example="8000:12000,16000:16000",
        one_for_all=False,
    )


def _opus_complexities(name: str, value: str | None) -> dict[int, int]:
    return _per_rate(
        name,
        value,
        DEFAULT_COMPLEXITIES,
        (0, MAX_COMPLEXITY),
        what="complexity",
        note="0 fastest, 10 best",
        example="8000:4,16000:6",
        one_for_all=True,
    )


def _recheck_seconds(name: str, value: str | None) -> float:
    """At least MIN_DELETE_RECHECK_SECONDS (and, checked in ``from_env``, shorter than the
    deleted mark lives: the re-check runs while the mark still stops uploads)."""
    seconds = _positive(name, value)
    if seconds < MIN_DELETE_RECHECK_SECONDS:
        raise ConfigError(
            f"{name} must be at least {MIN_DELETE_RECHECK_SECONDS} s, got {value!r} (the "
            f"default, {DELETE_RECHECK_SECONDS}, outlasts any abandoned upload)"
        )
    return seconds


def _per_rate(
    name: str,
    value: str | None,
    defaults: Mapping[int, int],
    bounds: tuple[int, int],
    *,
    what: str,
    note: str,
    example: str,
    one_for_all: bool,
) -> dict[int, int]:
    """``rate:value`` pairs, comma-separated, over ``defaults`` (a rate not named keeps its
    default); with ``one_for_all`` a bare number sets every rate."""
    low, high = bounds
    text = (value or "").strip()
    result = dict(defaults)
    if one_for_all and _digits(text) is not None:
        items = [(rate, text) for rate in result]
    else:
        items = []
        for item in text.split(","):
            rate_text, colon, number_text = item.strip().partition(":")
            rate = _digits(rate_text.strip())
            if not colon or rate is None or _digits(number_text.strip()) is None:
                also = " or one number for every rate" if one_for_all else ""
                raise ConfigError(
                    f"{name} must be rate:{what} pairs separated by commas ({note}), such "
                    f"as {example}{also}; got {value!r}"
                )
            if rate not in SUPPORTED_RATES:
                raise ConfigError(
                    f"{name} names {rate} Hz, not an Opus rate; use one of {SUPPORTED_RATES}"
                )
            if rate in dict(items):
                raise ConfigError(f"{name} names {rate} Hz twice, got {value!r}")
            items.append((rate, number_text.strip()))
    for rate, number_text in items:
        number = int(number_text)
        if not low <= number <= high:
            raise ConfigError(
                f"{name}: {what} {number} for {rate} Hz is outside {low}-{high} ({note}); "
                f"the default is {defaults[rate]}"
            )
        result[rate] = number
    return result


def _digits(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _comma_separated_secrets(name: str, value: str | None) -> tuple[bytes, ...]:
    """ENCRYPTION_SECRET_PREVIOUS: secrets without commas or surrounding whitespace."""
    out = []
    for position, item in enumerate(() if value is None else value.split(","), start=1):
        if item != item.strip():
            raise ConfigError(
                f"{name} item {position} starts or ends with whitespace; "
                "separate the secrets with bare commas (no spaces around them), or list a "
                "secret whose whitespace is its own (a file's trailing newline) in "
                'ENCRYPTION_SECRET_PREVIOUS_JSON, e.g. ["...\\n"]'
            )
        out.append(_previous_secret(name, position, item))
    return tuple(out)


def _json_listed_secrets(name: str, value: str | None) -> tuple[bytes, ...]:
    """ENCRYPTION_SECRET_PREVIOUS_JSON: a JSON list of strings, which holds any secret
    ENCRYPTION_SECRET accepts (commas, whitespace, quotes). Errors never show a secret."""
    if value is None:
        return ()
    try:
        items = json.loads(value)
    except JSONDecodeError as exc:  # its message gives a place, never the text
        raise ConfigError(
            f"{name} is not JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}); write a JSON list of "
            'strings, such as ["first old secret", "second"]'
        ) from None
    except (ValueError, RecursionError):  # a number over 4,300 digits, lists nested too deep
        raise ConfigError(
            f"{name} is not JSON this reader takes (a number too "
            'long or lists nested too deep); write a JSON list of strings, such as ["first '
            'old secret", "second"]'
        ) from None
    if not isinstance(items, list):
        raise ConfigError(
            f"{name} is a JSON {_json_kind(items)}; write a JSON "
            'list of strings, such as ["first old secret", "second"]'
        )
    out = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise ConfigError(f"{name} item {position} is not a string (a JSON {_json_kind(item)})")
        out.append(_previous_secret(name, position, item))
    return tuple(out)


def _json_kind(value: object) -> str:
    kinds = {
        dict: "object",
        list: "list",
        str: "string",
        bool: "true or false",
        type(None): "null",
    }
    return kinds.get(type(value), "number")


def _utf8(name: str, text: str) -> bytes:
    """A secret's bytes; text that is not UTF-8 (os.environ keeps such bytes as lone
    surrogates) is refused naming the variable."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not UTF-8 text") from None


def _previous_secret(name: str, position: int, text: str) -> bytes:
    secret = _utf8(f"{name} item {position}", text)
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{name} item {position} is {len(secret)} bytes of UTF-8; each secret must be at "
            f"least {MIN_SECRET_BYTES} bytes (no empty items)"
        )
    return secret


_NEEDS_CURRENT_SECRET = (
    "ENCRYPTION_SECRET",
    "set the current secret (it seals) and keep the old ones in ENCRYPTION_SECRET_PREVIOUS(_JSON)",
)
# The sets of roles the rows use.
_ALL = _roles(PUSHER, READER, FLEET, BACKFILL)
_FLEET = _roles(FLEET, BACKFILL)
_READER = _roles(READER, BACKFILL)
_PUSHER = _roles(PUSHER)
_ENCODER = _roles(PUSHER, BACKFILL)  # the Opus encoder's settings
_STORE = _roles(READER, FLEET, BACKFILL)  # the bucket and deleted conversations
_SECRETS = _roles(PUSHER, READER, BACKFILL)  # never the fleet: it holds no key
_BATCH = _roles(PUSHER, FLEET, BACKFILL)  # the pusher's batches are the fleet's objects
_TIMESTAMPS = _roles(PUSHER, FLEET, BACKFILL)  # the pusher's window is inside the fleet's

#: Every environment variable audiosync reads (but requests' proxy and CA variables, which
#: backend_hooks/adapters/gcs.py reads as requests would), in README's order (a test holds README's
#: settings table to it): ``Settings.from_env`` parses each one that has a parser, then
#: checks the settings that bound one another.
# fmt: off
VARIABLES: tuple[Variable, ...] = (
    Variable("AUDIOSYNC_REDIS_URL", "redis://127.0.0.1:6379/0", _url, _ALL,
             "Redis holding the session streams and the due index (a cluster: one node)",
             field="redis_url"),
    Variable("AUDIOSYNC_REDIS_CLUSTER", "0", _flag, _ALL,
             "1: the stream store is a Redis Cluster (the URL is a seed)",
             field="redis_cluster"),
    Variable("AUDIOSYNC_DUE_SHARDS", "16", _whole_at_most(MAX_DUE_SHARDS), _ALL,
             "the number of shards of the due index",
             field="due_shards"),
    Variable("CELERY_BROKER_URL", None, _url_or_unset, _FLEET,
             "the Celery broker; unset: AUDIOSYNC_REDIS_URL",
             passed_to="Celery"),
    Variable("BUCKET_PRIVATE_CLOUD_SYNC", "omi-private-cloud-sync", _bucket, _STORE,
             "the bucket",
             field="bucket"),
    Variable("STORAGE_EMULATOR_HOST", None, _text, _STORE,
             "a GCS emulator (fake-gcs-server); unset: real GCS with default credentials",
             field="storage_emulator_host", passed_to="google-cloud-storage"),
    Variable("ENCRYPTION_SECRET", None, _secret, _SECRETS,
             "the master secret (>= 32 bytes of UTF-8) that seals; required for `enhanced`",
             field="encryption_secret"),
    Variable("ENCRYPTION_SECRET_PREVIOUS_JSON", None, _json_listed_secrets, _SECRETS,
             "older master secrets that still open, as a JSON list of strings",
             needs=_NEEDS_CURRENT_SECRET),
    Variable("ENCRYPTION_SECRET_PREVIOUS", None, _comma_separated_secrets, _SECRETS,
             "older master secrets that still open, comma-separated",
             needs=_NEEDS_CURRENT_SECRET),
    Variable("AUDIOSYNC_CHUNK_SECONDS", "5", _chunk_seconds, _roles(PUSHER, BACKFILL),
             "audio per chunk (a whole number of 20 ms frames)",
             field="chunk_seconds"),
    Variable("AUDIOSYNC_OBJECT_SECONDS", "60", _positive, _BATCH,
             "the most audio one object holds",
             field="object_seconds"),
    Variable("AUDIOSYNC_BATCH_MAX_AGE_SECONDS", "60", _positive, _BATCH,
             "the longest a chunk waits in Redis",
             field="batch_max_age_seconds"),
    Variable("AUDIOSYNC_BATCH_MAX_BYTES", "1048576", _whole, _BATCH,
             "the most bytes one object holds",
             field="batch_max_bytes"),
    Variable("AUDIOSYNC_SWEEP_INTERVAL_SECONDS", "5", _positive, _FLEET,
             "how often the sweep looks for due sessions",
             field="sweep_interval_seconds"),
    Variable("AUDIOSYNC_LEASE_SECONDS", "30", _positive, _FLEET,
             "how long a flush owns its session between renewals",
             field="lease_seconds"),
    Variable("AUDIOSYNC_FLUSH_MAX_ATTEMPTS", "16", _whole, _FLEET,
             "consecutive failed flushes before a session is parked in quarantine",
             field="flush_max_attempts"),
    Variable("AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS", "300", _positive, _FLEET,
             "the longest wait between two flushes of a failing session",
             field="flush_backoff_max_seconds"),
    Variable("AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS", "604800", _positive, _TIMESTAMPS,
             "how far a chunk's start may be from its append's Redis time (else quarantined)",
             field="timestamp_window_seconds"),
    Variable("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS", "200",
             _positive_at_most(MAX_TIMESTAMP_TOLERANCE_MS), _PUSHER,
             "how far a pushed timestamp may disagree with the sample clock",
             field="timestamp_tolerance_ms"),
    Variable("AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS", "86400", _positive, _PUSHER,
             "a pushed timestamp farther than this from the pusher's clock is re-anchored",
             field="push_timestamp_window_seconds"),
    Variable("AUDIOSYNC_SHUTDOWN_SECONDS", "20", _positive, _FLEET,
             "Celery's soft shutdown wait (REMAP_SIGTERM=SIGQUIT only)",
             field="shutdown_seconds"),
    Variable("AUDIOSYNC_FLUSH_CONCURRENCY", "8", _whole_at_most(MAX_FLUSH_CONCURRENCY), _FLEET,
             "flushes one shard task runs at once",
             field="flush_concurrency"),
    Variable("AUDIOSYNC_SHARD_TASK_SECONDS", "10", _positive, _FLEET,
             "how long one shard task claims sessions before its shard is sent again",
             field="shard_task_seconds"),
    Variable("AUDIOSYNC_PUSHER_THREADS", "4", _whole_at_most(MAX_PUSHER_THREADS), _PUSHER,
             "threads that encode, seal and append",
             field="pusher_threads"),
    Variable("AUDIOSYNC_BREAKER_SECONDS", "5", _positive, _PUSHER,
             "after a failed Redis call, how long appends skip Redis",
             field="breaker_seconds"),
    Variable("AUDIOSYNC_REDIS_STALL_SECONDS", "1", _positive, _PUSHER,
             "how long a thread waits for Redis to answer one append",
             field="redis_stall_seconds"),
    Variable("AUDIOSYNC_SPOOL_DIR", None, _spool_dir, _PUSHER,
             "an absolute directory for chunks Redis did not take; unset: no disk spool",
             field="spool_dir"),
    Variable("AUDIOSYNC_SPOOL_MAX_BYTES", "1073741824", _whole, _PUSHER,
             "the most the spool holds",
             field="spool_max_bytes"),
    Variable("AUDIOSYNC_SPOOL_LEASE_SECONDS", "30", _positive, _PUSHER,
             "a spool owner whose heartbeat is older than this (lock free) is dead",
             field="spool_lease_seconds"),
    Variable("AUDIOSYNC_SESSION_BUFFER_SECONDS", "120", _positive, _PUSHER,
             "audio one session may hold in memory",
             field="session_buffer_seconds"),
    Variable("AUDIOSYNC_CLOSE_SECONDS", "10", _positive, _PUSHER,
             "how long a close tries to get tails into Redis or the spool",
             field="close_seconds"),
    Variable("AUDIOSYNC_ROLLOUT_PERCENT", "0", parse_percent, _PUSHER,
             "the share of users on audiosync (nobody until the operator raises it)"),
    Variable("AUDIOSYNC_ROLLOUT_ALLOW_UIDS", None, parse_uids, _PUSHER,
             "uids on audiosync whatever the percentage"),
    Variable("AUDIOSYNC_ROLLOUT_DENY_UIDS", None, parse_uids, _PUSHER,
             "uids kept on the old path whatever else says"),
    Variable("AUDIOSYNC_SPOOL_PERCENT", "100", parse_percent, _PUSHER,
             "the share of users whose sessions may use the spool (AUDIOSYNC_SPOOL_DIR set)"),
    Variable("AUDIOSYNC_SPOOL_ALLOW_UIDS", None, parse_uids, _PUSHER,
             "uids on the spool whatever its percentage"),
    Variable("AUDIOSYNC_SPOOL_DENY_UIDS", None, parse_uids, _PUSHER,
             "uids never on the spool"),
    Variable("AUDIOSYNC_OPUS_BITRATES",
             ",".join(f"{r}:{b}" for r, b in DEFAULT_BITRATES.items()),
             _opus_bitrates, _ENCODER,
             "the Opus target bitrate per sample rate, rate:bits pairs",
             field="opus_bitrates"),
    Variable("AUDIOSYNC_OPUS_COMPLEXITY",
             ",".join(f"{r}:{c}" for r, c in DEFAULT_COMPLEXITIES.items()),
             _opus_complexities, _ENCODER,
             "the Opus encoder complexity per sample rate, or one for all",
             field="opus_complexities"),
    Variable("AUDIOSYNC_DELETED_MARK_SECONDS", str(DELETED_MARK_SECONDS), _whole, _STORE,
             "how long a deleted conversation's mark lasts",
             field="deleted_mark_seconds"),
    Variable("AUDIOSYNC_DELETE_RECHECK_SECONDS", str(DELETE_RECHECK_SECONDS), _recheck_seconds,
             _STORE,
             "when a deleted conversation is listed again and what is found deleted",
             field="delete_recheck_seconds"),
    Variable("AUDIOSYNC_MAX_GAP_FILL_SECONDS", "21600", _positive, _READER,
             "the longest gap a merge fills with silence",
             field="max_gap_fill_seconds"),
    Variable("AUDIOSYNC_METRICS_PORT", None, None, frozenset(),
             "the workers' metrics port; unset: no metrics server",
             read_in="workers/metrics.py"),
    Variable("PROMETHEUS_MULTIPROC_DIR", None, None, frozenset(),
             "where the workers' pool processes write their metrics",
             read_in="workers/metrics.py", passed_to="prometheus_client"),
    Variable("AUDIOSYNC_EXPORTER_CACHE_SECONDS", "10", _positive, _FLEET,
             "the exporter reads Redis at most once this often",
             field="exporter_cache_seconds"),
    Variable("AUDIOSYNC_EXPORTER_READ_SECONDS", "5", _positive, _FLEET,
             "the longest one read of the fleet-wide gauges takes",
             field="exporter_read_seconds"),
    Variable("AUDIOSYNC_AUDIO_FILE_GAP_SECONDS", "90", _positive, _READER,
             "a longer silence between two chunks starts a new audio file",
             field="audio_file_gap_seconds"),
    Variable("AUDIOSYNC_LOG_FORMAT", "text", None, frozenset(),
             "the workers' log lines: text or json",
             read_in="workers/logs.py"),
)
# fmt: on

#: By name.
VARIABLE: dict[str, Variable] = {variable.name: variable for variable in VARIABLES}
#: The variables each role reads. ``Settings.from_env(role=...)`` validates only those and
#: takes the defaults for the rest, so a pusher never refuses to start over a setting only
#: the fleet reads, nor the fleet over one of the pusher's (the fleet holds no key).
ROLE_VARIABLES: dict[str, frozenset[str]] = {
    role: frozenset(variable.name for variable in VARIABLES if role in variable.roles)
    for role in (PUSHER, READER, FLEET, BACKFILL)
}
#: The default of every variable ``Settings`` holds (``None``: unset unless given).
ENV_DEFAULTS: dict[str, str | None] = {
    variable.name: variable.default for variable in VARIABLES if variable.parse is not None
}
#: The variables read elsewhere than here (``Variable.read_in``): the workers' metrics port
#: and multiprocess directory (workers/metrics.py), their log format (workers/logs.py).
OTHER_VARIABLES = frozenset(variable.name for variable in VARIABLES if variable.read_in)

_PREFIX = "AUDIOSYNC_"
_warned_unknown: set[str] = set()  # once per process and name


@dataclass(frozen=True)
class Settings:
    redis_url: str
    redis_cluster: bool
    due_shards: int
    broker_url: str
    bucket: str
    storage_emulator_host: str | None
    encryption_secret: bytes | None = field(repr=False)  # a repr goes to logs and trackers
    chunk_seconds: float
    object_seconds: float
    batch_max_age_seconds: float
    batch_max_bytes: int
    sweep_interval_seconds: float
    lease_seconds: float
    flush_max_attempts: int
    flush_backoff_max_seconds: float
    timestamp_window_seconds: float
    shutdown_seconds: float
    flush_concurrency: int
    shard_task_seconds: float
    spool_dir: str | None
    spool_max_bytes: int
    spool_lease_seconds: float
    pusher_threads: int
    breaker_seconds: float
    session_buffer_seconds: float
    close_seconds: float
    timestamp_tolerance_ms: float
    push_timestamp_window_seconds: float
    opus_bitrates: dict[int, int]  # Opus target bits/s, for every supported rate
    opus_complexities: dict[int, int]  # Opus encoder complexity (0-10), for every rate
    # Who is on audiosync, and on the spool (backend_hooks/contract/rollout.py).
    rollout: Rollout = NOBODY  # AUDIOSYNC_ROLLOUT_PERCENT's default
    spool_rollout: Rollout = EVERYBODY  # AUDIOSYNC_SPOOL_PERCENT's default
    #: ENCRYPTION_SECRET_PREVIOUS: older master secrets that still open (never seal)
    encryption_secret_previous: tuple[bytes, ...] = field(default=(), repr=False)
    #: AUDIOSYNC_DELETED_MARK_SECONDS: how long the fleet drops audio of a deleted one
    deleted_mark_seconds: int = DELETED_MARK_SECONDS
    #: AUDIOSYNC_DELETE_RECHECK_SECONDS: when a deleted conversation is listed again
    delete_recheck_seconds: float = float(DELETE_RECHECK_SECONDS)
    #: AUDIOSYNC_AUDIO_FILE_GAP_SECONDS: a longer silence starts a new audio file
    audio_file_gap_seconds: float = 90.0
    #: AUDIOSYNC_REDIS_STALL_SECONDS: how long a pusher thread waits for Redis to answer one
    #: append; past it the entries go to the spool (or wait in memory) and no other call
    #: is sent until that one returns (backend_hooks/pusher/breaker.py)
    redis_stall_seconds: float = 1.0
    #: AUDIOSYNC_MAX_GAP_FILL_SECONDS: the longest gap the reader fills with silence; a
    #: longer one raises GapTooLongError (a stray chunk at time 0 would be decades of
    #: zeros). Refused, not capped: a capped gap would misplace everything after it.
    max_gap_fill_seconds: float = 21600.0
    #: AUDIOSYNC_EXPORTER_CACHE_SECONDS: the exporter reads Redis at most once this often
    exporter_cache_seconds: float = 10.0
    #: AUDIOSYNC_EXPORTER_READ_SECONDS: the longest one read of the fleet-wide gauges takes
    #: (a scrape answers within it; a node that has not answered is reported out)
    exporter_read_seconds: float = 5.0

    def __repr__(self) -> str:
        """Every setting but the secrets, URLs without their password: a repr goes to
        logs, tracebacks with locals and error trackers."""
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("redis_url", "broker_url"):
                value = shown_url(value)
            if item.repr:
                shown.append(f"{item.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, role: str | None = None
    ) -> Settings:
        """Every setting, validated; with ``role`` ("pusher", "reader", "fleet",
        "backfill") only the ones that role reads come from the environment, the others
        are their defaults. Each variable of ``VARIABLES`` is parsed in the table's order,
        then the settings that bound one another are checked."""
        env = os.environ if environ is None else environ
        if role is not None and role not in ROLE_VARIABLES:
            raise ValueError(f"role must be one of {sorted(ROLE_VARIABLES)}, got {role!r}")
        _warn_unknown(env)
        wanted = None if role is None else ROLE_VARIABLES[role]

        def reads(*names: str) -> bool:
            return wanted is None or set(names) <= wanted

        value: dict[str, Any] = {}  # variable name -> its parsed value
        for variable in VARIABLES:
            if variable.parse is None:
                continue  # read elsewhere (variable.read_in)
            text = env.get(variable.name) if reads(variable.name) else None
            if text is None or text == "":
                text = variable.default
            elif variable.needs is not None and value[variable.needs[0]] is None:
                needed, advice = variable.needs
                raise ConfigError(f"{variable.name} is set but {needed} is not: {advice}")
            value[variable.name] = variable.parse(variable.name, text)

        chunk, object_seconds = value["AUDIOSYNC_CHUNK_SECONDS"], value["AUDIOSYNC_OBJECT_SECONDS"]
        if reads("AUDIOSYNC_CHUNK_SECONDS", "AUDIOSYNC_OBJECT_SECONDS") and object_seconds < chunk:
            raise ConfigError(
                f"AUDIOSYNC_OBJECT_SECONDS ({object_seconds}) must be at least "
                f"AUDIOSYNC_CHUNK_SECONDS ({chunk})"
            )
        tolerance_ms = value["AUDIOSYNC_TIMESTAMP_TOLERANCE_MS"]
        push_window = value["AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS"]
        window = value["AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS"]
        if push_window * 1000 <= tolerance_ms:
            raise ConfigError(
                f"AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS ({push_window:g}) must be longer than "
                f"AUDIOSYNC_TIMESTAMP_TOLERANCE_MS ({tolerance_ms:g} ms)"
            )
        windows = ("AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS", "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS")
        if reads(*windows) and push_window >= window:
            raise ConfigError(
                f"AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS ({push_window:g}) must be shorter than "
                f"AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS ({window:g}): the fleet quarantines chunks "
                "outside its window, so a pusher's re-anchored chunks must land inside it"
            )
        stall_seconds = value["AUDIOSYNC_REDIS_STALL_SECONDS"]
        close_seconds = value["AUDIOSYNC_CLOSE_SECONDS"]
        if stall_seconds >= close_seconds:
            raise ConfigError(
                f"AUDIOSYNC_REDIS_STALL_SECONDS ({stall_seconds:g}) must be shorter than "
                f"AUDIOSYNC_CLOSE_SECONDS ({close_seconds:g}): a close waits that long for "
                "Redis before it writes its tail to the spool, within its own budget"
            )
        recheck_seconds = value["AUDIOSYNC_DELETE_RECHECK_SECONDS"]
        mark_seconds = value["AUDIOSYNC_DELETED_MARK_SECONDS"]
        if recheck_seconds >= mark_seconds:
            raise ConfigError(
                f"AUDIOSYNC_DELETE_RECHECK_SECONDS ({recheck_seconds:g}) must be shorter than "
                f"AUDIOSYNC_DELETED_MARK_SECONDS ({mark_seconds}): a deleted conversation is "
                "listed again while its mark lasts"
            )
        return cls(
            **{v.field: value[v.name] for v in VARIABLES if v.field is not None},
            broker_url=value["CELERY_BROKER_URL"] or value["AUDIOSYNC_REDIS_URL"],
            encryption_secret_previous=(
                value["ENCRYPTION_SECRET_PREVIOUS"] + value["ENCRYPTION_SECRET_PREVIOUS_JSON"]
            ),
            rollout=Rollout(
                percent=value["AUDIOSYNC_ROLLOUT_PERCENT"],
                allow=value["AUDIOSYNC_ROLLOUT_ALLOW_UIDS"],
                deny=value["AUDIOSYNC_ROLLOUT_DENY_UIDS"],
            ),
            spool_rollout=Rollout(
                percent=value["AUDIOSYNC_SPOOL_PERCENT"],
                allow=value["AUDIOSYNC_SPOOL_ALLOW_UIDS"],
                deny=value["AUDIOSYNC_SPOOL_DENY_UIDS"],
            ),
        )


def _warn_unknown(env: Mapping[str, str]) -> None:
    """One WARNING per process for each ``AUDIOSYNC_*`` variable that is no setting (a
    typo is otherwise silently ignored), naming the closest one."""
    known = set(ENV_DEFAULTS) | OTHER_VARIABLES
    by_suffix = {name.removeprefix(_PREFIX): name for name in known}  # the prefix matches
    for name in sorted(env):
        if not name.startswith(_PREFIX) or name in known or name in _warned_unknown:
            continue
        _warned_unknown.add(name)
        closest = difflib.get_close_matches(name.removeprefix(_PREFIX), by_suffix, n=1)
        log.warning(
            '%s is set but is not an audiosync setting: it is ignored (%s; README, "Settings")',
            name,
            f"did you mean {by_suffix[closest[0]]}?" if closest else "no setting is like it",
        )


def shown_url(url: str) -> str:
    """``url`` as messages and logs may show it: a password (``redis://user:pw@host``,
    ``?password=pw``) replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    shown = url
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        shown = shown.replace(parts.netloc, f"{user.partition(':')[0]}:***@{host}", 1)
    if parts.query:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(
            f"{key}=***" if key == "password" else urllib.parse.urlencode({key: value})
            for key, value in pairs
        )
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown
