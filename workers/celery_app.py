"""The Celery app of the worker fleet: ``celery -A workers worker|beat|flower``."""

from __future__ import annotations

from celery import Celery

app = Celery("audiosync")
app.config_from_object("celeryconfig")
