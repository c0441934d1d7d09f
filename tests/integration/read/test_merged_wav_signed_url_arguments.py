"""A bad ``expiration`` or credentials that cannot sign, given to
``get_or_create_merged_audio`` (an expiration of more than 7 days,
zero, or seconds as an int, as google-cloud-storage's own ``generate_signed_url`` takes)
was refused only after the merged WAV was made and uploaded; the int one not even as
``InvalidInputError`` (an ``AttributeError``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from google.oauth2 import service_account

from backend_hooks import storage
from backend_hooks.contract.errors import ConfigError, InvalidInputError
from tests.integration.read.legacy_conversation import T0, one_chunk_conversation

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("expiration", [timedelta(days=8), timedelta(0), 3600, "1h", None])
def test_a_bad_expiration_is_refused_before_any_wav_is_made(
    sctx: storage.StorageContext, signer: service_account.Credentials, expiration: Any
) -> None:
    uid, cid = one_chunk_conversation(sctx, "exp")
    with pytest.raises(InvalidInputError, match="expiration"):
        storage.get_or_create_merged_audio(
            uid,
            cid,
            "file-1",
            [T0],
            sample_rate=16000,
            expiration=expiration,
            signing_credentials=signer,
            context=sctx,
        )
    assert sctx.bucket.list(f"merged/{uid}/{cid}/") == []


def test_credentials_that_cannot_sign_are_refused_before_any_wav_is_made(
    sctx: storage.StorageContext,
) -> None:
    """The emulator's client holds anonymous credentials: they cannot sign."""
    uid, cid = one_chunk_conversation(sctx, "nosign")
    with pytest.raises(ConfigError, match="cannot sign"):
        storage.get_or_create_merged_audio(
            uid, cid, "file-1", [T0], sample_rate=16000, context=sctx
        )
    assert sctx.bucket.list(f"merged/{uid}/{cid}/") == []
