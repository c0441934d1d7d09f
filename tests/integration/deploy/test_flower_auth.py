"""Flower behind basic auth from its own variable, ``FLOWER_BASIC_AUTH=user:password``.

A real ``celery -A workers flower``: pages and the API answer 401 without the credentials
and 200 with them; ``/metrics`` (Flower's Prometheus text) stays open for the scraper.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo

pytestmark = pytest.mark.integration
CREDENTIALS = "ops:correct-horse-battery"


def status(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_flower_asks_for_its_basic_auth(stack: StackInfo, tmp_path: Path) -> None:
    env = {**stack.env(), "FLOWER_BASIC_AUTH": CREDENTIALS}
    with processes.flower(env, tmp_path) as flower:
        assert flower.url is not None
        for page in ("/", "/workers", "/api/workers"):
            assert status(flower.url + page) == 401, page
            assert status(flower.url + page, "ops:wrong") == 401, page
        assert status(flower.url + "/", CREDENTIALS) == 200
        assert status(flower.url + "/metrics") == 200  # the scraper needs no password
