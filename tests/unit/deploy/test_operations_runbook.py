"""docs/OPERATIONS.md holds the runbook anchor of every alert the chart's PrometheusRule
links to: one ``###`` heading each, named exactly as the alert."""

from __future__ import annotations

import re
from pathlib import Path

RUNBOOK = Path(__file__).resolve().parents[3] / "docs" / "OPERATIONS.md"
ALERTS = (
    "AudiosyncLagHigh",
    "AudiosyncQuarantineNotEmpty",
    "AudiosyncFlushFailures",
    "AudiosyncSessionsParked",
    "AudiosyncObjectNameConflict",
    "AudiosyncRedisDown",
    "AudiosyncSpoolGrowing",
    "AudiosyncSpoolNotDraining",
)


def test_every_alert_has_one_runbook_heading_of_its_own_name() -> None:
    headings = re.findall(r"^### (\S+)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    for alert in ALERTS:
        assert headings.count(alert) == 1, f"docs/OPERATIONS.md: no single '### {alert}'"


def test_the_runbook_names_no_alert_the_chart_does_not_have() -> None:
    named = set(re.findall(r"^### (Audiosync\w+)", RUNBOOK.read_text(), flags=re.MULTILINE))
    assert named == set(ALERTS)
