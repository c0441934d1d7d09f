"""Which release runs where: ``celery -A workers audiosync --version``, ``workers.__version__``
and the ``audiosync_build_info`` gauge on a worker's metrics port and the pusher's
collector, all the version pyproject.toml gives."""

from __future__ import annotations

import time
import tomllib
import urllib.error
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo, free_port
from backend_hooks import AudioSyncClient
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher import pusher_metrics
from tests.integration.commands import ROOT, celery, run_python, scrape

pytestmark = pytest.mark.integration
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
BUILD_INFO = f"audiosync_build_info{{version={VERSION}}}"


def test_the_cli_and_the_workers_package_tell_the_version(stack: StackInfo) -> None:
    done = celery("audiosync", "--version", env=stack.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"audiosync {VERSION}"
    printed = run_python(["-c", "import workers; print(workers.__version__)"], stack.env())
    assert printed.stdout.strip() == VERSION, printed.stderr


def test_a_workers_metrics_port_serves_the_build_info(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    env = {**stack.env(), "AUDIOSYNC_METRICS_PORT": str(port)}
    with processes.worker(env, tmp_path, name="build-info", concurrency=1, beat=False) as worker:
        deadline = time.monotonic() + 60
        while True:
            try:
                samples = scrape(port)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, worker.tail()
                time.sleep(0.2)
    assert samples[BUILD_INFO] == 1


def test_the_pushers_collector_serves_the_build_info_once_per_registry(
    stack: StackInfo, redis_client: redis.Redis
) -> None:
    registry = CollectorRegistry()
    clients = [AudioSyncClient(Settings.from_env(stack.env())) for _ in range(2)]
    try:
        for client in clients:  # two clients of one process, one registry
            pusher_metrics.register(client, registry)
        text = generate_latest(registry).decode()
    finally:
        for client in clients:
            client.close()
    builds = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "audiosync_build_info"
    ]
    assert [(b.labels, b.value) for b in builds] == [({"version": VERSION}, 1)]
