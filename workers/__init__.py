"""The audiosync worker fleet. ``celery -A workers ...`` finds the app here.

``app`` (workers/celery_app.py) loads on first use, as Celery's ``-A workers`` asks for it
(``celery.app.utils.find_app`` reads ``workers.app``): the pure modules of the fleet
(``planner``, ``validate``, ``backfill_plan``) import without Celery
(docs/ARCHITECTURE.md, "Who imports whom").
"""

from typing import TYPE_CHECKING, Any

from backend_hooks.contract.build_info import __version__

if TYPE_CHECKING:
    from celery import Celery

    app: Celery


def __getattr__(name: str) -> Any:
    if name == "app":
        from workers.celery_app import app

        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")


__all__ = ["__version__", "app"]
