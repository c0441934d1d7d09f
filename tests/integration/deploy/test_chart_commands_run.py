"""The chart's commands are real: the rendered worker, beat, exporter and Flower containers
(their command, args and env, Secret references replaced by the local stack's values) run
as local processes against the local stack.

Nothing of the test's own environment leaks in: each process gets only PATH and what its
rendered container gets (the ConfigMap it reads, its env), with its container's /tmp and
Prometheus directory on directories of its own, as its emptyDirs. A wrong command (a queue
nobody sends to, an app that is not ours, a subcommand that does not exist, a missing
variable) fails here.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import PROJECT, StackInfo, free_port
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract.settings import Settings
from tests.unit.deploy.rendering import container, render

pytestmark = pytest.mark.integration
FLOWER_CREDENTIALS = "ops:correct-horse-battery"
#: What GKE gives every pod besides its spec (the project, from the metadata server).
PLATFORM_ENV = {"GOOGLE_CLOUD_PROJECT": PROJECT}
#: The container's own directories (emptyDirs), mapped to a directory per process here.
CONTAINER_DIRECTORIES = ("/tmp", "/prometheus-multiproc", "/var/spool/audiosync")


def chart_values(stack: StackInfo) -> dict[str, Any]:
    """A development cluster's values: the emulator, short batch windows, free ports."""
    return {
        "settings": {
            "BUCKET_PRIVATE_CLOUD_SYNC": stack.bucket,
            "STORAGE_EMULATOR_HOST": stack.gcs_url,
            "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": "2",
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.5",
            "AUDIOSYNC_LEASE_SECONDS": "10",
        },
        "workers": {"metricsPort": free_port(), "concurrency": 2},
        "exporter": {"port": free_port()},
        "flower": {"port": free_port()},
        "logFormat": "text",
        "spool": {"enabled": True, "drainer": {"enabled": True, "metricsPort": free_port()}},
    }


def secrets(stack: StackInfo) -> dict[tuple[str, str], str]:
    """The Secrets the chart's default values name, as the local stack fills them."""
    return {
        ("audiosync-redis", "redis-url"): stack.redis_url,
        ("audiosync-redis", "broker-url"): stack.redis_url,
        ("audiosync-flower", "basic-auth"): FLOWER_CREDENTIALS,
    }


class Rendered:
    def __init__(self, stack: StackInfo) -> None:
        self.values = chart_values(stack)
        self.objects = render(self.values)
        self.secrets = secrets(stack)
        self.config_maps = {
            o["metadata"]["name"]: o.get("data", {})
            for o in self.objects
            if o["kind"] == "ConfigMap"
        }

    def env(self, spec: dict[str, Any], home: Path) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            env.update(self.config_maps[source["configMapRef"]["name"]])
        for item in spec.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[(ref["name"], ref["key"])]
        return {k: in_container(v, home) for k, v in env.items()}

    def process(self, name: str, workdir: Path) -> processes.CeleryProcess:
        """The rendered container ``name`` as a local process (not started)."""
        spec = container(self.objects, name)
        home = workdir / name
        for directory in CONTAINER_DIRECTORIES:
            (home / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        command = [in_container(arg, home) for arg in [*spec["command"], *spec.get("args", [])]]
        process = processes.CeleryProcess(name, [], {}, workdir / f"{name}.log")
        process.args = command
        bin_dir = str(Path(sys.executable).parent)
        process.env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            **PLATFORM_ENV,
            **self.env(spec, home),
        }
        return process


def in_container(text: str, home: Path) -> str:
    for directory in CONTAINER_DIRECTORIES:
        if text == directory or text.startswith(directory + "/") or f"={directory}" in text:
            text = text.replace(directory, str(home / directory.lstrip("/")), 1)
    return text


@pytest.fixture
def chart(stack: StackInfo, redis_client: redis.Redis) -> Rendered:
    return Rendered(stack)


def get(url: str, credentials: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""


def metrics_text(port: int) -> str:
    """The page at ``/metrics`` on loopback ``port``; "" while nothing listens there yet."""
    try:
        return get(f"http://127.0.0.1:{port}/metrics")[1]
    except urllib.error.URLError:
        return ""


def wait_for(condition: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what}: not after {timeout:.0f} s")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[processes.CeleryProcess]]:
    running: list[processes.CeleryProcess] = []
    yield running
    for process in reversed(running):
        process.stop()


def test_the_charts_worker_flushes_what_its_beat_schedules(
    chart: Rendered,
    stack: StackInfo,
    tmp_path: Path,
    started: list[processes.CeleryProcess],
) -> None:
    worker = chart.process("worker", tmp_path)
    started.append(worker.start(" ready."))
    beat = chart.process("beat", tmp_path)
    started.append(beat.start("beat: Starting"))

    settings = Settings.from_env(stack.env())
    client = AudioSyncClient(settings)
    try:
        session = client.open_session("chart-user", "chart-conversation", 16000, "standard")
        session.push(speech_like(12, 16000, seed=16), time.time() - 12)
        session.close()
    finally:
        client.close()
    context = storage.StorageContext.from_settings(settings)
    objects = wait_for(
        lambda: storage.list_audio_chunks("chart-user", "chart-conversation", context=context),
        f"an object flushed by the chart's worker\n{worker.tail()}\n{beat.tail()}",
    )
    assert objects
    assert "audiosync-sweep" in beat.log.read_text()
    worker_port = chart.values["workers"]["metricsPort"]
    status, text = get(f"http://127.0.0.1:{worker_port}/metrics")
    assert status == 200
    assert 'audiosync_flushes_total{outcome="ok"}' in text


def test_the_charts_exporter_serves_the_lag_gauges(
    chart: Rendered, tmp_path: Path, started: list[processes.CeleryProcess]
) -> None:
    exporter = chart.process("exporter", tmp_path)
    probe = subprocess.run(
        [*exporter.args, "--help"], env=exporter.env, capture_output=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr.decode()[-2000:]
    started.append(exporter)
    process = exporter.start("", timeout=5)  # started; it serves once its port answers
    port = chart.values["exporter"]["port"]
    text = wait_for(
        lambda: metrics_text(port) if process.running() else "",
        f"the exporter's metrics\n{exporter.tail()}",
        timeout=60,
    )
    for gauge in (
        "audiosync_due_sessions",
        "audiosync_due_oldest_age_seconds",
        "audiosync_quarantined_sessions",
        "audiosync_redis_up",
    ):
        assert gauge in text


def test_the_charts_flower_asks_for_credentials(
    chart: Rendered, tmp_path: Path, started: list[processes.CeleryProcess]
) -> None:
    flower = chart.process("flower", tmp_path)
    started.append(flower.start("Visit me at"))
    url = f"http://127.0.0.1:{chart.values['flower']['port']}"
    for page in ("/", "/api/workers", "/api/task/revoke/x"):
        assert get(url + page)[0] in (401, 405), page
    assert get(url + "/api/workers")[0] == 401
    assert get(url + "/", FLOWER_CREDENTIALS)[0] == 200
    assert get(url + "/healthcheck")[0] == 200  # the probes' path, no login
    assert get(url + "/metrics")[0] == 200  # the scraper's, no login


def test_the_charts_spool_drainer_watches_and_serves_its_metrics(
    chart: Rendered, tmp_path: Path, started: list[processes.CeleryProcess]
) -> None:
    drainer = chart.process("spool-drainer", tmp_path)
    started.append(drainer.start("", timeout=5))
    port = chart.values["spool"]["drainer"]["metricsPort"]
    text = wait_for(
        lambda: metrics_text(port) if drainer.running() else "",
        f"the spool drainer's metrics\n{drainer.tail()}",
        timeout=60,
    )
    assert "audiosync_spool_bytes" in text
    assert drainer.running()  # a watch, not a one-shot
