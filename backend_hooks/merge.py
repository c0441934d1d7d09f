"""Pure: place decoded segments on one timeline and produce PCM16LE.

Segments are ordered by start time (for sealed v1 records, the authenticated one); a
chunk stored twice (same session and sequence number) is kept once; a positive gap is
filled with ``round(gap * rate)`` zero samples when ``fill_gaps`` is on; an overlap is
trimmed from the later segment. The output always holds whole samples.

Missing chunks are reported, not only filled: within each session the sequence numbers
read must be consecutive, so a hole between two of them (a dropped record, a dropped
object between two others, a quarantined chunk) is a ``MissingChunks`` in
``MergedAudio.missing``. The caller may add suspects found at an object's edges (its name
says it spans more than its records cover: a dropped first or last record); a suspect is
kept only when no chunk read, and no hole already reported, accounts for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from backend_hooks.container import Segment
from backend_hooks.errors import UnsupportedFormatError


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
class MergedAudio:
    pcm: bytes
    sample_rate: int
    start_us: int | None  # time of the first sample; None when there is no audio
    #: chunks that should be there and are not (filled with zeros like any gap when
    #: ``fill_gaps``); empty when every session's chunks read are consecutive
    missing: tuple[MissingChunks, ...] = ()

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        return self.sample_count / self.sample_rate


def _end_us(segment: Segment) -> int:
    return segment.start_us + segment.sample_count * 1_000_000 // segment.sample_rate


def find_missing(
    segments: Iterable[Segment], suspects: Iterable[MissingChunks] = ()
) -> tuple[MissingChunks, ...]:
    """Holes in each session's sequence numbers among ``segments`` (deduplicated by key),
    then the ``suspects`` (one bound unknown) that lie outside the session's chunks read."""
    by_session: dict[str, dict[int, Segment]] = {}
    for segment in segments:
        if segment.key is not None:
            by_session.setdefault(segment.key[0], {}).setdefault(segment.key[1], segment)
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
                        _end_us(chunks[before]),
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


def merge_segments(
    segments: Iterable[Segment],
    *,
    fill_gaps: bool = True,
    default_rate: int = 16000,
    suspects: Iterable[MissingChunks] = (),
) -> MergedAudio:
    unique: dict[object, Segment] = {}
    for index, segment in enumerate(segments):
        unique.setdefault(segment.key if segment.key is not None else index, segment)
    ordered = sorted(unique.values(), key=lambda s: (s.start_us, s.key or ("", 0)))
    if not ordered:
        return MergedAudio(pcm=b"", sample_rate=default_rate, start_us=None)
    missing = find_missing(ordered, suspects)
    rates = {s.sample_rate for s in ordered}
    if len(rates) > 1:
        raise UnsupportedFormatError(
            f"this conversation was recorded at several sample rates {sorted(rates)}; "
            "merging them into one rate is not supported yet (ROADMAP 3)"
        )
    rate = ordered[0].sample_rate
    origin = ordered[0].start_us
    out = bytearray()
    skipped = 0  # samples of gaps left unfilled: the timeline is ahead of ``out`` by this
    for segment in ordered:
        position = round((segment.start_us - origin) * rate / 1_000_000)
        cursor = len(out) // 2 + skipped
        pcm = segment.pcm[: len(segment.pcm) - len(segment.pcm) % 2]
        if position > cursor:
            if fill_gaps:
                out += bytes(2 * (position - cursor))
            else:
                skipped += position - cursor
        elif position < cursor:
            pcm = pcm[2 * (cursor - position) :]
        out += pcm
    return MergedAudio(pcm=bytes(out), sample_rate=rate, start_us=origin, missing=missing)
