"""Pure backfill policy: the protection level of an earlier object against
the sources it claims (``backfill_plan.level_problems``), and the minimum age
(``backfill_plan.checked_min_age``)."""

from __future__ import annotations

import math

import pytest

from backend_hooks.contract import naming
from backend_hooks.contract.errors import InvalidInputError
from workers import backfill_plan as plan

PREFIX = "chunks/u/c/"


def _earlier(filename: str, present: list[str]) -> plan.Earlier:
    return plan.Earlier(
        naming.parse_object_name(PREFIX + filename),
        "bf-x",
        {p: 1 for p in present},
        tuple(PREFIX + p for p in present),
    )


def _names(*filenames: str) -> dict[str, naming.ObjectName]:
    return {PREFIX + f: naming.parse_object_name(PREFIX + f) for f in filenames}


NEW = "1700000000.000-1700000004.000_0123456789abcdef"


def test_a_standard_object_claiming_a_sealed_source_is_a_problem_naming_it() -> None:
    names = _names("1700000000.000.bin", "1700000002.000.enc", "1700000004.000.opus.enc")
    earlier = _earlier(
        f"{NEW}.opus", ["1700000000.000.bin", "1700000002.000.enc", "1700000004.000.opus.enc"]
    )
    [problem] = plan.level_problems(earlier, names)
    assert "1700000002.000.enc, 1700000004.000.opus.enc" in problem and NEW in problem


def test_matching_or_raised_levels_are_fine() -> None:
    names = _names("1700000000.000.bin", "1700000002.000.enc")
    assert plan.level_problems(_earlier(f"{NEW}.opus", ["1700000000.000.bin"]), names) == []
    both = ["1700000000.000.bin", "1700000002.000.enc"]
    assert plan.level_problems(_earlier(f"{NEW}.opus.enc", both), names) == []


def test_min_age_is_a_number_of_seconds_at_least_zero() -> None:
    assert plan.checked_min_age(0) == 0.0 and plan.checked_min_age(3600.5) == 3600.5
    assert math.isinf(plan.checked_min_age(float("inf")))  # nothing is old enough
    for bad in (float("nan"), -0.001, "60", None, False):
        with pytest.raises(InvalidInputError, match="min_age_seconds"):
            plan.checked_min_age(bad)


def _source(filename: str, digest: str) -> plan.Source:
    name = naming.parse_object_name(PREFIX + filename)
    chunk = plan.SourceChunk(name.start_us, 8000, 16000, pcm=bytes(32000))
    return plan.Source(name, 32000, digest, (chunk,))


def test_a_claimed_source_with_other_bytes_is_told_by_the_session_id() -> None:
    a, b = _source("1700000000.000.bin", "aa"), _source("1700000002.000.bin", "bb")
    made = plan.Earlier(
        naming.parse_object_name(f"{PREFIX}{NEW}.opus"),
        plan.session_id_of([a, b]),
        {"1700000000.000.bin": 32000, "1700000002.000.bin": 32000},
        (a.name.path, b.name.path),
    )
    assert plan.identity_problems(made, [b, a]) == []  # the read order does not matter
    [problem] = plan.identity_problems(made, [a, _source("1700000002.000.bin", "cc")])
    assert "rewritten" in problem and NEW in problem
    # One source already deleted: the id cannot be recomputed, nothing is claimed.
    assert plan.identity_problems(made, [_source("1700000002.000.bin", "cc")]) == []


def test_a_name_in_the_future_is_skipped_as_such_and_one_at_0_is_a_source() -> None:
    now_us = 1_700_000_000 * 1_000_000
    names = [
        naming.parse_object_name(PREFIX + f)
        for f in ("4102444800.000.bin", "0.000.bin", "1699999999.000.bin")
    ]
    chosen, skipped = plan.select_sources(names, now_us=now_us, min_age_seconds=3600)
    assert [n.filename for n in chosen] == ["0.000.bin"]
    by_path = {s.path: s.reason for s in skipped}
    assert "in the future" in by_path[PREFIX + "4102444800.000.bin"]
    assert "younger than --min-age (1 s < 3600 s)" in by_path[PREFIX + "1699999999.000.bin"]
