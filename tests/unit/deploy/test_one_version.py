"""One version for every role: pyproject.toml's, as installed, read back at run time."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

import backend_hooks
from backend_hooks.contract.build_info import register_build_info

ROOT = Path(__file__).resolve().parents[3]


def _pyproject_version() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def test_the_package_version_is_the_one_in_pyproject() -> None:
    assert backend_hooks.__version__ == _pyproject_version()
    assert importlib.metadata.version("audiosync") == _pyproject_version()


def test_the_build_info_gauge_names_the_version_once_however_often_it_is_registered() -> None:
    registry = CollectorRegistry()
    register_build_info(registry)
    register_build_info(registry)
    text = generate_latest(registry).decode()
    assert f'audiosync_build_info{{version="{_pyproject_version()}"}} 1.0' in text
    assert text.count("audiosync_build_info{") == 1
