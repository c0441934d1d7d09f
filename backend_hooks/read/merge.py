"""Pure: place decoded segments on one timeline and produce PCM16LE.

Segments are ordered by start time (for sealed v1 records, the authenticated one); a
chunk stored twice (same session and sequence number) is kept once; a positive gap is
filled with ``round(gap * rate)`` zero samples when ``fill_gaps`` is on; an overlap is
trimmed from the later segment, but a segment starting within half a sample of where
the audio before it ends follows it without a gap or a trim (continuous audio, its start
rounded against another origin); a segment of no samples is skipped (it has a start but
no audio, so it neither starts the timeline nor stretches it with zeros). The output
always holds whole samples.

``TimelineMerger`` applies these rules incrementally, so a reader never holds a whole
conversation: segments are added object by object (objects in name order), and once the
caller knows that nothing still to come starts before some instant (the next object's
name start: every segment of an object starts at or after it), ``advance`` emits every
block before that instant. ``merge_segments`` is the same merger fed everything at once.

A gap fill longer than ``max_gap_seconds`` raises ``GapTooLongError`` instead of
allocating it (a stray chunk at timestamp 0 would otherwise be decades of zeros); the
gap is refused, not capped, because a capped gap would silently place everything after
it at the wrong time.

Missing chunks are reported, not only filled: within each session the sequence numbers
read must be consecutive, so a hole between two of them (a dropped record, a dropped
object between two others, a quarantined chunk) is a ``MissingChunks`` in
``MergedAudio.missing``. The caller may add suspects found at an object's edges (its name
says it spans more than its records cover: a dropped first or last record); a suspect is
kept only when no chunk read, and no hole already reported, accounts for it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from backend_hooks.contract.container import Segment
from backend_hooks.contract.errors import GapTooLongError, UnsupportedFormatError

#: Zero samples of one gap block: a filled gap is emitted in blocks of at most this many
#: bytes (1 s at 16 kHz), never as one allocation of the whole gap.
ZERO_BLOCK_BYTES = 32000
_ZEROS = bytes(ZERO_BLOCK_BYTES)


@dataclass(frozen=True)
class MissingChunks:
    """Chunks ``first_seq``..``last_seq`` of ``session_id`` are not in what was read."""

    session_id: str
    first_seq: int | None  # None: not known (the hole ends the session's chunks read)
    last_seq: int | None  # None: not known (the hole starts the session's chunks read)
    start_us: int  # the hole on the timeline: from here (the end of the audio before it)
    end_us: int  # to here (the start of the audio after it, or an object name's edge)
    found_by: str  # "sequence" (a hole between two chunks read) or the object's name

    def describe(self) -> str:
        first = "?" if self.first_seq is None else str(self.first_seq)
        last = "?" if self.last_seq is None else str(self.last_seq)
        return (
            f"session {self.session_id} chunks {first}..{last} "
            f"({(self.end_us - self.start_us) / 1e6:.3f} s from {self.start_us} us; "
            f"found by {self.found_by})"
        )


@dataclass(frozen=True)
class SkippedObject:
    """An object whose audio is not in the merge: it failed to download, open, parse or
    decode. ``used_instead`` names the objects of the same start that were read in its
    place (a fallback); empty when nothing replaced it (``skip_broken``: a gap)."""

    path: str
    reason: str
    used_instead: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergedAudio:
    #: PCM16LE mono; the read engine (reader.py) fills one ``bytes`` in place (pcm_buffer.py)
    pcm: bytes
    sample_rate: int
    start_us: int | None  # time of the first sample; None when there is no audio
    #: chunks that should be there and are not (filled with zeros like any gap when
    #: ``fill_gaps``); empty when every session's chunks read are consecutive
    missing: tuple[MissingChunks, ...] = ()
    #: objects left out (with ``skip_broken``) or replaced by another of the same start
    skipped: tuple[SkippedObject, ...] = ()

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        return self.sample_count / self.sample_rate


def _end_us(segment: Segment) -> int:
    return segment.start_us + segment.sample_count * 1_000_000 // segment.sample_rate


@dataclass(frozen=True)
class _Span:
    """What ``find_missing`` needs of a keyed segment (not its PCM)."""

    key: tuple[str, int]
    start_us: int
    end_us: int


def _spans(segments: Iterable[Segment]) -> Iterator[_Span]:
    for segment in segments:
        if segment.key is not None:
            yield _Span(segment.key, segment.start_us, _end_us(segment))


def find_missing(
    segments: Iterable[Segment], suspects: Iterable[MissingChunks] = ()
) -> tuple[MissingChunks, ...]:
    """Holes in each session's sequence numbers among ``segments`` (deduplicated by key),
    then the ``suspects`` (one bound unknown) that lie outside the session's chunks read."""
    return _find_missing(_spans(segments), suspects)


def _find_missing(
    spans: Iterable[_Span], suspects: Iterable[MissingChunks]
) -> tuple[MissingChunks, ...]:
    by_session: dict[str, dict[int, _Span]] = {}
    for span in spans:
        by_session.setdefault(span.key[0], {}).setdefault(span.key[1], span)
    out = []
    for session_id in sorted(by_session):
        chunks = by_session[session_id]
        seqs = sorted(chunks)
        for before, after in itertools.pairwise(seqs):
            if after > before + 1:
                out.append(
                    MissingChunks(
                        session_id,
                        before + 1,
                        after - 1,
                        chunks[before].end_us,
                        chunks[after].start_us,
                        "sequence",
                    )
                )
    for suspect in suspects:
        seqs_read = by_session.get(suspect.session_id)
        if not seqs_read:
            continue
        if suspect.first_seq is not None and suspect.first_seq > max(seqs_read):
            out.append(suspect)  # after the last chunk read: a dropped tail
        elif suspect.last_seq is not None and 0 <= suspect.last_seq < min(seqs_read):
            out.append(suspect)  # before the first chunk read: a dropped head
    return tuple(out)


class TimelineMerger:
    """The merge rules, applied as segments arrive (the module docstring).

    ``add`` takes segments in any order; ``advance(before_us)`` emits the PCM of every
    segment added so far that starts before ``before_us``, in timeline order, as blocks
    (``bytes``); ``finish`` emits the rest. The caller promises that no segment added
    later starts before a ``before_us`` it passed; a segment that does anyway (an object
    whose audio starts before its name says) is placed by the same rule as an overlap:
    whatever of it the timeline has passed is dropped. Memory: the segments not emitted
    yet, and one ``_Span`` per keyed segment (for ``missing``).

    ``sample_rate`` is the output's; ``None`` takes the first added segment's. A segment
    at another rate is ``UnsupportedFormatError`` (the reader resamples before adding).
    """

    def __init__(
        self,
        sample_rate: int | None = None,
        *,
        fill_gaps: bool = True,
        max_gap_seconds: float | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.fill_gaps = fill_gaps
        self.max_gap_seconds = max_gap_seconds
        #: time of the first sample emitted (None until then)
        self.start_us: int | None = None
        #: samples emitted so far (gap zeros included)
        self.samples_out = 0
        self._pending: list[tuple[int, tuple[str, int], int, Segment, str]] = []
        self._seen: set[tuple[str, int]] = set()
        self._spans: list[_Span] = []
        self._index = 0
        self._skipped = 0  # samples of gaps left unfilled: the timeline is ahead by this
        self._cursor_source = ""  # the object whose audio ends where the timeline is
        self._cursor_us = 0
        self._placed = False  # some audio emitted: _cursor_us is where it ends

    def add(self, segments: Iterable[Segment], source: str = "") -> None:
        """Take ``segments`` (of the object ``source``, named in errors); a chunk whose
        key was added before is dropped (the first one seen is kept)."""
        for segment in segments:
            if self.sample_rate is None:
                self.sample_rate = segment.sample_rate
            if segment.sample_rate != self.sample_rate:
                raise UnsupportedFormatError(
                    f"{source or 'a segment'} holds audio at {segment.sample_rate} Hz, the "
                    f"merge is at {self.sample_rate} Hz: resample it first (the read "
                    "engine does, reader._at_output_rate)"
                )
            if segment.key is not None:
                if segment.key in self._seen:
                    continue
                self._seen.add(segment.key)
                self._spans.append(_Span(segment.key, segment.start_us, _end_us(segment)))
            order = segment.key or ("", 0)
            heapq.heappush(self._pending, (segment.start_us, order, self._index, segment, source))
            self._index += 1

    def advance(self, before_us: int) -> Iterator[bytes]:
        """Emit every added segment that starts before ``before_us``."""
        while self._pending and self._pending[0][0] < before_us:
            _, _, _, segment, source = heapq.heappop(self._pending)
            yield from self._place(segment, source)

    def finish(self) -> Iterator[bytes]:
        """Emit every segment still held."""
        while self._pending:
            _, _, _, segment, source = heapq.heappop(self._pending)
            yield from self._place(segment, source)

    def missing(self, suspects: Iterable[MissingChunks] = ()) -> tuple[MissingChunks, ...]:
        """``find_missing`` over every segment added (complete once all are added)."""
        return _find_missing(self._spans, suspects)

    def _place(self, segment: Segment, source: str) -> Iterator[bytes]:
        rate = segment.sample_rate
        pcm = segment.pcm
        if len(pcm) % 2:
            pcm = pcm[:-1]
        if not pcm:
            # No audio, only a start: it must not start the timeline (``start_us`` is the
            # first sample's time) nor stretch it with zeros up to a start of nothing.
            return
        if self.start_us is None:
            self.start_us = segment.start_us
        position = round((segment.start_us - self.start_us) * rate / 1_000_000)
        cursor = self.samples_out + self._skipped
        if self._placed and 2 * abs(segment.start_us - self._cursor_us) * rate < 1_000_000:
            # It starts within half a sample of where the audio before it ends: continuous
            # audio (a session's next chunk, stamped to the microsecond). Rounding against
            # an origin off its sample grid would trim a real sample or insert a zero.
            position = cursor
        if position > cursor:
            gap = position - cursor
            if self.fill_gaps:
                self._check_gap(gap, rate, segment, source)
                yield from _zero_blocks(2 * gap)
                self.samples_out += gap
            else:
                self._skipped += gap
        elif position < cursor:
            pcm = pcm[2 * (cursor - position) :]
        if pcm:
            self.samples_out += len(pcm) // 2
            self._cursor_source = source
            self._cursor_us = _end_us(segment)
            self._placed = True
            yield pcm

    def _check_gap(self, gap: int, rate: int, segment: Segment, source: str) -> None:
        if self.max_gap_seconds is None or gap <= self.max_gap_seconds * rate:
            return
        raise GapTooLongError(
            f"a gap of {gap / rate:.3f} s between {self._cursor_source or 'the audio before'} "
            f"(its audio ends at {self._cursor_us} us) and {source or 'the next audio'} (starts "
            f"at {segment.start_us} us) is longer than AUDIOSYNC_MAX_GAP_FILL_SECONDS="
            f"{self.max_gap_seconds:g} s and is not filled: read with fill_gaps=False, or "
            "leave the stray object out with timestamps= (list_audio_chunks lists them)",
            before=self._cursor_source,
            after=source,
            gap_seconds=gap / rate,
        )


def _zero_blocks(length: int) -> Iterator[bytes]:
    while length > ZERO_BLOCK_BYTES:
        yield _ZEROS
        length -= ZERO_BLOCK_BYTES
    if length:
        yield _ZEROS[:length]


def merge_segments(
    segments: Iterable[Segment],
    *,
    fill_gaps: bool = True,
    default_rate: int = 16000,
    suspects: Iterable[MissingChunks] = (),
    max_gap_seconds: float | None = None,
) -> MergedAudio:
    """Every segment at once: ``TimelineMerger`` fed all of them, its blocks joined."""
    given: Sequence[Segment] = list(segments)
    rates = {s.sample_rate for s in given}
    if len(rates) > 1:
        raise UnsupportedFormatError(
            f"this conversation was recorded at several sample rates {sorted(rates)}; "
            "resample them to one first (the read engine does, reader._at_output_rate)"
        )
    merger = TimelineMerger(fill_gaps=fill_gaps, max_gap_seconds=max_gap_seconds)
    merger.add(given)
    pcm = b"".join(merger.finish())
    return MergedAudio(
        pcm=pcm,
        sample_rate=merger.sample_rate or default_rate,
        start_us=merger.start_us,
        missing=merger.missing(suspects) if given else (),
    )


@dataclass(frozen=True)
class ObjectSpan:
    """Where an object's audio lies by its listing alone (before reading it): from
    ``start_us`` to about ``end_us``, and certainly not beyond ``max_end_us``."""

    path: str
    start_us: int
    end_us: int
    max_end_us: int


def check_gap_bound(spans: Sequence[ObjectSpan], max_gap_seconds: float) -> None:
    """``GapTooLongError`` when, by the listing alone, two objects are certainly further
    apart than ``max_gap_seconds`` (the time from the latest ``max_end_us`` so far to the
    next start), so a merge that fills gaps refuses before it downloads anything."""
    ordered = sorted(spans, key=lambda s: (s.start_us, s.path))
    if not ordered:
        return
    reach = ordered[0]
    for span in ordered[1:]:
        gap_us = span.start_us - reach.max_end_us
        if gap_us > max_gap_seconds * 1_000_000:
            raise GapTooLongError(
                f"a gap of at least {gap_us / 1e6:.3f} s between {reach.path} (its audio ends "
                f"by {reach.max_end_us} us) and {span.path} (starts at {span.start_us} us) is "
                f"longer than AUDIOSYNC_MAX_GAP_FILL_SECONDS={max_gap_seconds:g} s and is not "
                "filled: read with fill_gaps=False, or leave the stray object out with "
                "timestamps= (list_audio_chunks lists them)",
                before=reach.path,
                after=span.path,
                gap_seconds=gap_us / 1e6,
            )
        if span.max_end_us > reach.max_end_us:
            reach = span


def estimated_pcm_bytes(spans: Sequence[ObjectSpan], sample_rate: int, fill_gaps: bool) -> int:
    """About how many bytes of PCM a merge of ``spans`` yields (so the in-memory reader
    sizes its buffer once): from the first start to the last end when gaps are filled,
    the union of the spans otherwise; plus 10 ms, as names are truncated to the ms. Each
    span ends by its ``max_end_us`` at the latest: a name's end is only a name, and one
    stray end (days out) must not size the buffer, the size of the object bounds it."""
    if not spans:
        return 0
    ordered = sorted(spans, key=lambda s: s.start_us)
    ends = [min(s.end_us, s.max_end_us) for s in ordered]
    if fill_gaps:
        covered = max(ends) - ordered[0].start_us
    else:
        covered, reach = 0, ordered[0].start_us
        for span, end in zip(ordered, ends, strict=True):
            start = max(span.start_us, reach)
            if end > start:
                covered += end - start
                reach = end
    return 2 * (round(max(covered, 0) * sample_rate / 1_000_000) + sample_rate // 100)
