"""Running the project's commands as operators do, for the integration tests: ``celery``
subprocesses from the repository root, and a scrape of a Prometheus endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


def run_python(
    args: list[str], env: dict[str, str], drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` from the repository root, with ``env`` over os.environ (less ``drop``)."""
    full = {**os.environ, **env}
    for name in drop:
        full.pop(name, None)
    return subprocess.run(
        [sys.executable, *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def celery(
    *args: str, env: dict[str, str], drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``celery -A workers ARGS``."""
    return run_python(["-m", "celery", "-A", "workers", *args], env, drop)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a command printed; it exited 0 (or 2: a failed probe)."""
    assert done.returncode in (0, 2), done.stderr
    return json.loads(done.stdout)


def scrape(port: int) -> dict[str, float]:
    """Every sample of ``http://127.0.0.1:PORT/metrics`` as ``name{label=value,...}``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out
