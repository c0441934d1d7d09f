"""The Celery app of the worker fleet: ``celery -A workers worker|beat|flower``."""

from __future__ import annotations

from celery import Celery

from workers import shutdown  # noqa: F401  (its flag must exist before the pool forks)

app = Celery("audiosync")
app.config_from_object("celeryconfig")
