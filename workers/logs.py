"""The fleet's log format: Celery's text lines, or one JSON object a line.

``AUDIOSYNC_LOG_FORMAT=json`` (default ``text``) puts python-json-logger's formatter on
the handlers Celery sets up, in the main process and in the pool processes alike (its
``after_setup_logger`` and ``after_setup_task_logger`` signals). Each line then carries
``time``, ``level``, ``logger``, ``process`` and ``message``, plus the task's name and id
on task lines, for a log pipeline to index.
"""

from __future__ import annotations

import logging
import os

from celery import signals

from backend_hooks.contract.errors import ConfigError

LOG_FORMAT_ENV = "AUDIOSYNC_LOG_FORMAT"
FORMATS = ("text", "json")


def log_format(environ: dict[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(LOG_FORMAT_ENV, "") or "text"
    if value not in FORMATS:
        raise ConfigError(f"{LOG_FORMAT_ENV} must be one of {FORMATS}, got {value!r}")
    return value


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    formatter: logging.Formatter = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(process)d %(processName)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
    return formatter


@signals.after_setup_logger.connect  # type: ignore[untyped-decorator]
@signals.after_setup_task_logger.connect  # type: ignore[untyped-decorator]
def _json_if_asked(logger: logging.Logger, **_: object) -> None:
    try:
        wanted = log_format()
    except ConfigError:
        return  # workers.celeryconfig stops the process with the message
    if wanted == "json":
        for handler in logger.handlers:
            handler.setFormatter(json_formatter())
