"""The audiosync worker fleet. ``celery -A workers ...`` finds the app here."""

from workers.celery_app import app

__all__ = ["app"]
