"""The proof: audiosync and the old 5 s path side by side, on the same speech, in one run.

Run: ``python -m bench.proof`` (or ``python bench/proof.py``); ``--short`` for the smoke
settings (4 sessions x 30 s, 1 worker, well under a minute), ``--help`` for the rest.

What it does, in order (docs/BENCHMARKS.md, "Proof", has the figures):

1. Starts the local stack (valkey: the stream store; fake-gcs-server with its request log)
   and a second valkey for the Celery broker, so the store's and the broker's commands are
   apart; then K real ``celery -A workers worker`` processes (the first with the embedded
   beat ``-B``: the sweep).
2. Plans N sessions of real speech (``tests/data/speech_16k.wav``, looped, each session from
   its own offset), at 8 and 16 kHz (8 kHz: the project's resampler) and at ``standard`` and
   ``enhanced``, mixed round robin. Both paths push exactly the same PCM, in 20 ms frames
   round robin over the sessions, with synthetic timestamps (accelerated, the default: as
   fast as the path takes them; audiosync's pusher waits after each round of chunks until
   every session has at most one chunk left to encode, so the sessions advance together as
   live ones do) or paced by the wall clock (``--real-time``).
3. **Baseline** phase: the backend's old path as ../shared/LEGACY_FORMATS.md describes it,
   in a process of its own: every 5 s of raw PCM16 at the session's rate becomes one object
   ``chunks/{uid}/{cid}/{start:.3f}.bin`` (``.enc`` for ``enhanced``: the PCM sealed as one
   v0 record, AES-256-GCM under the HKDF-SHA256 user key), uploaded by the pusher with
   google-cloud-storage (``blob.upload_from_string``, one request per chunk) from a pool of
   4 upload threads (in-flight uploads capped at 64, as the old uploader's bounded queue).
4. **audiosync** phase: in a process of its own, the public pusher API
   (``AudioSyncClient.from_env()``, ``open_session``, ``await session.apush(frame, ts)``,
   ``await session.aclose()``, ``await client.aclose()``), then the fleet drains it (the
   phase ends when every shard's due index is empty).
5. Audit: every object of both paths is listed and every chunk is found by its identity
   (baseline: the chunk start in the object's name; audiosync: the session id and sequence
   number in each chunk's container header or sealed record header) exactly once; every
   conversation is read back through ``backend_hooks.storage.download_merged_audio`` and
   compared with what was pushed: byte-exact for raw PCM; for Opus the same number of
   samples and a Pearson correlation of at least ``--min-correlation`` (0.9) with the
   pushed speech, aligned (best of lags -8..8 samples).

Each path runs in phases of its own, one after the other (``--rounds N``: both paths N
times, alternating which goes first, each round on new conversations; figures summed), so
each path's counters are deltas over its own phases: GCS requests from fake-gcs-server's
request log (every request it answered, classified by method and path:
``classify_request``), Redis ``INFO commandstats`` / ``INFO cpu`` / ``used_memory`` of the
store and the broker, CPU of the pusher process (``time.process_time`` of its push and
close, all its threads), of the worker process groups (/proc) and of the servers. Every
client of the store reaches it through a counting TCP proxy
(``audiosync_dev.faults.RedisReplyDropProxy``, dropping nothing): the commands it forwards
are the ones sent (a script call is one); ``INFO commandstats`` counts those and the
``redis.call``s of scripts, so the difference is the commands run inside scripts. The
bench's own ``INFO`` calls and due-index polls are left out.

Writes a JSON result (schema "audiosync-proof/1": ``schema``, ``started_at``, ``command``,
``machine``, ``settings``, ``session_hours``, ``audio_seconds``, ``paths`` (``baseline``,
``audiosync``: every figure of ``figures`` as a total and, for ``RATED_FIGURES``, per
session-hour), ``ratios`` (audiosync / baseline where the baseline is not 0),
``object_bytes_per_audio_second``, ``audit``; bench/cost.py reads it) and a Markdown summary.
Exits 1 when any chunk is lost or duplicated or a read-back fails the audit.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import math
import os
import platform
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

if __package__ in (None, ""):  # python bench/proof.py: the checkout on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "tests" / "data" / "speech_16k.wav"
SCHEMA = "audiosync-proof/1"
FRAME_SECONDS = 0.02
CHUNK_SECONDS = 5
BASELINE_UPLOAD_THREADS = 4
BASELINE_IN_FLIGHT = 64
DEFAULT_MIN_CORRELATION = 0.9
MAX_LAG = 8
BASE_PREFIX = "proof-base"
NEW_PREFIX = "proof-as"
PATHS = ("baseline", "audiosync")
SHORT = {"sessions": 4, "seconds": 30.0, "workers": 1, "sweep": 1.0}
DEFAULTS = {"sessions": 40, "seconds": 300.0, "workers": 2, "sweep": 5.0}

#: Figures with a per-session-hour twin (PROOF_SCHEMA.md: FIGURES).
RATED_FIGURES = (
    "gcs_class_a",
    "gcs_class_b",
    "objects_stored",
    "bytes_stored",
    "redis_commands_sent",
    "redis_commands_in_scripts",
    "redis_cpu_seconds",
    "broker_commands",
    "pusher_cpu_seconds",
    "fleet_cpu_seconds",
)


# -- GCS requests: operation classes (pure) ----------------------------------------------
#: Operation kind -> GCS class ("A", "B", or "free"), as GCS bills JSON API calls.
GCS_CLASS = {
    "insert": "A",  # objects.insert: simple, multipart, or one request of a resumable upload
    "resumable_start": "A",  # the POST that opens a resumable upload
    "compose": "A",
    "copy": "A",
    "rewrite": "A",
    "list": "A",
    "patch": "A",  # objects.patch / update (metadata)
    "bucket_insert": "A",
    "bucket_list": "A",
    "get": "B",  # objects.get: media
    "get_metadata": "B",  # objects.get: metadata only
    "bucket_get": "B",
    "delete": "free",
    "other": "free",
}


def classify_request(method: str, path: str) -> str:
    """The JSON API operation of one request fake-gcs-server logged (``path`` with its query)."""
    route, _, query = path.partition("?")
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    if route.startswith("/upload/storage/v1/"):
        if method == "POST" and params.get("uploadType") == "resumable":
            return "resumable_start"
        return "insert" if method in ("POST", "PUT") else "other"
    if route.startswith("/download/storage/v1/"):
        return "get" if method == "GET" else "other"
    m = re.match(r"^/storage/v1/b(?:/(?P<bucket>[^/]+)(?:/o(?P<object>/.*)?)?)?/?$", route)
    if m is None:
        return "other"
    bucket, obj = m["bucket"], m["object"]
    if bucket is None:
        return {"GET": "bucket_list", "POST": "bucket_insert"}.get(method, "other")
    if obj is None:
        if route.rstrip("/").endswith("/o"):  # the object collection
            return {"GET": "list", "POST": "insert"}.get(method, "other")
        return {"GET": "bucket_get"}.get(method, "other")
    if method == "POST" and obj.endswith("/compose"):
        return "compose"
    if method == "POST" and "/copyTo/" in obj:
        return "copy"
    if method == "POST" and "/rewriteTo/" in obj:
        return "rewrite"
    if method == "GET":
        return "get" if params.get("alt") == "media" else "get_metadata"
    if method in ("PATCH", "PUT"):
        return "patch"
    if method == "DELETE":
        return "delete"
    return "other"


@dataclass(frozen=True)
class GcsCounts:
    class_a: int
    class_b: int
    by_kind: dict[str, int]


def count_requests(requests: Iterable[tuple[str, str]]) -> GcsCounts:
    """Class A / B totals and the count of every kind, of (method, path) pairs."""
    kinds = Counter(classify_request(method, path) for method, path in requests)
    a = sum(n for kind, n in kinds.items() if GCS_CLASS[kind] == "A")
    b = sum(n for kind, n in kinds.items() if GCS_CLASS[kind] == "B")
    return GcsCounts(a, b, dict(sorted(kinds.items())))


# -- arithmetic (pure) -------------------------------------------------------------------
def session_hours(audio_seconds: float) -> float:
    """PROOF_SCHEMA.md: the audio seconds pushed (summed over sessions) / 3600."""
    return audio_seconds / 3600


def with_rates(figures: Mapping[str, Any], hours: float) -> dict[str, Any]:
    """``figures`` plus ``<name>_per_session_hour`` for every rated figure."""
    if hours <= 0:
        raise ValueError(f"session-hours must be positive, got {hours}")
    out = dict(figures)
    for name in RATED_FIGURES:
        out[f"{name}_per_session_hour"] = figures[name] / hours
    return out


def ratios(baseline: Mapping[str, Any], audiosync: Mapping[str, Any]) -> dict[str, float]:
    """audiosync / baseline for every numeric figure both have where the baseline is not 0
    (nested ``{"p50": ...}`` figures as ``name.p50``)."""
    out: dict[str, float] = {}
    for name, base in baseline.items():
        new = audiosync.get(name)
        if isinstance(base, dict) and isinstance(new, dict):
            for key, value in ratios(base, new).items():
                out[f"{name}.{key}"] = value
        elif (
            isinstance(base, int | float)
            and isinstance(new, int | float)
            and not isinstance(base, bool)
            and not isinstance(new, bool)
            and base != 0
            and math.isfinite(base)
            and math.isfinite(new)
        ):
            out[name] = new / base
    return out


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def spread(values: Iterable[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "p50": percentile(v, 50),
        "p90": percentile(v, 90),
        "p99": percentile(v, 99),
        "max": v[-1] if v else math.nan,
    }


# -- the audit's verdict (pure) ------------------------------------------------------------
@dataclass(frozen=True)
class ChunkAudit:
    chunks: int  # expected
    lost: int  # expected, found nowhere
    duplicated: int  # found more than once (each extra finding counts once)
    unexpected: int  # found, but not planned


def audit_chunks(expected: Iterable[object], found: Iterable[object]) -> ChunkAudit:
    """Every expected chunk identity found exactly once?"""
    want = set(expected)
    seen = Counter(found)
    return ChunkAudit(
        chunks=len(want),
        lost=sum(1 for key in want if seen[key] == 0),
        duplicated=sum(n - 1 for key, n in seen.items() if n > 1),
        unexpected=sum(n for key, n in seen.items() if key not in want),
    )


def verdict(audit: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why the audit failed (empty: it passed). ``audit``: path -> its audit record."""
    why = []
    for path, rec in audit.items():
        for key in ("lost", "duplicated", "unexpected"):
            if rec.get(key, 0):
                why.append(f"{path}: {rec[key]} chunk(s) {key}")
        if rec.get("samples_read") != rec.get("samples_expected"):
            why.append(
                f"{path}: {rec.get('samples_read')} samples read back, "
                f"{rec.get('samples_expected')} pushed"
            )
        if "exact" in rec and not rec["exact"]:
            why.append(f"{path}: raw PCM read back differs from what was pushed")
        if "min_correlation" in rec and not rec["min_correlation"] >= rec["correlation_threshold"]:
            why.append(
                f"{path}: correlation {rec['min_correlation']:.3f} below "
                f"{rec['correlation_threshold']}"
            )
        for problem in rec.get("problems", []):
            why.append(f"{path}: {problem}")
    return why


def best_correlation(reference: np.ndarray[Any, Any], decoded: np.ndarray[Any, Any]) -> float:
    """Highest Pearson correlation of two equally long signals over lags -MAX_LAG..MAX_LAG."""
    x = reference.astype(np.float64)
    y = decoded.astype(np.float64)
    best = -1.0
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        a, b = (x[lag:], y[: len(y) - lag]) if lag >= 0 else (x[:lag], y[-lag:])
        if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
            continue
        best = max(best, float(np.corrcoef(a, b)[0, 1]))
    return best


# -- the plan: sessions and their audio ----------------------------------------------------
@dataclass(frozen=True)
class PlannedSession:
    index: int
    rate: int
    level: str
    offset_samples: int  # where in the looped speech (at its rate) this session starts
    samples: int  # its audio length

    def uid(self, path: str) -> str:
        return f"{BASE_PREFIX if path == 'baseline' else NEW_PREFIX}-u{self.index}"

    def cid(self, round_: int) -> str:
        """Its conversation in round ``round_`` (each round a new one of the same user)."""
        return f"c{self.index}r{round_}"

    @property
    def frame_samples(self) -> int:
        return round(FRAME_SECONDS * self.rate)

    @property
    def chunk_samples(self) -> int:
        return CHUNK_SECONDS * self.rate

    @property
    def chunks(self) -> int:
        return -(-self.samples // self.chunk_samples)

    @property
    def frames(self) -> int:
        return -(-self.samples // self.frame_samples)

    def chunk_completed_by(self, frame: int) -> int | None:
        """The chunk whose last sample frame ``frame`` pushes (None: no chunk ends there)."""
        end = min((frame + 1) * self.frame_samples, self.samples)
        if end % self.chunk_samples == 0:
            return end // self.chunk_samples - 1
        return None


@dataclass(frozen=True)
class Plan:
    sessions: list[PlannedSession]
    base_time: float  # timestamp (Unix s) of every session's first sample
    real_time: bool
    speech: str
    round: int = 0  # which round of the run (--rounds)

    def to_json(self) -> str:
        return json.dumps(
            {
                "sessions": [asdict(s) for s in self.sessions],
                "base_time": self.base_time,
                "real_time": self.real_time,
                "speech": self.speech,
                "round": self.round,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(
            sessions=[PlannedSession(**s) for s in raw["sessions"]],
            base_time=raw["base_time"],
            real_time=raw["real_time"],
            speech=raw["speech"],
            round=raw["round"],
        )

    @property
    def audio_seconds(self) -> float:
        return sum(s.samples / s.rate for s in self.sessions)

    def restarted(self, round_: int) -> Plan:
        """The same sessions in round ``round_``, timestamps from now (real time: 3 s on)."""
        return Plan(self.sessions, _start_time(self.real_time), self.real_time, self.speech, round_)


def _start_time(real_time: bool) -> float:
    return float(math.floor(time.time()) + (3 if real_time else 0))


def make_plan(
    sessions: int,
    seconds: float,
    rates: Sequence[int],
    levels: Sequence[str],
    *,
    real_time: bool,
    speech: Path = SPEECH,
) -> Plan:
    """Session ``i``: rate ``rates[i % len]``, level ``levels[(i // len(rates)) % len]``
    (so every rate meets every level), starting ``i * 7.37 s`` into the looped speech."""
    speech_seconds = _speech_seconds(speech)
    planned = []
    for i in range(sessions):
        rate = rates[i % len(rates)]
        level = levels[(i // len(rates)) % len(levels)]
        offset = round(((i * 7.37) % speech_seconds) * rate)
        planned.append(PlannedSession(i, rate, level, offset, round(seconds * rate)))
    return Plan(planned, _start_time(real_time), real_time, str(speech))


def _speech_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


class Speech:
    """The speech sample at each rate, looped: ``pcm(session)`` is a session's audio."""

    def __init__(self, path: Path) -> None:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ValueError(f"{path}: expected PCM16 mono")
            self.rate = w.getframerate()
            self.source = w.readframes(w.getnframes())
        self._at: dict[int, bytes] = {}

    def at(self, rate: int) -> bytes:
        """The sample at ``rate``, twice (a slice up to its length never wraps)."""
        if rate not in self._at:
            from backend_hooks.read.resample import resample_pcm16

            pcm = self.source if rate == self.rate else resample_pcm16(self.source, self.rate, rate)
            self._at[rate] = pcm + pcm
        return self._at[rate]

    def frame(self, s: PlannedSession, f: int) -> bytes:
        """Frame ``f`` of session ``s`` (the last one may be short)."""
        loop = self.at(s.rate)
        length = len(loop) // 4  # samples in one copy
        first = f * s.frame_samples
        n = min(s.frame_samples, s.samples - first)
        at = (s.offset_samples + first) % length
        return loop[2 * at : 2 * (at + n)]

    def pcm(self, s: PlannedSession) -> bytes:
        return b"".join(self.frame(s, f) for f in range(s.frames))


# -- the pushers (each in its own process) -------------------------------------------------
class Progress:
    """A plain stderr progress bar (a line every 10 % when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, out: TextIO = sys.stderr) -> None:
        self.label, self.total, self.out = label, max(1, total), out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._shown = -1.0
        self._decile = -1

    def update(self, done: int) -> None:
        now = time.monotonic()
        share = min(1.0, done / self.total)
        if self.tty:
            if now - self._shown < 0.25 and done < self.total:
                return
            self._shown = now
            bar = "#" * int(share * 30)
            self.out.write(
                f"\r{self.label:<10} [{bar:<30}] {share:6.1%} {now - self.started:6.1f} s"
            )
            if done >= self.total:
                self.out.write("\n")
            self.out.flush()
        elif int(share * 10) > self._decile:
            self._decile = int(share * 10)
            self.out.write(f"{self.label}: {share:.0%} after {now - self.started:.1f} s\n")
            self.out.flush()


@dataclass
class PushOutcome:
    """What a pusher process reports (JSON) to the proof."""

    path: str
    cpu_seconds: float  # process_time of the push and close, every thread of the process
    wall_seconds: float
    started_at: float
    finished_at: float
    #: [session][chunk]: time.time() right before the push call that completed the chunk
    enqueued: list[list[float]]
    #: baseline: [session][chunk] time.time() when its upload returned
    durable: list[list[float]] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)  # audiosync: per planned session
    pushes: int = 0
    failed_uploads: int = 0
    errors: list[str] = field(default_factory=list)
    process_cpu_seconds: float = 0.0  # the whole process, start-up included


async def _frames(
    plan: Plan, speech: Speech, progress: Progress
) -> AsyncIterator[tuple[int, int, bytes, float]]:
    """(session, frame, pcm, timestamp) round robin over the sessions, frame by frame; in
    real time each frame waits for its wall time."""
    todo = sum(s.frames for s in plan.sessions)
    done = 0
    longest = max(s.frames for s in plan.sessions)
    for f in range(longest):
        timestamp = plan.base_time + f * FRAME_SECONDS
        if plan.real_time:
            wait = timestamp + FRAME_SECONDS - time.time()  # the frame has been spoken
            if wait > 0:
                await asyncio.sleep(wait)
        for s in plan.sessions:
            if f < s.frames:
                yield s.index, f, speech.frame(s, f), timestamp
                done += 1
        if f % 50 == 0:
            progress.update(done)
            await asyncio.sleep(0)  # let other tasks (uploads, callbacks) in
    progress.update(todo)


async def push_audiosync(plan: Plan) -> PushOutcome:
    """The public pusher API, as docs/INTEGRATION.md wires it."""
    from backend_hooks.pusher.client import AudioSyncClient

    speech = Speech(Path(plan.speech))
    for rate in {s.rate for s in plan.sessions}:
        speech.at(rate)  # resampled before the clock starts
    enqueued = [[math.nan] * s.chunks for s in plan.sessions]
    cpu0, wall0, started = time.process_time(), time.monotonic(), time.time()
    client = AudioSyncClient.from_env()
    sessions = [
        client.open_session(s.uid("audiosync"), s.cid(plan.round), s.rate, s.level)
        for s in plan.sessions
    ]
    progress = Progress("audiosync", sum(s.frames for s in plan.sessions))
    pushes = 0
    last = plan.sessions[-1].index
    async for i, f, pcm, timestamp in _frames(plan, speech, progress):
        k = plan.sessions[i].chunk_completed_by(f)
        if k is not None:
            enqueued[i][k] = time.time()
        await sessions[i].apush(pcm, timestamp)
        pushes += 1
        if k is not None and i == last and not plan.real_time:
            # Accelerated: a round of chunks (one a session) handed over; wait until every
            # session has at most one chunk left to encode, so the sessions advance together
            # as live ones do (else the pool's backlog starves some for longer than the max
            # age, and the fleet writes their young partial objects by age).
            while max(session.unsent_chunks for session in sessions) > 1:
                await asyncio.sleep(0.005)
    closing = time.time()
    for row in enqueued:
        if math.isnan(row[-1]):  # a partial last chunk goes with the close
            row[-1] = closing
    # Accelerated, a session may hold up to AUDIOSYNC_SESSION_BUFFER_SECONDS of audio not
    # yet encoded, more than AUDIOSYNC_CLOSE_SECONDS of encoding on a busy machine: wait
    # for the backlog (a socket's end in real time finds almost none), then close; a close
    # that still runs out of time keeps its audio and is awaited again, as documented.
    while any(session.unsent_chunks for session in sessions):
        await asyncio.sleep(0.05)
    await asyncio.gather(*(_close(session) for session in sessions))
    await client.aclose()
    return PushOutcome(
        path="audiosync",
        cpu_seconds=time.process_time() - cpu0,
        wall_seconds=time.monotonic() - wall0,
        started_at=started,
        finished_at=time.time(),
        enqueued=enqueued,
        session_ids=[session.session_id for session in sessions],
        pushes=pushes,
    )


async def _close(session: Any, attempts: int = 6) -> None:
    from backend_hooks.contract.errors import EnqueueError

    for attempt in range(1, attempts + 1):
        try:
            await session.aclose()
            return
        except EnqueueError:
            if attempt == attempts:
                raise


def baseline_name(uid: str, cid: str, start: float, sealed: bool) -> str:
    """LEGACY_FORMATS.md: ``chunks/{uid}/{conversation_id}/{start:.3f}.bin`` (``.enc``)."""
    return f"chunks/{uid}/{cid}/{start:.3f}{'.enc' if sealed else '.bin'}"


async def push_baseline(plan: Plan) -> PushOutcome:
    """The old path: each 5 s of PCM16 its own object, sealed as a v0 record for
    ``enhanced``, uploaded with google-cloud-storage from a pool of upload threads."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from backend_hooks.contract import envelope

    speech = Speech(Path(plan.speech))
    for rate in {s.rate for s in plan.sessions}:
        speech.at(rate)
    n = len(plan.sessions)
    enqueued = [[math.nan] * s.chunks for s in plan.sessions]
    durable = [[math.nan] * s.chunks for s in plan.sessions]
    errors: list[str] = []
    cpu0, wall0, started = time.process_time(), time.monotonic(), time.time()
    client = storage.Client(
        project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]},
    )
    bucket = client.bucket(os.environ["BUCKET_PRIVATE_CLOUD_SYNC"])
    secret = os.environ["ENCRYPTION_SECRET"].encode()
    ciphers: dict[str, AESGCM] = {}  # the user key, derived once a user
    pool = concurrent.futures.ThreadPoolExecutor(BASELINE_UPLOAD_THREADS, "upload")
    in_flight = asyncio.Semaphore(BASELINE_IN_FLIGHT)
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Future[None]] = []
    failed = 0

    def upload(i: int, k: int, pcm: bytes) -> None:
        s = plan.sessions[i]
        uid = s.uid("baseline")
        sealed = s.level == "enhanced"
        if sealed:
            if uid not in ciphers:
                ciphers[uid] = AESGCM(envelope.derive_user_key(secret, uid))
            data = envelope.seal_v0(ciphers[uid], pcm)
        else:
            data = pcm
        start = plan.base_time + k * CHUNK_SECONDS
        blob = bucket.blob(baseline_name(uid, s.cid(plan.round), start, sealed))
        for attempt in range(3):  # the old uploader: three tries, then dropped
            try:
                blob.upload_from_string(data, content_type="application/octet-stream")
                break
            except Exception as exc:
                if attempt == 2:
                    raise RuntimeError(f"upload of {blob.name} failed: {exc}") from exc
        durable[i][k] = time.time()

    async def send(i: int, k: int, pcm: bytes) -> None:
        nonlocal failed
        try:
            await loop.run_in_executor(pool, upload, i, k, pcm)
        except Exception as exc:
            failed += 1
            errors.append(str(exc))
        finally:
            in_flight.release()

    buffers = [bytearray() for _ in range(n)]
    progress = Progress("baseline", sum(s.frames for s in plan.sessions))
    pushes = 0
    async for i, f, pcm, _ in _frames(plan, speech, progress):
        s = plan.sessions[i]
        buffers[i] += pcm
        pushes += 1
        k = s.chunk_completed_by(f)
        if k is not None:
            enqueued[i][k] = time.time()
            chunk, buffers[i] = bytes(buffers[i]), bytearray()
            await in_flight.acquire()
            tasks.append(asyncio.ensure_future(send(i, k, chunk)))
    closing = time.time()
    for i, s in enumerate(plan.sessions):  # the socket's end: the partial last chunk
        if buffers[i]:
            enqueued[i][-1] = closing
            await in_flight.acquire()
            tasks.append(asyncio.ensure_future(send(i, s.chunks - 1, bytes(buffers[i]))))
    await asyncio.gather(*tasks)
    pool.shutdown()
    return PushOutcome(
        path="baseline",
        cpu_seconds=time.process_time() - cpu0,
        wall_seconds=time.monotonic() - wall0,
        started_at=started,
        finished_at=time.time(),
        enqueued=enqueued,
        durable=durable,
        pushes=pushes,
        failed_uploads=failed,
        errors=errors[:20],
    )


def child_main(path: str, plan_file: Path, out_file: Path) -> int:
    """A pusher process: push the plan by ``path``, write the outcome as JSON."""
    plan = Plan.from_json(plan_file.read_text())
    run = push_baseline if path == "baseline" else push_audiosync
    outcome = asyncio.run(run(plan))
    t = os.times()
    outcome.process_cpu_seconds = t.user + t.system
    out_file.write_text(json.dumps(asdict(outcome)))
    return 0


# -- the servers and processes: counters ---------------------------------------------------
def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group (Linux /proc)."""
    total = 0.0
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:
            continue
        total += pid_cpu_seconds(pid)
    return total


def pid_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class RedisSnapshot:
    commands: Counter[str]  # INFO commandstats calls, the bench's INFO left out
    sent: int  # commands clients sent through the counting proxy (-1: no proxy)
    own: int  # commands the bench itself sent to this server, not through the proxy
    cpu: float  # used_cpu_user + used_cpu_sys
    memory: int  # used_memory


def redis_snapshot(client: Any, sent: int = -1, own: int = 0) -> RedisSnapshot:
    stats = client.info("commandstats")
    commands = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})
    commands.pop("info", None)
    server = client.info("everything")
    return RedisSnapshot(
        commands=commands,
        sent=sent,
        own=own,
        cpu=float(server["used_cpu_user"]) + float(server["used_cpu_sys"]),
        memory=int(server["used_memory"]),
    )


def redis_delta(before: RedisSnapshot, after: RedisSnapshot) -> dict[str, Any]:
    """Commands clients sent (a script call is one; counted by the proxy), commands run
    inside scripts (INFO commandstats counts both: its total minus the sent ones), CPU
    seconds, and the commands by name. The bench's own commands are left out."""
    by_name = after.commands - before.commands
    total = sum(by_name.values()) - (after.own - before.own)
    sent = after.sent - before.sent if before.sent >= 0 else total
    return {
        "sent": sent,
        "in_scripts": max(0, total - sent),
        "total": total,
        "cpu_seconds": after.cpu - before.cpu,
        "by_command": dict(by_name.most_common()),
    }


class MemoryPeak(threading.Thread):
    """Polls ``used_memory`` of a Redis every ``interval`` seconds until stopped."""

    def __init__(self, client: Any, interval: float = 0.5) -> None:
        super().__init__(name="memory-peak", daemon=True)
        self.client, self.interval = client, interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, int(self.client.info("memory")["used_memory"]))
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(10)
        with contextlib.suppress(Exception):
            self.peak = max(self.peak, int(self.client.info("memory")["used_memory"]))
        return self.peak


@dataclass
class Snapshot:
    at: float
    gcs_requests: int  # lines of fake-gcs-server's request log so far
    store: RedisSnapshot
    broker: RedisSnapshot
    workers: float
    servers: dict[str, float]


# -- the run -------------------------------------------------------------------------------
@dataclass
class Phase:
    path: str
    outcome: PushOutcome
    before: Snapshot
    after: Snapshot
    gcs: GcsCounts
    memory_peak: int
    wall_seconds: float  # push + drain
    load_average: float  # 1 min, at its end


class Run:
    """The servers and workers of one proof, and the counters around each phase."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self._stack: Any = None
        self._broker: Any = None
        self._proxy: Any = None
        self.workers: list[Any] = []
        self.env: dict[str, str] = {}

    def __enter__(self) -> Run:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        import redis

        from audiosync_dev import processes
        from audiosync_dev.faults import RedisReplyDropProxy
        from audiosync_dev.localstack import LocalStack, StandaloneValkey
        from backend_hooks.contract.settings import Settings

        self._stack = LocalStack(workdir=self.workdir / "stack")
        info = self._stack.start()
        self._broker = StandaloneValkey(self.workdir / "broker")
        self._broker.start()
        # Every client of the store (pusher, workers) goes through a counting proxy: it
        # counts the commands sent; the scripts' own commands never cross the wire.
        store = redis.Redis.from_url(info.redis_url)
        kwargs = store.connection_pool.connection_kwargs
        self._proxy = RedisReplyDropProxy(
            str(kwargs["host"]), int(kwargs["port"]), drop_rate=0.0, seed=0
        ).start()
        self.env = {
            **info.env(),
            "AUDIOSYNC_REDIS_URL": self._proxy.url,
            "CELERY_BROKER_URL": self._broker.url,
            "ENCRYPTION_SECRET": self.args.secret,
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": repr(self.args.sweep),
        }
        self.settings = Settings.from_env({**os.environ, **self.env}, role="pusher")
        self.store = store
        self.own_store_commands = 0  # the bench's: due polling (ZCARD, SMEMBERS)
        self.broker = redis.Redis.from_url(self._broker.url)
        for w in range(self.args.workers):
            self.workers.append(
                processes.worker(
                    self.env,
                    self.workdir,
                    beat=w == 0,
                    concurrency=self.args.concurrency,
                    name=f"proof{w}",
                )
            )

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.stop()
        if self._proxy is not None:
            self._proxy.close()
        if self._broker is not None:
            self._broker.stop()
        if self._stack is not None:
            self._stack.stop()

    @property
    def gcs_url(self) -> str:
        return str(self.env["STORAGE_EMULATOR_HOST"])

    @property
    def bucket(self) -> str:
        return str(self.env["BUCKET_PRIVATE_CLOUD_SYNC"])

    def gcs_requests(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self._stack.gcs_requests()]

    def snapshot(self) -> Snapshot:
        servers = {name: pid_cpu_seconds(pid) for name, pid in self._stack.pids.items()}
        return Snapshot(
            at=time.time(),
            gcs_requests=len(self._stack.gcs_requests()),
            store=redis_snapshot(self.store, self._proxy.stats.commands, self.own_store_commands),
            broker=redis_snapshot(self.broker),
            workers=sum(group_cpu_seconds(w.pid) for w in self.workers if w.pid),
            servers=servers,
        )

    @property
    def object_seconds(self) -> float:
        return self.settings.object_seconds

    def due_sessions(self) -> int:
        from backend_hooks.contract import redis_keys

        counts = [int(c) for c in self.store.smembers(redis_keys.SHARD_COUNTS_KEY)]
        shards = max([*counts, self.settings.due_shards])
        pipe = self.store.pipeline(transaction=False)
        for s in range(shards):
            pipe.zcard(redis_keys.due_key(s))
        self.own_store_commands += 1 + shards
        return sum(int(n) for n in pipe.execute())

    def push(self, path: str, plan_file: Path) -> PushOutcome:
        out = self.workdir / f"push-{path}.json"
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.proof",
                "--child",
                path,
                "--plan",
                str(plan_file),
                "--child-out",
                str(out),
            ],
            env=env,
            cwd=REPO,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the {path} pusher process exited with {proc.returncode}")
        raw = json.loads(out.read_text())
        return PushOutcome(**raw)

    def phase(self, path: str, plan_file: Path) -> Phase:
        before = self.snapshot()
        peak = MemoryPeak(self.store)
        peak.start()
        wall0 = time.monotonic()
        outcome = self.push(path, plan_file)
        if path == "audiosync":
            self.drain()
        wall = time.monotonic() - wall0
        memory_peak = peak.stop()
        after = self.snapshot()
        log = self.gcs_requests()
        gcs = count_requests(log[before.gcs_requests : after.gcs_requests])
        return Phase(path, outcome, before, after, gcs, memory_peak, wall, os.getloadavg()[0])

    def drain(self) -> None:
        """Until every shard's due index is empty (twice, a poll apart)."""
        deadline = time.monotonic() + self.args.drain_timeout
        empty = 0
        while empty < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not drained within {self.args.drain_timeout:g} s")
            empty = empty + 1 if self.due_sessions() == 0 else 0
            time.sleep(0.25)


# -- the audit -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Listed:
    name: str
    size: int
    created: float


def list_path(run: Run, prefix: str) -> list[Listed]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": run.gcs_url},
    )
    out = []
    for blob in client.list_blobs(run.bucket, prefix=f"chunks/{prefix}-"):
        created = blob.time_created
        assert isinstance(created, datetime.datetime)
        out.append(Listed(blob.name, int(blob.size or 0), created.timestamp()))
    return out


def chunk_identities(data: bytes, name: str) -> list[tuple[str, int, int]]:
    """(session id, seq, samples) of every chunk an audiosync object holds, from its
    containers' headers (``.opus``) or its sealed records' headers (``.opus.enc``)."""
    from backend_hooks.contract import container, envelope

    if name.endswith(".opus.enc"):
        infos = [r.info for r in envelope.split_records(data, name=name)]
    else:
        infos = [c.info for c in container.parse_chunks(data)]
    out = []
    for info in infos:
        if info is None:
            raise ValueError(f"{name}: a record without a v1 header")
        out.append((info.session_id, info.seq, info.sample_count))
    return out


def audit(
    run: Run,
    plans: Mapping[tuple[str, int], Plan],
    outcomes: Mapping[tuple[str, int], PushOutcome],
    speech: Speech,
    min_correlation: float,
    drop: str | None,
) -> tuple[dict[str, Any], dict[str, list[Listed]], dict[str, list[float]]]:
    """The audit record per path, the objects listed per path, and the chunk delays.
    ``plans`` and ``outcomes`` by (path, round)."""
    from backend_hooks.contract.settings import Settings
    from backend_hooks.read.reader import StorageContext, download_merged_audio

    listed = {
        "baseline": list_path(run, BASE_PREFIX),
        "audiosync": list_path(run, NEW_PREFIX),
    }
    if drop is not None and listed[drop]:  # the test hook: one object lost before the audit
        victim = listed[drop][len(listed[drop]) // 2]
        _delete(run, victim.name)
        listed[drop] = [o for o in listed[drop] if o.name != victim.name]
    context = StorageContext.from_settings(Settings.from_env(run.env, role="reader"))
    rounds = sorted({r for _, r in plans})
    sessions = plans[("baseline", rounds[0])].sessions
    by_uid = {s.uid(path): s for s in sessions for path in PATHS}
    expected = [(r, s.index, k) for r in rounds for s in sessions for k in range(s.chunks)]
    records: dict[str, Any] = {}
    delays: dict[str, list[float]] = {}

    # baseline: identity = (round, session, chunk index) from the object's name
    found: list[tuple[int, int, int]] = []
    durable: dict[tuple[int, int, int], float] = {}
    problems: list[str] = []
    for obj in listed["baseline"]:
        _, uid, cid, filename = obj.name.split("/")
        m = re.fullmatch(r"c(\d+)r(\d+)", cid)
        if uid not in by_uid or m is None or ("baseline", int(m[2])) not in plans:
            found.append((-1, -1, -1))
            continue
        r = int(m[2])
        start = float(filename.removesuffix(".bin").removesuffix(".enc"))
        k = round((start - plans[("baseline", r)].base_time) / CHUNK_SECONDS)
        key = (r, by_uid[uid].index, k)
        found.append(key)
        if 0 <= k < by_uid[uid].chunks:
            outcome = outcomes[("baseline", r)]
            durable[key] = outcome.durable[key[1]][k] - outcome.enqueued[key[1]][k]
    chunks = audit_chunks(expected, found)
    delays["baseline"] = list(durable.values())
    samples_read = samples_expected = 0
    exact = True
    for r in rounds:
        for s in sessions:
            pcm = speech.pcm(s)
            samples_expected += len(pcm) // 2
            try:
                merged = download_merged_audio(
                    s.uid("baseline"), s.cid(r), sample_rate=s.rate, context=context
                )
            except Exception as exc:
                problems.append(f"round {r} session {s.index}: read failed: {exc}")
                exact = False
                continue
            samples_read += merged.sample_count
            if merged.pcm != pcm or merged.missing:
                exact = False
    records["baseline"] = {
        **asdict(chunks),
        "samples_expected": samples_expected,
        "samples_read": samples_read,
        "exact": exact,
        "problems": problems,
    }

    # audiosync: identity = (session id, seq) from the chunks' own headers
    index_of = {
        sid: (r, i)
        for (path, r), outcome in outcomes.items()
        if path == "audiosync"
        for i, sid in enumerate(outcome.session_ids)
    }
    found = []
    created: dict[tuple[int, int, int], float] = {}
    problems = []
    for obj in listed["audiosync"]:
        data = context.bucket.download(obj.name)
        for sid, seq, _ in chunk_identities(data, obj.name):
            r, i = index_of.get(sid, (-1, -1))
            found.append((r, i, seq))
            created[(r, i, seq)] = obj.created
            if i >= 0 and obj.name.split("/")[1:3] != [
                sessions[i].uid("audiosync"),
                sessions[i].cid(r),
            ]:
                problems.append(f"{obj.name} holds a chunk of round {r} session {i}")
    chunks = audit_chunks(expected, found)
    delays["audiosync"] = [
        at - outcomes[("audiosync", r)].enqueued[i][k]
        for (r, i, k), at in created.items()
        if r >= 0 and 0 <= k < sessions[i].chunks
    ]
    samples_read = samples_expected = 0
    worst = math.inf
    for r in rounds:
        for s in sessions:
            pcm = speech.pcm(s)
            samples_expected += len(pcm) // 2
            where = f"round {r} session {s.index}"
            try:
                merged = download_merged_audio(s.uid("audiosync"), s.cid(r), context=context)
            except Exception as exc:
                problems.append(f"{where}: read failed: {exc}")
                worst = -1.0
                continue
            samples_read += merged.sample_count
            if merged.sample_rate != s.rate:
                problems.append(f"{where}: read back at {merged.sample_rate} Hz")
                continue
            if merged.missing:
                problems.append(f"{where}: missing {merged.missing[0].describe()}")
            if merged.sample_count == len(pcm) // 2:
                corr = best_correlation(
                    np.frombuffer(pcm, dtype="<i2"), np.frombuffer(merged.pcm, dtype="<i2")
                )
                worst = min(worst, corr)
    records["audiosync"] = {
        **asdict(chunks),
        "samples_expected": samples_expected,
        "samples_read": samples_read,
        "min_correlation": worst if math.isfinite(worst) else -1.0,
        "correlation_threshold": min_correlation,
        "problems": problems,
    }
    return records, listed, delays


def _delete(run: Run, name: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": run.gcs_url},
    )
    client.bucket(run.bucket).blob(name).delete()


_ERROR_LINE = re.compile(r": (ERROR|CRITICAL)[/\]]|Traceback")


def _log_errors(log: Path) -> int:
    """ERROR/CRITICAL lines and tracebacks in a worker's log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if _ERROR_LINE.search(line))


# -- figures -------------------------------------------------------------------------------
def figures(
    phases: Sequence[Phase], listed: Sequence[Listed], delays: Sequence[float]
) -> dict[str, Any]:
    """PROOF_SCHEMA.md's FIGURES of one path, summed over its phases (one a round; totals:
    rates are added by ``with_rates``)."""
    new = phases[0].path == "audiosync"
    store = [redis_delta(ph.before.store, ph.after.store) for ph in phases]
    broker = [redis_delta(ph.before.broker, ph.after.broker) for ph in phases]
    workers = sum(ph.after.workers - ph.before.workers for ph in phases)
    servers: dict[str, float] = {}
    for ph in phases:
        for name, cpu in ph.before.servers.items():
            servers[name] = servers.get(name, 0.0) + ph.after.servers.get(name, 0.0) - cpu
    kinds: Counter[str] = Counter()
    for ph in phases:
        kinds.update(ph.gcs.by_kind)

    def total(rows: list[dict[str, Any]], key: str) -> Any:
        return sum(row[key] for row in rows)

    def by_name(rows: list[dict[str, Any]]) -> dict[str, int]:
        out: Counter[str] = Counter()
        for row in rows:
            out.update(row["by_command"])
        return dict(out.most_common())

    return {
        "gcs_class_a": sum(ph.gcs.class_a for ph in phases),
        "gcs_class_b": sum(ph.gcs.class_b for ph in phases),
        "gcs_requests_by_kind": dict(sorted(kinds.items())),
        "objects_stored": len(listed),
        "bytes_stored": sum(o.size for o in listed),
        "redis_commands_sent": total(store, "sent") if new else 0,
        "redis_commands_in_scripts": total(store, "in_scripts") if new else 0,
        "redis_cpu_seconds": total(store, "cpu_seconds") if new else 0.0,
        "broker_commands": total(broker, "total") if new else 0,
        "pusher_cpu_seconds": sum(ph.outcome.cpu_seconds for ph in phases),
        "fleet_cpu_seconds": workers if new else 0.0,
        "delay_seconds": spread(delays),
        "redis_memory_peak_bytes": max(
            max(0, ph.memory_peak - ph.before.store.memory) for ph in phases
        )
        if new
        else 0,
        "store_bytes_per_audio_second": 0.0,  # set by the caller (audio seconds)
        "wall_seconds": sum(ph.wall_seconds for ph in phases),
        # extra, not in the schema
        "per_round": [
            {
                "pusher_cpu_seconds": ph.outcome.cpu_seconds,
                "wall_seconds": ph.wall_seconds,
                "push_wall_seconds": ph.outcome.wall_seconds,
                "fleet_cpu_seconds": ph.after.workers - ph.before.workers,
                "redis_cpu_seconds": ph.after.store.cpu - ph.before.store.cpu,
                "load_average_after": ph.load_average,
            }
            for ph in phases
        ],
        "pusher_process_cpu_seconds": sum(ph.outcome.process_cpu_seconds for ph in phases),
        "pushes": sum(ph.outcome.pushes for ph in phases),
        "failed_uploads": sum(ph.outcome.failed_uploads for ph in phases),
        "redis_commands_by_name": by_name(store),
        "broker_cpu_seconds": total(broker, "cpu_seconds"),
        "broker_commands_by_name": by_name(broker),
        "idle_fleet_cpu_seconds": 0.0 if new else workers,
        "idle_store_commands": 0 if new else total(store, "total"),
        "server_cpu_seconds": dict(servers),
    }


def object_bytes_per_audio_second(
    plan: Plan, listed: Mapping[str, Sequence[Listed]], rounds: int
) -> dict[str, dict[str, float]]:
    """Bytes stored / audio seconds, per path and per rate."""
    out: dict[str, dict[str, float]] = {}
    for path, objects in listed.items():
        by_rate: dict[str, float] = {}
        for rate in sorted({s.rate for s in plan.sessions}):
            uids = {s.uid(path) for s in plan.sessions if s.rate == rate}
            seconds = rounds * sum(s.samples / s.rate for s in plan.sessions if s.rate == rate)
            stored = sum(o.size for o in objects if o.name.split("/")[1] in uids)
            by_rate[str(rate)] = stored / seconds
        out[path] = by_rate
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_average_start": os.getloadavg()[0],
    }


def markdown(result: Mapping[str, Any]) -> str:
    """The Markdown summary of a result."""
    paths = result["paths"]
    base, new = paths["baseline"], paths["audiosync"]
    ratio = result["ratios"]
    s = result["settings"]
    m = result["machine"]
    lines = [
        "# Proof: audiosync against the old 5 s path, same speech, same run",
        "",
        f"`{result['command']}`, started {result['started_at']}; {s['sessions']} sessions x "
        f"{s['audio_seconds_per_session']:g} s ({result['session_hours']:.3f} session-hours), "
        f"rates {', '.join(map(str, s['rates']))} Hz, levels {', '.join(s['levels'])}, "
        f"{'accelerated' if s['accelerated'] else 'real time'}, "
        f"{s['rounds']} round(s) (order: {', '.join(s['phase_order'])}), {s['workers']} worker "
        f"process(es) x concurrency {s['concurrency']}; {m['cpus']} CPUs ({m['cpu_model']}), "
        f"Python {m['python']}, load average {m['load_average_start']:.1f} at the start, "
        f"{m['load_average_end']:.1f} at the end.",
        "",
        f"Audit: **{'passed' if result['audit']['ok'] else 'FAILED'}**.",
        "",
        "| figure | baseline (5 s objects) | audiosync | per session-hour: baseline | "
        "audiosync | audiosync / baseline |",
        "|---|---|---|---|---|---|",
    ]
    for name in RATED_FIGURES:
        per = f"{name}_per_session_hour"
        r = ratio.get(name)
        lines.append(
            f"| {name} | {_num(base[name])} | {_num(new[name])} | {_num(base[per])} | "
            f"{_num(new[per])} | {'' if r is None else f'{r:.4f}'} |"
        )
    for name in ("wall_seconds", "store_bytes_per_audio_second", "redis_memory_peak_bytes"):
        r = ratio.get(name)
        lines.append(
            f"| {name} | {_num(base[name])} | {_num(new[name])} | | | "
            f"{'' if r is None else f'{r:.4f}'} |"
        )
    for q in ("p50", "p90", "p99", "max"):
        r = ratio.get(f"delay_seconds.{q}")
        lines.append(
            f"| delay {q} (s) | {base['delay_seconds'][q]:.3f} | {new['delay_seconds'][q]:.3f} "
            f"| | | {'' if r is None else f'{r:.2f}'} |"
        )
    lines += ["", "GCS requests by kind (the write path; the audit's reads are not counted):", ""]
    for path in PATHS:
        kinds = ", ".join(f"{k} {v:,}" for k, v in paths[path]["gcs_requests_by_kind"].items())
        lines.append(f"- {path}: {kinds or 'none'}")
    lines += ["", "Stored bytes per audio second, by rate:", ""]
    for path, by_rate in result["object_bytes_per_audio_second"].items():
        text = ", ".join(f"{rate} Hz {v:,.1f}" for rate, v in by_rate.items())
        lines.append(f"- {path}: {text}")
    a = result["audit"]
    lines += [
        "",
        "Audit (every chunk found exactly once by identity; every conversation read back):",
        "",
        f"- baseline: {a['baseline']['chunks']:,} chunks, {a['baseline']['lost']} lost, "
        f"{a['baseline']['duplicated']} duplicated; samples {a['baseline']['samples_read']:,} "
        f"of {a['baseline']['samples_expected']:,}, byte-exact: {a['baseline']['exact']}",
        f"- audiosync: {a['audiosync']['chunks']:,} chunks, {a['audiosync']['lost']} lost, "
        f"{a['audiosync']['duplicated']} duplicated; samples {a['audiosync']['samples_read']:,} "
        f"of {a['audiosync']['samples_expected']:,}, lowest correlation "
        f"{a['audiosync']['min_correlation']:.3f} (threshold "
        f"{a['audiosync']['correlation_threshold']})",
    ]
    if a.get("why"):
        lines += ["", "Failed because:", "", *[f"- {w}" for w in a["why"]]]
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def _jsonable(value: Any) -> Any:
    """NaN and infinities as null (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# -- command line ----------------------------------------------------------------------------
def phase_order(rounds: int) -> list[tuple[str, int]]:
    """(path, round) in the order they run: baseline first in even rounds, audiosync first
    in odd ones (B A, A B, B A ...), so slow drifts of the machine's load fall on both."""
    out = []
    for r in range(rounds):
        out += [(path, r) for path in (PATHS if r % 2 == 0 else PATHS[::-1])]
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.proof",
        description="audiosync and the old 5 s path side by side on the same speech.",
    )
    p.add_argument("--sessions", type=int, help="sessions (default 40; --short 4)")
    p.add_argument("--seconds", type=float, help="audio per session (default 300; --short 30)")
    p.add_argument("--workers", type=int, help="celery worker processes (default 2; --short 1)")
    p.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    p.add_argument("--rates", default="8000,16000", help="sample rates, round robin")
    p.add_argument("--levels", default="standard,enhanced", help="protection levels")
    p.add_argument("--real-time", action="store_true", help="pace frames by the wall clock")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run both paths this many times, alternating which goes first; figures summed",
    )
    p.add_argument("--short", action="store_true", help="smoke settings: 4 x 30 s, 1 worker")
    p.add_argument(
        "--sweep", type=float, help="AUDIOSYNC_SWEEP_INTERVAL_SECONDS (default 5; --short 1)"
    )
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument(
        "--min-correlation",
        type=float,
        default=DEFAULT_MIN_CORRELATION,
        help="lowest correlation of a session's Opus read-back with its speech",
    )
    p.add_argument("--workdir", type=Path, help="servers' data, logs (default: a new temp dir)")
    p.add_argument("--json", type=Path, help="the result (default WORKDIR/proof.json)")
    p.add_argument("--markdown", type=Path, help="the summary (default WORKDIR/proof.md)")
    p.add_argument(
        "--drop-object",
        choices=PATHS,
        help="test hook: delete one object of this path before the audit (must fail it)",
    )
    p.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    p.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name, value in SHORT.items():
        if getattr(args, name) is None:
            setattr(args, name, value if args.short else DEFAULTS[name])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.plan, args.child_out)
    command = "python -m bench.proof " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rates = [int(r) for r in args.rates.split(",")]
    levels = args.levels.split(",")
    args.secret = secrets.token_hex(32)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="audiosync-proof-"))
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or workdir / "proof.json"
    md_path = args.markdown or workdir / "proof.md"
    where = machine()
    wall0 = time.monotonic()
    plan = make_plan(args.sessions, args.seconds, rates, levels, real_time=args.real_time)
    plan_file = workdir / "plan.json"
    plan_file.write_text(plan.to_json())
    speech = Speech(Path(plan.speech))
    print(
        f"proof: {args.sessions} sessions x {args.seconds:g} s, {args.workers} worker(s), "
        f"{'real time' if args.real_time else 'accelerated'}; work dir {workdir}",
        file=sys.stderr,
    )
    order = phase_order(args.rounds)
    with Run(args, workdir) as run:
        phases: dict[str, list[Phase]] = {path: [] for path in PATHS}
        plans: dict[tuple[str, int], Plan] = {}
        for path, r in order:  # each phase on a fresh schedule (its timestamps from now)
            plans[(path, r)] = plan = plan.restarted(r)
            plan_file.write_text(plan.to_json())
            phases[path].append(run.phase(path, plan_file))
        print("proof: audit", file=sys.stderr)
        outcomes = {
            (path, r): phases[path][n].outcome
            for path in PATHS
            for n, r in enumerate(r for p, r in order if p == path)
        }
        records, listed, delays = audit(
            run, plans, outcomes, speech, args.min_correlation, args.drop_object
        )
        log_errors = {w.name: _log_errors(w.log) for w in run.workers}
        object_seconds = run.object_seconds
    audio_seconds = plan.audio_seconds * args.rounds
    hours = session_hours(audio_seconds)
    paths = {}
    for path in PATHS:
        fig = figures(phases[path], listed[path], delays[path])
        if path == "audiosync":  # an object is its entries' data back to back (planner.py)
            fig["store_bytes_per_audio_second"] = fig["bytes_stored"] / audio_seconds
        paths[path] = with_rates(fig, hours)
    for path in PATHS:
        for ph in phases[path]:
            records[path]["problems"] += ph.outcome.errors
    why = verdict(records)
    records["ok"] = not why
    records["why"] = why
    where["load_average_end"] = os.getloadavg()[0]
    result = {
        "schema": SCHEMA,
        "started_at": started,
        "command": command,
        "machine": where,
        "settings": {
            "sessions": args.sessions,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "audio_seconds_per_session": args.seconds,
            "accelerated": not args.real_time,
            "object_seconds": object_seconds,
            "chunk_seconds": CHUNK_SECONDS,
            "rates": rates,
            "levels": levels,
            "frame_seconds": FRAME_SECONDS,
            "sweep_interval_seconds": args.sweep,
            "rounds": args.rounds,
            "phase_order": [f"{path} {r}" for path, r in order],
            "gcs_counted_from": "fake-gcs-server's request log (every request it answered)",
            "baseline_upload_threads": BASELINE_UPLOAD_THREADS,
        },
        "session_hours": hours,
        "audio_seconds": audio_seconds,
        "paths": paths,
        "ratios": ratios(paths["baseline"], paths["audiosync"]),
        "object_bytes_per_audio_second": object_bytes_per_audio_second(plan, listed, args.rounds),
        "audit": records,
        "worker_log_errors": log_errors,
        "wall_seconds": time.monotonic() - wall0,
    }
    result = _jsonable(result)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(result))
    print(markdown(result), file=sys.stderr)
    print(f"proof: wrote {json_path} and {md_path}", file=sys.stderr)
    if why:
        print("proof: AUDIT FAILED: " + "; ".join(why), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
