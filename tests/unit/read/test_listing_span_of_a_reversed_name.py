"""What the listing alone says about an object
(``reader._span``) when a new object's name ends before it starts.

``{start}-{end}_{digest}.opus`` with ``end`` before ``start`` (a writer's clock bug, a
hand-made name; ``0.000`` as the end) parses. Its ``max_end_us`` ("certainly not beyond")
was ``end + 1 ms``, in 1970: the gap bound then measured from there to the next object
and refused, before any download, a conversation of two adjacent objects with
``GapTooLongError``; the size estimate of it was negative, clamped to nothing. A name's
end before its start says nothing: the object's size bounds it, as for a legacy object.
"""

from __future__ import annotations

import pytest

from backend_hooks.adapters import gcs
from backend_hooks.contract import naming
from backend_hooks.read import reader
from backend_hooks.read.merge import check_gap_bound, estimated_pcm_bytes

T0 = 1_700_000_000_000_000
RATE = 16000
PREFIX = "chunks/u/c/"


def new(
    start_us: int, end_us: int, size: int = 20_000
) -> tuple[naming.ObjectName, gcs.StoredObject]:
    stem = f"{naming.format_time(start_us)}-{naming.format_time(end_us)}_{'0' * 16}.opus"
    return naming.parse_object_name(PREFIX + stem), gcs.StoredObject(PREFIX + stem, size)


@pytest.mark.parametrize("end_us", [0, T0 - 1_000_000])
def test_a_name_ending_before_it_starts_neither_refuses_nor_vanishes(end_us: int) -> None:
    lying = reader._span(*new(T0, end_us), None, None)
    honest = reader._span(*new(T0 + 10_000_000, T0 + 20_000_000), None, None)
    assert lying.start_us <= lying.end_us <= lying.max_end_us
    check_gap_bound([lying, honest], 60.0)  # 10 s apart at most: no refusal
    assert estimated_pcm_bytes([lying], RATE, False) > 2 * RATE  # some audio: not zero
