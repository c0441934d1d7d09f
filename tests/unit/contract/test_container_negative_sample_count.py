"""A v1 chunk whose ``AUDIOSYNC_SAMPLES`` is negative
(its last granule position made to agree) is corrupt, and must say so as a
``FormatError`` like every other corrupt chunk: it raised ``SystemError`` from deep in
the decoder, which neither ``skip_broken`` nor the candidate fallback catch, so one
such plain ``.opus`` object made a whole conversation unreadable."""

from __future__ import annotations

import pytest

from backend_hooks.contract import codec, container
from backend_hooks.contract.errors import FormatError

RATE = 16000


@pytest.mark.parametrize("count", [-1, -160000])
def test_a_negative_sample_count_is_a_format_error(count: int) -> None:
    encoder = codec.ChunkEncoder(RATE)
    packets = encoder.encode(bytes(2 * 1600))
    info = container.ChunkInfo("sess", 3, 1_700_000_000_000_000, RATE, count)
    data = container.build_chunk(info, packets, encoder.pre_skip)
    with pytest.raises(FormatError, match=r"sess/3.*negative"):
        container.decode_payload(data, name_start_us=0)
    for decode in (codec.decode_packets, codec.decode_packets_opuslib):
        with pytest.raises(FormatError, match="negative"):
            decode(packets, RATE, pre_skip=encoder.pre_skip, sample_count=count)
