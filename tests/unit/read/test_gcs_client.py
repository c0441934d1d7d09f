"""backend_hooks.adapters.gcs.make_client: requests reads no environment per request unless the
environment has proxies for it; a CA bundle is read once."""

from __future__ import annotations

import pytest

from backend_hooks.adapters.gcs import make_client
from backend_hooks.contract.settings import Settings

SETTINGS = Settings.from_env({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"})


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_without_proxy_variables_requests_skips_the_environment() -> None:
    session = make_client(SETTINGS)._http
    assert session.trust_env is False and session.verify is True


@pytest.mark.parametrize(
    ("name", "other"), [("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"), ("CURL_CA_BUNDLE", "")]
)
def test_a_ca_bundle_is_read_once_with_requests_precedence(
    monkeypatch: pytest.MonkeyPatch, name: str, other: str
) -> None:
    monkeypatch.setenv(name, "/etc/ssl/first.pem")
    if other:
        monkeypatch.setenv(other, "/etc/ssl/second.pem")
    session = make_client(SETTINGS)._http
    assert session.trust_env is False and session.verify == "/etc/ssl/first.pem"


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "NO_PROXY", "all_proxy"])
def test_a_proxy_variable_keeps_requests_reading_it(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "http://proxy.example:3128")
    assert make_client(SETTINGS)._http.trust_env is True
