"""``celery -A workers audiosync exporter``: serve the fleet-wide gauges on /metrics
(workers/exporter.py, imported when the command runs)."""

from __future__ import annotations

import signal
import threading

import click

from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import Settings, shown_url
from workers import metrics


@click.command(name="exporter")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve /metrics on this port (default: AUDIOSYNC_METRICS_PORT, else 9808).",
)
@click.option("--address", default="0.0.0.0", show_default=True, help="The address to listen on.")
def exporter_command(port: int | None, address: str) -> None:
    """Serve the fleet-wide gauges on /metrics until SIGTERM: one per deployment.

    The lag per shard (due sessions, oldest due age), the audio held, the quarantine and
    Redis up, read from Redis at most once per AUDIOSYNC_EXPORTER_CACHE_SECONDS and within
    AUDIOSYNC_EXPORTER_READ_SECONDS (a node that does not answer by then is reported out).
    The workers' metrics port serves only their own counters.
    """
    from workers import exporter

    try:
        settings = Settings.from_env(role="fleet")
        chosen = port or metrics.metrics_port() or exporter.DEFAULT_PORT
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    collector = exporter.FleetCollector.from_settings(settings)

    def ready() -> None:
        click.echo(
            f"audiosync exporter: the fleet-wide gauges on http://{address}:{chosen}/metrics "
            f"(Redis {shown_url(settings.redis_url)}, read at most every "
            f"{settings.exporter_cache_seconds:g} s, within "
            f"{settings.exporter_read_seconds:g} s)",
            err=True,
        )

    try:
        exporter.serve_until(stop, collector, chosen, address, on_ready=ready)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {address}:{chosen}: {exc}") from None
    click.echo("audiosync exporter: stopped", err=True)
