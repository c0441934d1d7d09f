"""backend_hooks.gcs.make_client: requests reads no environment per request unless the
environment has something for it (proxies, a CA bundle)."""

from __future__ import annotations

import pytest

from backend_hooks.gcs import make_client
from backend_hooks.settings import Settings

SETTINGS = Settings.from_env({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"})


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_without_proxy_variables_requests_skips_the_environment() -> None:
    assert make_client(SETTINGS)._http.trust_env is False


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "NO_PROXY", "REQUESTS_CA_BUNDLE"])
def test_a_proxy_or_ca_variable_keeps_requests_reading_it(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "http://proxy.example:3128")
    assert make_client(SETTINGS)._http.trust_env is True
