"""Pure backfill policy: which legacy objects are compacted, into which new objects, and
when a legacy object may be deleted (docs/ARCHITECTURE.md, "Backfill").

No I/O and no clock: the listing, the bytes read and ``now`` are passed in; the I/O is in
workers/backfill.py.

- **Sources** are a conversation's legacy chunk objects (``.bin``, ``.enc``,
  ``.batch.bin``, ``.batch.enc``, single-chunk ``.opus``, ``.opus.enc``) whose newest
  chunk start (the last timestamp of the name) is at least ``min_age`` old, so a live
  legacy uploader is never raced.
- **Chunks.** Each legacy chunk becomes one chunk of a new object with its own start and
  exact sample count: a ``.batch.enc`` record is one chunk, placed back to back from the
  name's start as the reader places it; a raw chunk longer than ``piece_seconds`` (a
  ``.batch.bin``, whose chunk boundaries are not recorded) is cut into pieces of
  ``piece_seconds`` at exact offsets; a legacy Opus chunk keeps its packets.
- **Groups.** Sources of one protection level (sealed source -> ``enhanced``, plain ->
  ``standard``) and one rate, in time order, go into one object while it holds at most
  ``object_seconds`` of audio, about ``max_bytes`` bytes (estimated before encoding),
  ``MAX_SOURCES`` sources, and no gap longer than ``MAX_GAP_SECONDS``. A source is never
  split between objects, so deleting it needs one verified object.
- **Identity.** A group's session id is ``bf-`` and 32 hex digits of SHA-256 over its
  sources' paths (so the user and conversation too), sizes and content digests; its
  chunks are seq 0..n-1. A rerun derives the same id for the same sources, and the
  reader plays two objects with the same session and seq once. The object names its sources in the
  ``audiosync-backfill-sources`` metadata, which is how a rerun finds it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backend_hooks.contract import legacy_pcm, naming
from backend_hooks.contract.container import LEGACY_RATE, ChunkInfo, Segment
from backend_hooks.contract.errors import FormatError, InvalidInputError, SampleRateUnknownError

SESSION_PREFIX = "bf-"
SESSION_HEX = 32
#: Metadata of a backfilled object naming its sources: ``filename:size`` pairs joined by
#: ``,`` (legacy file names hold neither character).
SOURCES_KEY = "audiosync-backfill-sources"
#: At most this many sources per object, so its metadata stays well under GCS's 8 KiB of
#: custom metadata (a legacy file name and size are at most ~50 bytes).
MAX_SOURCES = 100
#: A group does not span a silence longer than this: an object's listing timestamp is its
#: start, and the backend groups audio files by the spacing of those (30 s, later 90 s).
MAX_GAP_SECONDS = 30.0
#: Sources younger than this (their newest chunk start vs now) are left alone by default.
DEFAULT_MIN_AGE_SECONDS = 3600.0


def checked_min_age(value: object) -> float:
    """Pure: ``value`` as the minimum age of a source in seconds, or ``InvalidInputError``.
    A number >= 0 (infinity: nothing is old enough); NaN would make every age comparison
    false, so every object a source, a live legacy uploader's newest one included."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(
            f"min_age_seconds must be a number of seconds, got {type(value).__name__} {value!r}"
        )
    if math.isnan(value) or value < 0:
        raise InvalidInputError(f"min_age_seconds must be >= 0 seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Options:
    object_seconds: float
    max_bytes: int
    piece_seconds: float  # raw chunks longer than this are cut into pieces this long
    min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS
    bitrates: Mapping[int, int] = field(default_factory=dict)  # for the size estimate


@dataclass(frozen=True)
class SourceChunk:
    """One chunk of a legacy object, as the new object will hold it."""

    start_us: int
    sample_rate: int
    samples: int
    pcm: bytes | None = None  # raw sources: exactly ``samples`` PCM16LE samples
    packets: tuple[bytes, ...] | None = None  # legacy Opus: its packets, repackaged


@dataclass(frozen=True)
class Source:
    """A legacy object read: its name, size, content digest and chunks."""

    name: naming.ObjectName
    size: int
    digest: str  # SHA-256 hex of its bytes
    chunks: tuple[SourceChunk, ...]

    @property
    def sealed(self) -> bool:
        return self.name.sealed

    @property
    def rate(self) -> int:
        return self.chunks[0].sample_rate

    @property
    def samples(self) -> int:
        return sum(c.samples for c in self.chunks)

    @property
    def start_us(self) -> int:
        return min(c.start_us for c in self.chunks)

    @property
    def end_us(self) -> int:
        return max(chunk_end_us(c) for c in self.chunks)

    def estimated_bytes(self, bitrates: Mapping[int, int]) -> int:
        """Bytes its chunks will take in the new object (packets kept; raw PCM at the
        encoder's bitrate, or 32 kbit/s when not given), for the object's byte bound."""
        total = 0
        for c in self.chunks:
            if c.packets is not None:
                total += sum(len(p) for p in c.packets)
            else:
                total += c.samples * bitrates.get(c.sample_rate, 32000) // (8 * c.sample_rate)
        return total


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def chunk_end_us(c: SourceChunk) -> int:
    """Where a source chunk's audio ends (its start plus its samples), microseconds."""
    return c.start_us + c.samples * 1_000_000 // c.sample_rate


# --- which objects are sources ------------------------------------------------------------


def newest_start_us(name: naming.ObjectName) -> int:
    """The start of the newest chunk a legacy name tells: ``last`` of ``first-last``."""
    return name.end_us if name.end_us is not None else name.start_us


def select_sources(
    names: Iterable[naming.ObjectName], *, now_us: int, min_age_seconds: float
) -> tuple[list[naming.ObjectName], list[Skipped]]:
    """Legacy objects old enough to backfill, oldest first, and the young ones skipped."""
    chosen, skipped = [], []
    for name in sorted(names, key=lambda n: (n.start_us, n.filename)):
        if name.is_new:
            continue
        age = (now_us - newest_start_us(name)) / 1_000_000
        if age < 0:
            skipped.append(
                Skipped(
                    name.path,
                    f"named {-age:.0f} s in the future (a wrong clock or a stray name): "
                    "left as it is; look at it",
                )
            )
        elif age < min_age_seconds:
            skipped.append(
                Skipped(
                    name.path,
                    f"younger than --min-age ({age:.0f} s < {min_age_seconds:.0f} s): a legacy "
                    "uploader may still be writing this conversation",
                )
            )
        else:
            chosen.append(name)
    return chosen, skipped


# --- chunks of a source -------------------------------------------------------------------


def _pieces(start_us: int, pcm: bytes, rate: int, piece_samples: int) -> list[SourceChunk]:
    out = []
    samples = len(pcm) // 2
    for first in range(0, samples, piece_samples):
        n = min(piece_samples, samples - first)
        out.append(
            SourceChunk(
                start_us=start_us + first * 1_000_000 // rate,
                sample_rate=rate,
                samples=n,
                pcm=pcm[2 * first : 2 * (first + n)],
            )
        )
    return out


def raw_chunks(
    name: naming.ObjectName, plaintexts: Sequence[bytes], rate: int, piece_seconds: float
) -> list[SourceChunk]:
    """The chunks of a raw legacy object, placed as the reader places them: back to back
    from the name's start (a batch's last record after a pause at its name's last start,
    legacy_pcm.placed_runs), odd bytes dropped by the reader's rule (legacy_pcm.raw_pcm).
    Each ``.batch.enc`` record is one chunk; others are one chunk. Chunks longer than
    ``piece_seconds`` are cut into pieces of exactly ``piece_seconds``."""
    piece_samples = max(1, round(piece_seconds * rate))
    if name.extension == ".batch.enc":
        runs = [p[: len(p) - len(p) % 2] for p in plaintexts]
    else:
        runs = [legacy_pcm.raw_pcm(name, plaintexts)]
    placed = legacy_pcm.placed_runs(name, plaintexts, rate)
    # The last record of a first-last.batch.enc after a pause starts at last (the reader's
    # rule, legacy_pcm.placed_runs); every other chunk follows the one before it.
    last_start = placed[-1][0] if name.extension == ".batch.enc" and len(placed) > 1 else None
    out: list[SourceChunk] = []
    offset = 0  # samples from the name's start
    for index, run in enumerate(runs):
        if run:
            start = name.start_us + offset * 1_000_000 // rate
            if last_start is not None and index == len(runs) - 1:
                start = last_start
            if len(run) // 2 > piece_samples:
                out += _pieces(start, run, rate, piece_samples)
            else:
                out.append(SourceChunk(start, rate, len(run) // 2, pcm=run))
        offset += len(run) // 2
    # Pieces after the first of a run are placed from the run's start, which may be a
    # fraction of a microsecond off the sample clock: always less than half a sample, so
    # the reader (which rounds to samples) places them on the same sample.
    return out


def legacy_opus_chunk(
    name: naming.ObjectName, packets: Sequence[bytes], pcm_length: int
) -> list[SourceChunk]:
    """A legacy single-chunk Opus object: 16 kHz, no pre-skip, ``pcm_length // 2`` samples
    (an odd length loses its half sample, as the reader decodes it)."""
    samples = pcm_length // 2
    if samples == 0:
        return []
    return [SourceChunk(name.start_us, LEGACY_RATE, samples, packets=tuple(packets))]


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- groups -------------------------------------------------------------------------------


@dataclass
class Group:
    """The sources of one new object, in time order."""

    sources: list[Source] = field(default_factory=list)

    @property
    def sealed(self) -> bool:
        return self.sources[0].sealed

    @property
    def rate(self) -> int:
        return self.sources[0].rate

    def placed(self) -> list[tuple[Source, SourceChunk]]:
        """Every chunk with its source, in time order (a stable sort: ties keep the
        reader's source order); seq is the position here."""
        pairs = [(s, c) for s in self.sources for c in s.chunks]
        return sorted(pairs, key=lambda pair: pair[1].start_us)

    @property
    def chunks(self) -> list[SourceChunk]:
        return [c for _, c in self.placed()]

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.sources)

    @property
    def session_id(self) -> str:
        return session_id_of(self.sources)

    def infos(self) -> list[ChunkInfo]:
        session = self.session_id
        return [
            ChunkInfo(session, seq, c.start_us, c.sample_rate, c.samples)
            for seq, c in enumerate(self.chunks)
        ]

    def claims(self) -> dict[str, int]:
        return {s.name.filename: s.size for s in self.sources}

    def metadata(self) -> dict[str, str]:
        """What the fleet's objects carry (workers/planner.py), and the sources."""
        infos = self.infos()
        return {
            "audiosync-format": "1",
            "audiosync-rate": str(self.rate),
            "audiosync-samples": str(self.samples),
            "audiosync-chunks": str(len(infos)),
            "audiosync-session": self.session_id,
            "audiosync-seq": f"0-{len(infos) - 1}",
            SOURCES_KEY: format_claims(self.claims()),
        }


def session_id_of(sources: Iterable[Source]) -> str:
    h = hashlib.sha256(b"audiosync backfill v1")
    for s in sources:
        h.update(f"\0{s.name.path}\0{s.size}\0{s.digest}".encode())
    return SESSION_PREFIX + h.hexdigest()[:SESSION_HEX]


def format_claims(claims: Mapping[str, int]) -> str:
    return ",".join(f"{filename}:{size}" for filename, size in claims.items())


def parse_claims(text: str) -> dict[str, int]:
    """The sources an object's ``audiosync-backfill-sources`` names; ``FormatError``."""
    out: dict[str, int] = {}
    for item in text.split(","):
        filename, colon, size = item.rpartition(":")
        if not colon or not filename or not size.isdigit():
            raise FormatError(f"{SOURCES_KEY} item {item[:80]!r} is not filename:size")
        out[filename] = int(size)
    return out


class Grouper:
    """Groups sources as they are read, in time order: one open group per (level, rate);
    ``add`` returns the groups it closed, ``finish`` the rest. Memory: the open groups."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._open: dict[tuple[bool, int], Group] = {}

    def _fits(self, group: Group, source: Source) -> bool:
        o = self.options
        last_end = max(s.end_us for s in group.sources)
        return (
            (group.samples + source.samples) <= o.object_seconds * source.rate
            and sum(s.estimated_bytes(o.bitrates) for s in [*group.sources, source]) <= o.max_bytes
            and len(group.sources) < MAX_SOURCES
            and source.start_us - last_end <= MAX_GAP_SECONDS * 1_000_000
        )

    def add(self, source: Source) -> list[Group]:
        if not source.chunks:
            raise ValueError("a source without audio is skipped, never grouped")
        key = (source.sealed, source.rate)
        closed = []
        group = self._open.get(key)
        if group is not None and not self._fits(group, source):
            closed.append(self._open.pop(key))
            group = None
        if group is None:
            group = self._open[key] = Group()
        group.sources.append(source)
        return closed

    def finish(self) -> list[Group]:
        groups = sorted(self._open.values(), key=lambda g: g.sources[0].start_us)
        self._open.clear()
        return groups


def plan_groups(sources: Iterable[Source], options: Options) -> list[Group]:
    """Every group of ``sources`` (in time order), as the I/O builds them one by one."""
    grouper = Grouper(options)
    out = []
    for source in sources:
        out += grouper.add(source)
    return out + grouper.finish()


# --- earlier runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Earlier:
    """A backfilled object found in the listing, with the sources it claims that are
    still there (same file name and size)."""

    name: naming.ObjectName
    session_id: str
    claims: dict[str, int]
    present: tuple[str, ...]  # paths of claimed sources still in the bucket
    duplicate_of: str | None = None  # path of the object kept for the same session


def earlier_objects(
    objects: Sequence[tuple[naming.ObjectName, int, Mapping[str, str]]],
) -> tuple[list[Earlier], list[Skipped]]:
    """The backfilled objects among a conversation's ``(name, size, metadata)``, which of
    their sources remain, and which are copies of another of the same session (two runs
    at once sealed the same group twice; the reader plays them once)."""
    legacy = {n.filename: (n, size) for n, size, _ in objects if not n.is_new}
    found: list[Earlier] = []
    bad: list[Skipped] = []
    kept_for: dict[str, str] = {}
    for name, _, metadata in sorted(objects, key=lambda o: o[0].path):
        if not name.is_new or SOURCES_KEY not in metadata:
            continue
        try:
            claims = parse_claims(metadata[SOURCES_KEY])
        except FormatError as exc:
            bad.append(Skipped(name.path, f"unreadable backfill metadata, left alone: {exc}"))
            continue
        session = metadata.get("audiosync-session", "")
        present = tuple(
            legacy[f][0].path for f, size in claims.items() if f in legacy and legacy[f][1] == size
        )
        duplicate_of = kept_for.setdefault(session, name.path)
        found.append(
            Earlier(
                name, session, claims, present, None if duplicate_of == name.path else duplicate_of
            )
        )
    return found, bad


def level_problems(earlier: Earlier, by_path: Mapping[str, naming.ObjectName]) -> list[str]:
    """Pure: what is wrong with the protection levels of an earlier object and the
    sources it claims (``by_path``: the listing's names). A sealed legacy source is only
    ever held by an enhanced (``.opus.enc``) object: a standard one claiming it (a foreign
    or hand-made object; this backfill groups by level) must never get it deleted, or
    its audio would be left unsealed. Empty when the levels are right."""
    if earlier.name.sealed:
        return []
    sealed = sorted(by_path[p].filename for p in earlier.present if by_path[p].sealed)
    if not sealed:
        return []
    return [
        f"{earlier.name.path}: a standard (unsealed) object claims sealed source(s) "
        f"{', '.join(sealed[:5])}; only an enhanced .opus.enc object may hold a sealed "
        "source's audio"
    ]


def identity_problems(earlier: Earlier, sources: Sequence[Source]) -> list[str]:
    """Pure: whether ``sources`` (the claimed ones still present, read now) are the bytes
    the earlier object was made from. Its session id is ``session_id_of`` its sources
    (paths, sizes, content digests, in its claims' order): when every claimed source is
    here, another id means one was rewritten since (same name and size, other bytes),
    and the object's audio is not its audio. With some already deleted (a run killed
    half-way through its deletions) the id cannot be recomputed: only the layout is
    checked then (``verify_holds``). Empty when they are, or cannot be told."""
    order = list(earlier.claims)
    if sorted(s.name.filename for s in sources) != sorted(order):
        return []
    ordered = sorted(sources, key=lambda s: order.index(s.name.filename))
    if session_id_of(ordered) == earlier.session_id:
        return []
    return [
        f"{earlier.name.path}: its sources' bytes are not the ones it was made from (its "
        f"session {earlier.session_id} is not {session_id_of(ordered)}): one was rewritten "
        "since, so this object does not hold its audio"
    ]


def claimed_paths(earlier: Iterable[Earlier]) -> set[str]:
    return {p for e in earlier for p in e.present}


# --- verification -------------------------------------------------------------------------


def verify_segments(
    expected: Sequence[ChunkInfo],
    segments: Sequence[Segment],
    *,
    where: str,
    exact_pcm: Mapping[int, bytes] | None = None,
) -> list[str]:
    """What is wrong with a new object's decoded ``segments`` against the chunks it
    should hold (``expected``, in order): same count, session, seq, start and exact
    sample count, and for seq in ``exact_pcm`` (repackaged legacy Opus) the same PCM as
    the legacy decode. Empty when it holds them."""
    problems = []
    if len(segments) != len(expected):
        return [f"{where}: decodes to {len(segments)} chunks, {len(expected)} expected"]
    for seg, info in zip(segments, expected, strict=True):
        got = (seg.key, seg.start_us, seg.sample_rate, seg.sample_count)
        want = ((info.session_id, info.seq), info.start_us, info.sample_rate, info.sample_count)
        if got != want:
            problems.append(
                f"{where}: chunk {info.seq} decodes as (key, start_us, rate, samples) {got}, "
                f"its source says {want}"
            )
        elif exact_pcm is not None and info.seq in exact_pcm and exact_pcm[info.seq] != seg.pcm:
            problems.append(
                f"{where}: chunk {info.seq} (repackaged legacy Opus) decodes to other PCM "
                "than its source"
            )
    return problems


def verify_holds(
    segments: Sequence[Segment],
    session_id: str,
    sources: Sequence[Source],
    *,
    where: str,
    legacy_decoded: Mapping[tuple[str, int], bytes] | None = None,
) -> list[str]:
    """Whether an earlier run's object (``segments`` decoded) holds every chunk of
    ``sources`` (its claimed sources still present): all of its chunks of
    ``session_id``, and for each source chunk one with the same start, rate and exact
    sample count; for legacy Opus chunks in ``legacy_decoded`` (keyed by source path and
    start) also the same PCM. Empty when it does: only then may those sources go."""
    if any(s.key is None or s.key[0] != session_id for s in segments):
        return [f"{where}: holds chunks of another session than {session_id}"]
    held = {(s.start_us, s.sample_rate, s.sample_count): s for s in segments}
    problems = []
    for source in sources:
        for c in source.chunks:
            seg = held.get((c.start_us, c.sample_rate, c.samples))
            if seg is None:
                problems.append(
                    f"{where}: holds no chunk of {c.samples} samples at {c.start_us} us "
                    f"from {source.name.filename}"
                )
                continue
            want = (legacy_decoded or {}).get((source.name.path, c.start_us))
            if want is not None and want != seg.pcm:
                problems.append(
                    f"{where}: its chunk at {c.start_us} us decodes to other PCM than "
                    f"{source.name.filename} (repackaged legacy Opus must be identical)"
                )
    return problems


# --- deleting raw sources keeps the rate evidence ------------------------------------------


def rate_still_told(
    raw_objects: Sequence[legacy_pcm.RawObject], deleting: set[str], rate: int
) -> bool:
    """Whether deleting ``deleting`` (paths) leaves the conversation's other raw objects
    readable without ``sample_rate``: none left, or they still tell ``rate`` (the reader
    infers one rate from all of them; a lone object tells none). If they did not tell it
    before either, deleting changes nothing."""
    remaining = [r for r in raw_objects if r.name.path not in deleting]
    if not remaining:
        return True
    try:
        legacy_pcm.infer_sample_rate(raw_objects, conversation="")
    except SampleRateUnknownError:
        return True  # the caller had to give the rate before; still so
    try:
        return legacy_pcm.infer_sample_rate(remaining, conversation="") == rate
    except SampleRateUnknownError:
        return False
