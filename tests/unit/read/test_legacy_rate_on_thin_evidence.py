"""``legacy_pcm.infer_sample_rate`` on thin evidence.

Each piece of evidence implies ``samples / spacing``: the rate when the next chunk follows
without a gap, less than it after a gap. So one piece implying 12 kHz is as much "12 kHz,
no gap" as "16 kHz, then 1.67 s of silence" (or 24 kHz after a longer one): it cannot tell
them apart, yet the rule takes the candidate it fits and reads 16 kHz speech as 12 kHz
(a third too slow and low), silently. With more pieces the gapless ones agree on the true
rate and the gaps spread below it, which the rule handles (the second test).

Left ``xfail(strict=True)``: refusing one-piece evidence (``SampleRateUnknownError``,
pass ``sample_rate=``) would also refuse every two-object conversation that today reads
right, so which to prefer (or whether chunk lengths, ~5 s in the old uploader, should
break the tie) is a product decision, not a fix.
"""

from __future__ import annotations

import pytest

from backend_hooks.contract import legacy_pcm, naming
from backend_hooks.contract.errors import SampleRateUnknownError
from tests.legacy_objects import filename

T0 = 1_700_000_000.0
FIVE_S_16K = 160_000  # bytes of one 5 s chunk at 16 kHz


def bins(*starts: float) -> list[legacy_pcm.RawObject]:
    return [
        legacy_pcm.RawObject(
            naming.parse_object_name(f"chunks/u/c/{filename(T0 + s, '.bin')}"), (FIVE_S_16K,)
        )
        for s in starts
    ]


@pytest.mark.xfail(
    strict=True,
    reason="one piece of evidence below a candidate is read as that candidate: 16 kHz "
    "chunks followed by a gap are read as 12 kHz (a product decision, module docstring)",
)
def test_one_piece_of_evidence_after_a_gap_is_not_taken_for_a_lower_rate() -> None:
    objects = bins(0.0, 5.0 + 5.0 / 3)  # 5 s of 16 kHz audio, then 1.667 s of nothing
    try:  # refused (pass sample_rate=) or read right: either is a fix; 12 kHz is not
        rate = legacy_pcm.infer_sample_rate(objects, conversation="conversation c of user u")
    except SampleRateUnknownError:
        return
    assert rate == 16000, f"5 s chunks of 16 kHz audio read at {rate} Hz"


def test_with_gapless_neighbours_a_gap_does_not_lower_the_rate() -> None:
    objects = bins(0.0, 5.0, 10.0, 15.0 + 5.0 / 3, 20.0 + 5.0 / 3)
    assert legacy_pcm.infer_sample_rate(objects, conversation="c") == 16000
