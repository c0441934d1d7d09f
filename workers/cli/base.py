"""What the ``audiosync`` commands share: the group's handling of a Redis that does not
answer, the output (``--json`` or lines) and the option callbacks (as celery/bin/base.py
is for Celery's commands)."""

from __future__ import annotations

import json
import math
from typing import Any

import click
import redis

from backend_hooks.contract.settings import Settings, shown_url


class AudiosyncGroup(click.Group):
    """The ``audiosync`` group: a Redis that does not answer is one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except redis.RedisError as exc:  # one line, not a traceback
            url = shown_url(Settings.from_env(role="fleet").redis_url)
            raise click.ClickException(f"Redis at {url} is not answering: {exc}") from None


def emit(as_json: bool, data: Any, lines: list[str]) -> None:
    """``data`` as indented JSON with ``--json``, else ``lines``, one a line."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        for line in lines:
            click.echo(line)


def seconds(_ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A number of seconds: finite and not negative (``nan`` would pass every comparison)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"must be a finite number of seconds >= 0, got {value!r}")
    return value
