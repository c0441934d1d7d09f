"""A Redis URL's password (``redis://:password@host``, ``?password=``) never shows in
an error message: the reader's StorageError and the operator commands' one-line error
went to logs and terminals with the whole URL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audiosync_dev.localstack import StackInfo
from backend_hooks import storage
from backend_hooks.contract.errors import StorageError
from backend_hooks.contract.settings import Settings
from tests.integration.commands import celery

pytestmark = pytest.mark.integration
PASSWORD = "hunter2-not-for-logs"
#: Nothing listens on port 1: every command fails to connect.
SILENT_URLS = [
    pytest.param(f"redis://:{PASSWORD}@127.0.0.1:1/0", id="password"),
    pytest.param(f"redis://audiosync:{PASSWORD}@127.0.0.1:1/0", id="user-and-password"),
    pytest.param(f"redis://127.0.0.1:1/0?password={PASSWORD}", id="query"),
]


@pytest.mark.parametrize("url", SILENT_URLS)
def test_the_readers_redis_error_does_not_show_the_password(stack: StackInfo, url: str) -> None:
    reader = storage.StorageContext.from_settings(
        replace(Settings.from_env(stack.env(), role="reader"), redis_url=url)
    )
    with pytest.raises(StorageError, match=r"Redis at redis://.*127\.0\.0\.1:1") as caught:
        reader.conversation_deleted("u", "c", then="nothing was done")
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("url", SILENT_URLS)
def test_the_operator_commands_redis_error_does_not_show_the_password(
    stack: StackInfo, url: str
) -> None:
    done = celery("audiosync", "status", env={**stack.env(), "AUDIOSYNC_REDIS_URL": url})
    assert done.returncode != 0 and "is not answering" in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
