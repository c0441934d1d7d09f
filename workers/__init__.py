"""The audiosync worker fleet. ``celery -A workers ...`` finds the app here."""

from backend_hooks import __version__
from workers.celery_app import app

__all__ = ["__version__", "app"]
