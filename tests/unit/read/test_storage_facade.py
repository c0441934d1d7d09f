"""``backend_hooks.storage`` is the backend's facade over the read side: every function,
class and constant the backend could reach as ``storage.<name>`` when the read engine
lived in that file is still there, the very object of the module that defines it now
(``reader``, ``conversations``, ``object_reader``, and the types and errors they use).

``FACADE`` was taken with ``dir()`` of the module before the engine moved out, less the
modules (``storage.gcs``, ``storage.os``, ...) and the standard library's and typing's
names (``Any``, ``deque``, ``dataclass``, ...) it happened to import, and its logger.
"""

from __future__ import annotations

import types

from backend_hooks import storage
from backend_hooks.contract import errors, settings
from backend_hooks.contract.audio_format import SUPPORTED_RATES
from backend_hooks.contract.ids import validate_id
from backend_hooks.read import conversations, merge, object_reader, reader
from backend_hooks.read.pcm_buffer import PcmBuffer
from tests.unit.contract.test_import_directions import import_graph

#: name -> the object ``storage.<name>`` must be
FACADE: dict[str, object] = {
    # the read engine
    "StorageContext": reader.StorageContext,
    "MergedAudioStream": reader.MergedAudioStream,
    "default_context": reader.default_context,
    "reset_default_context": reader.reset_default_context,
    "list_audio_chunks": reader.list_audio_chunks,
    "list_unknown_objects": reader.list_unknown_objects,
    "iter_merged_audio": reader.iter_merged_audio,
    "download_merged_audio": reader.download_merged_audio,
    "download_audio_chunks_and_merge": reader.download_audio_chunks_and_merge,
    "write_merged_wav": reader.write_merged_wav,
    "delete_audio_chunks": reader.delete_audio_chunks,
    "READ_AHEAD": reader.READ_AHEAD,
    "READ_ATTEMPTS": reader.READ_ATTEMPTS,
    # the conversation-level functions
    "create_audio_files_from_chunks": conversations.create_audio_files_from_chunks,
    "copy_audio_chunks_for_merge": conversations.copy_audio_chunks_for_merge,
    "delete_conversation_audio": conversations.delete_conversation_audio,
    "get_or_create_merged_audio": conversations.get_or_create_merged_audio,
    # one object's reading
    "sealed_segments": object_reader.sealed_segments,
    "edge_suspects": object_reader.edge_suspects,
    # the types, errors and helpers the module exposed through its imports
    "MergedAudio": merge.MergedAudio,
    "MissingChunks": merge.MissingChunks,
    "ObjectSpan": merge.ObjectSpan,
    "SkippedObject": merge.SkippedObject,
    "TimelineMerger": merge.TimelineMerger,
    "check_gap_bound": merge.check_gap_bound,
    "estimated_pcm_bytes": merge.estimated_pcm_bytes,
    "FormatError": errors.FormatError,
    "InvalidInputError": errors.InvalidInputError,
    "ObjectGoneError": errors.ObjectGoneError,
    "SampleRateUnknownError": errors.SampleRateUnknownError,
    "StorageError": errors.StorageError,
    "UnsupportedFormatError": errors.UnsupportedFormatError,
    "PcmBuffer": PcmBuffer,
    "SUPPORTED_RATES": SUPPORTED_RATES,
    "Settings": settings.Settings,
    "shown_url": settings.shown_url,
    "validate_id": validate_id,
}


def test_the_facade_exposes_every_name_it_had_as_the_defining_modules_object() -> None:
    for name, expected in FACADE.items():
        assert getattr(storage, name) is expected, name


def test_the_facade_exposes_nothing_else_but_the_names_it_had() -> None:
    public = {
        name
        for name in dir(storage)
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and not isinstance(getattr(storage, name), types.ModuleType)
    }
    assert public == set(FACADE)


def test_no_module_of_the_package_or_the_fleet_imports_the_facade() -> None:
    importers = sorted(
        module for module, imports in import_graph().items() if "backend_hooks.storage" in imports
    )
    assert importers == []
