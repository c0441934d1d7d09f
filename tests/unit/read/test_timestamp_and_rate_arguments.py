"""``timestamps=`` (and ``sample_rate=``) as a backend
hands it over, wrong.

Every merge function and ``delete_audio_chunks`` select objects by listing timestamps
(float seconds). A string (``"1700000000.123"`` straight from JSON), a NaN, an infinity, a
bare number instead of a list or a negative time raised a bare ``TypeError``,
``ValueError`` or ``OverflowError`` from ``round`` (a string was even repeated a thousand
times first), not a typed error naming the value. Duplicates and an empty list are fine.
"""

from __future__ import annotations

import math

import pytest

from backend_hooks.contract import naming
from backend_hooks.contract.errors import InvalidInputError
from backend_hooks.read import reader

NAMES = [
    naming.parse_object_name(f"chunks/u/c/{t}.bin") for t in ("1700000000.123", "1700000005.123")
]


@pytest.mark.parametrize(
    "timestamps",
    [["1700000000.123"], [math.nan], [math.inf], [-1.0], [True], 1700000000.123, "1700000000"],
)
def test_a_bad_timestamp_is_an_invalid_input_error_naming_it(timestamps: object) -> None:
    with pytest.raises(InvalidInputError, match="timestamps"):
        reader._selected(NAMES, timestamps)  # type: ignore[arg-type]


def test_duplicates_ints_and_nothing_select_as_expected() -> None:
    assert reader._selected(NAMES, [1700000000.123, 1700000000.123]) == NAMES[:1]
    assert reader._selected(NAMES, []) == []
    assert reader._selected(NAMES, [1700000005.123, 1700000000]) == NAMES[1:]


@pytest.mark.parametrize("rate", [16000.0, True, "16000", 44100])
def test_a_sample_rate_that_is_not_an_int_of_the_opus_rates_is_refused(rate: object) -> None:
    """``16000.0`` passed ``in SUPPORTED_RATES`` and went on as a float rate: into the WAV
    header's ``struct.pack('<I')`` (``struct.error``) and ``MergedAudio.sample_rate``."""
    with pytest.raises(InvalidInputError, match="sample_rate"):
        reader.checked_rate(rate)  # type: ignore[arg-type]
