"""Pure: place decoded segments on one timeline and produce PCM16LE.

Segments are ordered by start time; a chunk stored twice (same session and sequence
number) is kept once; a positive gap is filled with ``round(gap * rate)`` zero samples
when ``fill_gaps`` is on; an overlap is trimmed from the later segment. The output always
holds whole samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backend_hooks.container import Segment
from backend_hooks.errors import UnsupportedFormatError


@dataclass(frozen=True)
class MergedAudio:
    pcm: bytes
    sample_rate: int
    start_us: int | None  # time of the first sample; None when there is no audio

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        return self.sample_count / self.sample_rate


def merge_segments(
    segments: Iterable[Segment], *, fill_gaps: bool = True, default_rate: int = 16000
) -> MergedAudio:
    unique: dict[object, Segment] = {}
    for index, segment in enumerate(segments):
        unique.setdefault(segment.key if segment.key is not None else index, segment)
    ordered = sorted(unique.values(), key=lambda s: (s.start_us, s.key or ("", 0)))
    if not ordered:
        return MergedAudio(pcm=b"", sample_rate=default_rate, start_us=None)
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
    return MergedAudio(pcm=bytes(out), sample_rate=rate, start_us=origin)
