"""The read side under the backend's own names: the backend imports this module.

A facade, nothing else: every name is defined elsewhere and re-exported here, so the
backend's ``from backend_hooks import storage`` and ``storage.<name>`` keep working as
they did when the engine lived in this file.

- the read engine, ``read/reader.py``: ``StorageContext``, ``default_context``,
  ``list_audio_chunks``, ``list_unknown_objects``, ``iter_merged_audio``,
  ``download_merged_audio``, ``download_audio_chunks_and_merge``, ``write_merged_wav``,
  ``delete_audio_chunks``, ``READ_AHEAD``, ``READ_ATTEMPTS`` ...;
- the conversation-level functions, ``read/conversations.py``:
  ``create_audio_files_from_chunks``, ``copy_audio_chunks_for_merge``,
  ``delete_conversation_audio``, ``get_or_create_merged_audio``;
- one object's reading, ``read/object_reader.py``: ``sealed_segments``, ``edge_suspects``;
- the types and errors these take and raise, from their own modules.

No module of the package imports this one (docs/ARCHITECTURE.md, "Who imports whom"):
``conversations`` imports the engine, so the two do not import each other. The constants
are copies: setting ``storage.READ_AHEAD`` changes nothing, the engine reads its own.
"""

from __future__ import annotations

from backend_hooks.contract.audio_format import SUPPORTED_RATES as SUPPORTED_RATES
from backend_hooks.contract.errors import FormatError as FormatError
from backend_hooks.contract.errors import InvalidInputError as InvalidInputError
from backend_hooks.contract.errors import ObjectGoneError as ObjectGoneError
from backend_hooks.contract.errors import SampleRateUnknownError as SampleRateUnknownError
from backend_hooks.contract.errors import StorageError as StorageError
from backend_hooks.contract.errors import UnsupportedFormatError as UnsupportedFormatError
from backend_hooks.contract.ids import validate_id as validate_id
from backend_hooks.contract.settings import Settings as Settings
from backend_hooks.contract.settings import shown_url as shown_url
from backend_hooks.read.conversations import (
    copy_audio_chunks_for_merge as copy_audio_chunks_for_merge,
)
from backend_hooks.read.conversations import (
    create_audio_files_from_chunks as create_audio_files_from_chunks,
)
from backend_hooks.read.conversations import delete_conversation_audio as delete_conversation_audio
from backend_hooks.read.conversations import (
    get_or_create_merged_audio as get_or_create_merged_audio,
)
from backend_hooks.read.merge import MergedAudio as MergedAudio
from backend_hooks.read.merge import MissingChunks as MissingChunks
from backend_hooks.read.merge import ObjectSpan as ObjectSpan
from backend_hooks.read.merge import SkippedObject as SkippedObject
from backend_hooks.read.merge import TimelineMerger as TimelineMerger
from backend_hooks.read.merge import check_gap_bound as check_gap_bound
from backend_hooks.read.merge import estimated_pcm_bytes as estimated_pcm_bytes
from backend_hooks.read.object_reader import edge_suspects as edge_suspects
from backend_hooks.read.object_reader import sealed_segments as sealed_segments
from backend_hooks.read.pcm_buffer import PcmBuffer as PcmBuffer
from backend_hooks.read.reader import READ_AHEAD as READ_AHEAD
from backend_hooks.read.reader import READ_ATTEMPTS as READ_ATTEMPTS
from backend_hooks.read.reader import MergedAudioStream as MergedAudioStream
from backend_hooks.read.reader import StorageContext as StorageContext
from backend_hooks.read.reader import default_context as default_context
from backend_hooks.read.reader import delete_audio_chunks as delete_audio_chunks
from backend_hooks.read.reader import (
    download_audio_chunks_and_merge as download_audio_chunks_and_merge,
)
from backend_hooks.read.reader import download_merged_audio as download_merged_audio
from backend_hooks.read.reader import iter_merged_audio as iter_merged_audio
from backend_hooks.read.reader import list_audio_chunks as list_audio_chunks
from backend_hooks.read.reader import list_unknown_objects as list_unknown_objects
from backend_hooks.read.reader import reset_default_context as reset_default_context
from backend_hooks.read.reader import write_merged_wav as write_merged_wav
