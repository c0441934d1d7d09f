"""Settings, read from the environment once, validated, with documented defaults.

Every variable is listed in ``ENV_DEFAULTS`` with its default; README.md repeats the table.
A missing or invalid value raises ``ConfigError`` naming the variable, at start-up.
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
from typing import TypeVar

from backend_hooks.audio_format import (
    DEFAULT_BITRATES,
    DEFAULT_COMPLEXITIES,
    MAX_BITRATE,
    MAX_COMPLEXITY,
    MIN_BITRATE,
    SUPPORTED_RATES,
)
from backend_hooks.errors import ConfigError
from backend_hooks.rollout import EVERYBODY, NOBODY, Rollout

#: How long a deleted conversation's mark is kept (AUDIOSYNC_DELETED_MARK_SECONDS): audio
#: of it still in a stream, a pusher's spool or quarantine, appended or replayed within
#: this time, is dropped by the fleet instead of uploaded (backend_hooks/redis_store.py).
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

#: Default value of every setting (``None``: unset unless given).
ENV_DEFAULTS: dict[str, str | None] = {
    "AUDIOSYNC_REDIS_URL": "redis://127.0.0.1:6379/0",
    "AUDIOSYNC_REDIS_CLUSTER": "0",  # 1: the stream store is a Redis Cluster (URL: a seed)
    "AUDIOSYNC_DUE_SHARDS": "16",
    "CELERY_BROKER_URL": None,  # defaults to AUDIOSYNC_REDIS_URL
    "BUCKET_PRIVATE_CLOUD_SYNC": "omi-private-cloud-sync",
    "STORAGE_EMULATOR_HOST": None,  # unset: real GCS with application default credentials
    "ENCRYPTION_SECRET": None,  # required (>= 32 bytes) for the `enhanced` level
    "ENCRYPTION_SECRET_PREVIOUS": None,  # comma-separated older secrets that still open
    "ENCRYPTION_SECRET_PREVIOUS_JSON": None,  # a JSON list of them: holds any secret
    "AUDIOSYNC_CHUNK_SECONDS": "5",
    "AUDIOSYNC_OBJECT_SECONDS": "60",
    "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": "60",
    "AUDIOSYNC_BATCH_MAX_BYTES": "1048576",
    "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "5",
    "AUDIOSYNC_LEASE_SECONDS": "30",
    "AUDIOSYNC_FLUSH_MAX_ATTEMPTS": "16",
    "AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS": "300",
    "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS": "604800",
    "AUDIOSYNC_SHUTDOWN_SECONDS": "20",
    "AUDIOSYNC_FLUSH_CONCURRENCY": "8",
    "AUDIOSYNC_SHARD_TASK_SECONDS": "10",
    "AUDIOSYNC_SPOOL_DIR": None,  # unset: no disk spool (chunks wait in memory)
    "AUDIOSYNC_SPOOL_MAX_BYTES": "1073741824",
    "AUDIOSYNC_SPOOL_LEASE_SECONDS": "30",
    "AUDIOSYNC_PUSHER_THREADS": "4",
    "AUDIOSYNC_BREAKER_SECONDS": "5",
    "AUDIOSYNC_REDIS_STALL_SECONDS": "1",
    "AUDIOSYNC_SESSION_BUFFER_SECONDS": "120",
    "AUDIOSYNC_CLOSE_SECONDS": "10",
    # -- rollout flags (issue 7; backend_hooks/rollout.py) --
    "AUDIOSYNC_ROLLOUT_PERCENT": "0",  # a new path: nobody until the operator raises it
    "AUDIOSYNC_ROLLOUT_ALLOW_UIDS": None,
    "AUDIOSYNC_ROLLOUT_DENY_UIDS": None,
    "AUDIOSYNC_SPOOL_PERCENT": "100",  # setting AUDIOSYNC_SPOOL_DIR is what turns it on
    "AUDIOSYNC_SPOOL_ALLOW_UIDS": None,
    "AUDIOSYNC_SPOOL_DENY_UIDS": None,
    # Pusher timestamps (docs/ARCHITECTURE.md, "Timestamps").
    "AUDIOSYNC_TIMESTAMP_TOLERANCE_MS": "200",
    "AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS": "86400",
    # The pusher's Opus encoder, per sample rate (docs/BENCHMARKS.md, "Codec"): rate:value
    # pairs, a rate not named keeps its default; the complexity may be one number for all.
    "AUDIOSYNC_OPUS_BITRATES": ",".join(f"{r}:{b}" for r, b in DEFAULT_BITRATES.items()),
    "AUDIOSYNC_OPUS_COMPLEXITY": ",".join(f"{r}:{c}" for r, c in DEFAULT_COMPLEXITIES.items()),
    # The reader's conversation delete (backend_hooks/redis_store.py, "deleted" marks).
    "AUDIOSYNC_DELETED_MARK_SECONDS": str(DELETED_MARK_SECONDS),
    "AUDIOSYNC_DELETE_RECHECK_SECONDS": str(DELETE_RECHECK_SECONDS),
    # The reader's audio-file records (backend_hooks/conversations.py).
    "AUDIOSYNC_AUDIO_FILE_GAP_SECONDS": "90",
    # The reader: the longest gap filled with silence (6 h); a longer one is refused
    # (GapTooLongError), never allocated (backend_hooks/merge.py).
    "AUDIOSYNC_MAX_GAP_FILL_SECONDS": "21600",
    # The fleet-wide gauges' exporter (workers/exporter.py): Redis is read at most once per
    # cache period, however many Prometheus replicas scrape; one read takes at most the
    # read budget, a node that has not answered by then is reported out.
    "AUDIOSYNC_EXPORTER_CACHE_SECONDS": "10",
    "AUDIOSYNC_EXPORTER_READ_SECONDS": "5",
}

#: The variables each role reads. ``Settings.from_env(role=...)`` validates only those and
#: takes the defaults for the rest, so a pusher never refuses to start over a setting only
#: the fleet reads, nor the fleet over one of the pusher's (the fleet holds no key).
ROLE_VARIABLES: dict[str, frozenset[str]] = {
    "pusher": frozenset(
        {
            "AUDIOSYNC_REDIS_URL",
            "AUDIOSYNC_REDIS_CLUSTER",
            "AUDIOSYNC_DUE_SHARDS",
            "ENCRYPTION_SECRET",
            "ENCRYPTION_SECRET_PREVIOUS",
            "ENCRYPTION_SECRET_PREVIOUS_JSON",
            "AUDIOSYNC_CHUNK_SECONDS",
            "AUDIOSYNC_OBJECT_SECONDS",
            "AUDIOSYNC_BATCH_MAX_AGE_SECONDS",
            "AUDIOSYNC_BATCH_MAX_BYTES",
            "AUDIOSYNC_SPOOL_DIR",
            "AUDIOSYNC_SPOOL_MAX_BYTES",
            "AUDIOSYNC_SPOOL_LEASE_SECONDS",
            "AUDIOSYNC_PUSHER_THREADS",
            "AUDIOSYNC_BREAKER_SECONDS",
            "AUDIOSYNC_REDIS_STALL_SECONDS",
            "AUDIOSYNC_SESSION_BUFFER_SECONDS",
            "AUDIOSYNC_CLOSE_SECONDS",
            # -- rollout flags (issue 7) --
            "AUDIOSYNC_ROLLOUT_PERCENT",
            "AUDIOSYNC_ROLLOUT_ALLOW_UIDS",
            "AUDIOSYNC_ROLLOUT_DENY_UIDS",
            "AUDIOSYNC_SPOOL_PERCENT",
            "AUDIOSYNC_SPOOL_ALLOW_UIDS",
            "AUDIOSYNC_SPOOL_DENY_UIDS",
            "AUDIOSYNC_TIMESTAMP_TOLERANCE_MS",
            "AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS",
            "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS",  # its window must be inside the fleet's
            "AUDIOSYNC_OPUS_BITRATES",
            "AUDIOSYNC_OPUS_COMPLEXITY",
        }
    ),
    "reader": frozenset(
        {
            "AUDIOSYNC_REDIS_URL",  # a conversation delete marks it there for the fleet
            "AUDIOSYNC_REDIS_CLUSTER",
            "AUDIOSYNC_DELETED_MARK_SECONDS",
            "AUDIOSYNC_DELETE_RECHECK_SECONDS",  # a delete schedules its re-check
            "AUDIOSYNC_DUE_SHARDS",  # ... in one of the shards the fleet drains
            "BUCKET_PRIVATE_CLOUD_SYNC",
            "STORAGE_EMULATOR_HOST",
            "ENCRYPTION_SECRET",
            "ENCRYPTION_SECRET_PREVIOUS",
            "ENCRYPTION_SECRET_PREVIOUS_JSON",
            "AUDIOSYNC_AUDIO_FILE_GAP_SECONDS",
            "AUDIOSYNC_MAX_GAP_FILL_SECONDS",
        }
    ),
    "fleet": frozenset(
        {
            "AUDIOSYNC_REDIS_URL",
            "AUDIOSYNC_REDIS_CLUSTER",
            "AUDIOSYNC_DUE_SHARDS",
            "CELERY_BROKER_URL",
            "BUCKET_PRIVATE_CLOUD_SYNC",
            "STORAGE_EMULATOR_HOST",
            "AUDIOSYNC_OBJECT_SECONDS",
            "AUDIOSYNC_BATCH_MAX_AGE_SECONDS",
            "AUDIOSYNC_BATCH_MAX_BYTES",
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS",
            "AUDIOSYNC_LEASE_SECONDS",
            "AUDIOSYNC_FLUSH_MAX_ATTEMPTS",
            "AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS",
            "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS",
            "AUDIOSYNC_SHUTDOWN_SECONDS",
            "AUDIOSYNC_FLUSH_CONCURRENCY",
            "AUDIOSYNC_SHARD_TASK_SECONDS",
            "AUDIOSYNC_DELETED_MARK_SECONDS",  # older chunks are quarantined, not uploaded
            "AUDIOSYNC_DELETE_RECHECK_SECONDS",
            "AUDIOSYNC_EXPORTER_CACHE_SECONDS",
            "AUDIOSYNC_EXPORTER_READ_SECONDS",
        }
    ),
}
#: The backfill (workers/backfill.py: the ``audiosync backfill`` command and the
#: ``audiosync.backfill`` queue's workers) reads, opens and reseals objects: the fleet's settings,
#: the reader's (the secrets among them) and the encoder's. Never the flush fleet's role.
ROLE_VARIABLES["backfill"] = (
    ROLE_VARIABLES["fleet"]
    | ROLE_VARIABLES["reader"]
    | {"AUDIOSYNC_CHUNK_SECONDS", "AUDIOSYNC_OPUS_BITRATES", "AUDIOSYNC_OPUS_COMPLEXITY"}
)

#: ``AUDIOSYNC_*`` variables read elsewhere than here: the workers' metrics port
#: (workers/metrics.py) and log format (workers/logs.py).
OTHER_VARIABLES = frozenset({"AUDIOSYNC_METRICS_PORT", "AUDIOSYNC_LOG_FORMAT"})
_PREFIX = "AUDIOSYNC_"
_warned_unknown: set[str] = set()  # once per process and name

log = logging.getLogger(__name__)
_N = TypeVar("_N", int, float)
MIN_SECRET_BYTES = 32
MAX_DUE_SHARDS = 4096  # each is a key the sweep reads every interval
MAX_FLUSH_CONCURRENCY = 64  # flushes in flight per shard task (threads)
MAX_PUSHER_THREADS = 256  # encoders and Redis appends in flight per pusher process
FRAME_SECONDS = 0.02
MAX_TIMESTAMP_TOLERANCE_MS = 10_000  # WebRTC's jitter buffer delay is capped there too


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
    # -- rollout flags (issue 7; backend_hooks/rollout.py) --
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
    #: is sent until that one returns (backend_hooks/breaker.py)
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
        are their defaults."""
        env = os.environ if environ is None else environ
        if role is not None and role not in ROLE_VARIABLES:
            raise ValueError(f"role must be one of {sorted(ROLE_VARIABLES)}, got {role!r}")
        _warn_unknown(env)
        wanted = None if role is None else ROLE_VARIABLES[role]

        def raw(name: str) -> str | None:
            value = None if wanted is not None and name not in wanted else env.get(name)
            if value is None or value == "":
                return ENV_DEFAULTS[name]
            return value

        redis_url = _url(name="AUDIOSYNC_REDIS_URL", value=raw("AUDIOSYNC_REDIS_URL"))
        broker_url = _url(name="CELERY_BROKER_URL", value=raw("CELERY_BROKER_URL") or redis_url)
        bucket = raw("BUCKET_PRIVATE_CLOUD_SYNC") or ""
        if not bucket or "/" in bucket:
            raise ConfigError(f"BUCKET_PRIVATE_CLOUD_SYNC must be a bucket name, got {bucket!r}")
        secret_text = raw("ENCRYPTION_SECRET")
        secret = None if secret_text is None else _utf8("ENCRYPTION_SECRET", secret_text)
        if secret is not None and len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"ENCRYPTION_SECRET must be at least {MIN_SECRET_BYTES} bytes of UTF-8 "
                f"(got {len(secret)}); set a longer secret or unset it to disable `enhanced`"
            )
        previous = _previous_secrets(
            raw("ENCRYPTION_SECRET_PREVIOUS"), raw("ENCRYPTION_SECRET_PREVIOUS_JSON"), secret
        )
        chunk = _positive("AUDIOSYNC_CHUNK_SECONDS", raw("AUDIOSYNC_CHUNK_SECONDS"))
        frames = chunk / FRAME_SECONDS
        if abs(frames - round(frames)) > 1e-9:
            raise ConfigError(
                f"AUDIOSYNC_CHUNK_SECONDS must be a whole number of 20 ms frames, got {chunk}"
            )
        object_seconds = _positive("AUDIOSYNC_OBJECT_SECONDS", raw("AUDIOSYNC_OBJECT_SECONDS"))
        reads_both = (
            wanted is None
            or {
                "AUDIOSYNC_CHUNK_SECONDS",
                "AUDIOSYNC_OBJECT_SECONDS",
            }
            <= wanted
        )
        if reads_both and object_seconds < chunk:
            raise ConfigError(
                f"AUDIOSYNC_OBJECT_SECONDS ({object_seconds}) must be at least "
                f"AUDIOSYNC_CHUNK_SECONDS ({chunk})"
            )
        max_bytes = _whole("AUDIOSYNC_BATCH_MAX_BYTES", raw("AUDIOSYNC_BATCH_MAX_BYTES"))
        tolerance_ms = _at_most(
            "AUDIOSYNC_TIMESTAMP_TOLERANCE_MS",
            _positive("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS", raw("AUDIOSYNC_TIMESTAMP_TOLERANCE_MS")),
            MAX_TIMESTAMP_TOLERANCE_MS,
        )
        window = _positive(
            "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS", raw("AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS")
        )
        push_window = _positive(
            "AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS",
            raw("AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS"),
        )
        if push_window * 1000 <= tolerance_ms:
            raise ConfigError(
                f"AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS ({push_window:g}) must be longer than "
                f"AUDIOSYNC_TIMESTAMP_TOLERANCE_MS ({tolerance_ms:g} ms)"
            )
        windows = {"AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS", "AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS"}
        if (wanted is None or windows <= wanted) and push_window >= window:
            raise ConfigError(
                f"AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS ({push_window:g}) must be shorter than "
                f"AUDIOSYNC_TIMESTAMP_WINDOW_SECONDS ({window:g}): the fleet quarantines chunks "
                "outside its window, so a pusher's re-anchored chunks must land inside it"
            )
        mark_seconds = _whole(
            "AUDIOSYNC_DELETED_MARK_SECONDS", raw("AUDIOSYNC_DELETED_MARK_SECONDS")
        )
        close_seconds = _positive("AUDIOSYNC_CLOSE_SECONDS", raw("AUDIOSYNC_CLOSE_SECONDS"))
        stall_seconds = _positive(
            "AUDIOSYNC_REDIS_STALL_SECONDS", raw("AUDIOSYNC_REDIS_STALL_SECONDS")
        )
        if stall_seconds >= close_seconds:
            raise ConfigError(
                f"AUDIOSYNC_REDIS_STALL_SECONDS ({stall_seconds:g}) must be shorter than "
                f"AUDIOSYNC_CLOSE_SECONDS ({close_seconds:g}): a close waits that long for "
                "Redis before it writes its tail to the spool, within its own budget"
            )
        return cls(
            redis_url=redis_url,
            redis_cluster=_flag("AUDIOSYNC_REDIS_CLUSTER", raw("AUDIOSYNC_REDIS_CLUSTER")),
            due_shards=_at_most(
                "AUDIOSYNC_DUE_SHARDS",
                _whole("AUDIOSYNC_DUE_SHARDS", raw("AUDIOSYNC_DUE_SHARDS")),
                MAX_DUE_SHARDS,
            ),
            broker_url=broker_url,
            bucket=bucket,
            storage_emulator_host=raw("STORAGE_EMULATOR_HOST"),
            encryption_secret=secret,
            encryption_secret_previous=previous,
            chunk_seconds=chunk,
            object_seconds=object_seconds,
            batch_max_age_seconds=_positive(
                "AUDIOSYNC_BATCH_MAX_AGE_SECONDS", raw("AUDIOSYNC_BATCH_MAX_AGE_SECONDS")
            ),
            batch_max_bytes=max_bytes,
            sweep_interval_seconds=_positive(
                "AUDIOSYNC_SWEEP_INTERVAL_SECONDS", raw("AUDIOSYNC_SWEEP_INTERVAL_SECONDS")
            ),
            lease_seconds=_positive("AUDIOSYNC_LEASE_SECONDS", raw("AUDIOSYNC_LEASE_SECONDS")),
            flush_max_attempts=_whole(
                "AUDIOSYNC_FLUSH_MAX_ATTEMPTS", raw("AUDIOSYNC_FLUSH_MAX_ATTEMPTS")
            ),
            flush_backoff_max_seconds=_positive(
                "AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS", raw("AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS")
            ),
            timestamp_window_seconds=window,
            shutdown_seconds=_positive(
                "AUDIOSYNC_SHUTDOWN_SECONDS", raw("AUDIOSYNC_SHUTDOWN_SECONDS")
            ),
            flush_concurrency=_at_most(
                "AUDIOSYNC_FLUSH_CONCURRENCY",
                _whole("AUDIOSYNC_FLUSH_CONCURRENCY", raw("AUDIOSYNC_FLUSH_CONCURRENCY")),
                MAX_FLUSH_CONCURRENCY,
            ),
            shard_task_seconds=_positive(
                "AUDIOSYNC_SHARD_TASK_SECONDS", raw("AUDIOSYNC_SHARD_TASK_SECONDS")
            ),
            spool_dir=_spool_dir(raw("AUDIOSYNC_SPOOL_DIR")),
            spool_max_bytes=_whole("AUDIOSYNC_SPOOL_MAX_BYTES", raw("AUDIOSYNC_SPOOL_MAX_BYTES")),
            spool_lease_seconds=_positive(
                "AUDIOSYNC_SPOOL_LEASE_SECONDS", raw("AUDIOSYNC_SPOOL_LEASE_SECONDS")
            ),
            pusher_threads=_at_most(
                "AUDIOSYNC_PUSHER_THREADS",
                _whole("AUDIOSYNC_PUSHER_THREADS", raw("AUDIOSYNC_PUSHER_THREADS")),
                MAX_PUSHER_THREADS,
            ),
            breaker_seconds=_positive(
                "AUDIOSYNC_BREAKER_SECONDS", raw("AUDIOSYNC_BREAKER_SECONDS")
            ),
            session_buffer_seconds=_positive(
                "AUDIOSYNC_SESSION_BUFFER_SECONDS", raw("AUDIOSYNC_SESSION_BUFFER_SECONDS")
            ),
            close_seconds=close_seconds,
            redis_stall_seconds=stall_seconds,
            # -- rollout flags (issue 7) --
            rollout=_rollout("AUDIOSYNC_ROLLOUT", raw),
            spool_rollout=_rollout("AUDIOSYNC_SPOOL", raw),
            timestamp_tolerance_ms=tolerance_ms,
            push_timestamp_window_seconds=push_window,
            opus_bitrates=_per_rate(
                "AUDIOSYNC_OPUS_BITRATES",
                raw("AUDIOSYNC_OPUS_BITRATES"),
                DEFAULT_BITRATES,
                (MIN_BITRATE, MAX_BITRATE),
                what="bitrate",
                note="bits per second",
                example="8000:12000,16000:16000",
                one_for_all=False,
            ),
            audio_file_gap_seconds=_positive(
                "AUDIOSYNC_AUDIO_FILE_GAP_SECONDS", raw("AUDIOSYNC_AUDIO_FILE_GAP_SECONDS")
            ),
            opus_complexities=_per_rate(
                "AUDIOSYNC_OPUS_COMPLEXITY",
                raw("AUDIOSYNC_OPUS_COMPLEXITY"),
                DEFAULT_COMPLEXITIES,
                (0, MAX_COMPLEXITY),
                what="complexity",
                note="0 fastest, 10 best",
                example="8000:4,16000:6",
                one_for_all=True,
            ),
            deleted_mark_seconds=mark_seconds,
            delete_recheck_seconds=_recheck_seconds(
                raw("AUDIOSYNC_DELETE_RECHECK_SECONDS"), mark_seconds=mark_seconds
            ),
            max_gap_fill_seconds=_positive(
                "AUDIOSYNC_MAX_GAP_FILL_SECONDS", raw("AUDIOSYNC_MAX_GAP_FILL_SECONDS")
            ),
            exporter_cache_seconds=_positive(
                "AUDIOSYNC_EXPORTER_CACHE_SECONDS", raw("AUDIOSYNC_EXPORTER_CACHE_SECONDS")
            ),
            exporter_read_seconds=_positive(
                "AUDIOSYNC_EXPORTER_READ_SECONDS", raw("AUDIOSYNC_EXPORTER_READ_SECONDS")
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


def _previous_secrets(
    comma_separated: str | None, json_list: str | None, current: bytes | None
) -> tuple[bytes, ...]:
    """Older secrets that open, never seal: ENCRYPTION_SECRET_PREVIOUS's, then
    ENCRYPTION_SECRET_PREVIOUS_JSON's. Each secret is its exact bytes, as ENCRYPTION_SECRET
    is: nothing is stripped (a form that cannot hold a character refuses it instead)."""
    if comma_separated is None and json_list is None:
        return ()
    if current is None:
        name = "ENCRYPTION_SECRET_PREVIOUS" + ("" if json_list is None else "_JSON")
        raise ConfigError(
            f"{name} is set but ENCRYPTION_SECRET is not: set the current secret (it seals) "
            "and keep the old ones in ENCRYPTION_SECRET_PREVIOUS(_JSON)"
        )
    return _comma_separated_secrets(comma_separated) + _json_listed_secrets(json_list)


def _comma_separated_secrets(value: str | None) -> tuple[bytes, ...]:
    """ENCRYPTION_SECRET_PREVIOUS: secrets without commas or surrounding whitespace."""
    out = []
    for position, item in enumerate(() if value is None else value.split(","), start=1):
        if item != item.strip():
            raise ConfigError(
                f"ENCRYPTION_SECRET_PREVIOUS item {position} starts or ends with whitespace; "
                "separate the secrets with bare commas (no spaces around them), or list a "
                "secret whose whitespace is its own (a file's trailing newline) in "
                'ENCRYPTION_SECRET_PREVIOUS_JSON, e.g. ["...\\n"]'
            )
        out.append(_previous_secret("ENCRYPTION_SECRET_PREVIOUS", position, item))
    return tuple(out)


def _json_listed_secrets(value: str | None) -> tuple[bytes, ...]:
    """ENCRYPTION_SECRET_PREVIOUS_JSON: a JSON list of strings, which holds any secret
    ENCRYPTION_SECRET accepts (commas, whitespace, quotes). Errors never show a secret."""
    if value is None:
        return ()
    try:
        items = json.loads(value)
    except JSONDecodeError as exc:  # its message gives a place, never the text
        raise ConfigError(
            f"ENCRYPTION_SECRET_PREVIOUS_JSON is not JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}); write a JSON list of "
            'strings, such as ["first old secret", "second"]'
        ) from None
    except (ValueError, RecursionError):  # a number over 4,300 digits, lists nested too deep
        raise ConfigError(
            "ENCRYPTION_SECRET_PREVIOUS_JSON is not JSON this reader takes (a number too "
            'long or lists nested too deep); write a JSON list of strings, such as ["first '
            'old secret", "second"]'
        ) from None
    if not isinstance(items, list):
        raise ConfigError(
            f"ENCRYPTION_SECRET_PREVIOUS_JSON is a JSON {_json_kind(items)}; write a JSON "
            'list of strings, such as ["first old secret", "second"]'
        )
    out = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise ConfigError(
                f"ENCRYPTION_SECRET_PREVIOUS_JSON item {position} is not a string "
                f"(a JSON {_json_kind(item)})"
            )
        out.append(_previous_secret("ENCRYPTION_SECRET_PREVIOUS_JSON", position, item))
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


def _recheck_seconds(value: str | None, *, mark_seconds: int) -> float:
    """AUDIOSYNC_DELETE_RECHECK_SECONDS: at least MIN_DELETE_RECHECK_SECONDS, and shorter
    than the deleted mark lives (the re-check runs while the mark still stops uploads)."""
    name = "AUDIOSYNC_DELETE_RECHECK_SECONDS"
    seconds = _positive(name, value)
    if seconds < MIN_DELETE_RECHECK_SECONDS:
        raise ConfigError(
            f"{name} must be at least {MIN_DELETE_RECHECK_SECONDS} s, got {value!r} (the "
            f"default, {DELETE_RECHECK_SECONDS}, outlasts any abandoned upload)"
        )
    if seconds >= mark_seconds:
        raise ConfigError(
            f"{name} ({seconds:g}) must be shorter than AUDIOSYNC_DELETED_MARK_SECONDS "
            f"({mark_seconds}): a deleted conversation is listed again while its mark lasts"
        )
    return seconds


def _url(name: str, value: str | None) -> str:
    if not value or "://" not in value:
        raise ConfigError(f"{name} must be a URL such as redis://host:6379/0, got {value!r}")
    return value


def _spool_dir(value: str | None) -> str | None:
    if value is not None and (not os.path.isabs(value) or "\0" in value):
        raise ConfigError(
            f"AUDIOSYNC_SPOOL_DIR must be an absolute directory path, got {value!r} "
            "(unset it to run without a spool)"
        )
    return value


def _rollout(prefix: str, raw: Callable[[str], str | None]) -> Rollout:
    """``{prefix}_PERCENT``, ``{prefix}_ALLOW_UIDS`` and ``{prefix}_DENY_UIDS``."""
    percent, allow, deny = f"{prefix}_PERCENT", f"{prefix}_ALLOW_UIDS", f"{prefix}_DENY_UIDS"
    return Rollout.parse(
        percent=(percent, raw(percent)), allow=(allow, raw(allow)), deny=(deny, raw(deny))
    )


def _flag(name: str, value: str | None) -> bool:
    if value not in ("0", "1"):
        raise ConfigError(f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def _at_most(name: str, number: _N, limit: int) -> _N:
    if number > limit:
        raise ConfigError(f"{name} must be at most {limit}, got {number}")
    return number


def _whole(name: str, value: str | None) -> int:
    number = _positive(name, value)
    if number != int(number):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _positive(name: str, value: str | None) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return number
