"""The settings table (backend_hooks/contract/settings.py ``VARIABLES``) is every environment
variable the code reads, and README.md's settings table is that table; docs/FORMATS.md's
Redis key table is every key the code names."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from backend_hooks.adapters import redis_store
from backend_hooks.contract import redis_keys
from backend_hooks.contract.redis_keys import LEGACY_SHARD, SessionKeys
from backend_hooks.contract.settings import (
    ENV_DEFAULTS,
    OTHER_VARIABLES,
    ROLE_VARIABLES,
    VARIABLE,
    VARIABLES,
    Settings,
)
from backend_hooks.pusher import appender
from workers import store
from workers.logs import LOG_FORMAT_ENV, log_format
from workers.metrics import METRICS_PORT_ENV, metrics_port

ROOT = Path(__file__).resolve().parents[3]
SOURCES = sorted(
    p for folder in ("backend_hooks", "workers") for p in (ROOT / folder).rglob("*.py")
)
#: requests' own variables: backend_hooks/adapters/gcs.py reads them once, as requests would.
REQUESTS_VARIABLES = frozenset({"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"})


def markdown_table(text: str, heading: str, first_column: str) -> list[list[str]]:
    """The cells of the rows of the first table after the heading that starts with
    ``heading`` whose first column is headed ``first_column``."""
    section = text.split(f"\n{heading}", 1)[1]
    lines = iter(section.splitlines())
    for line in lines:
        if line.startswith(f"| {first_column} |"):
            break
    else:
        raise AssertionError(f"no table headed {first_column!r} under {heading!r}")
    next(lines)  # |---|---|
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def readme_settings() -> list[tuple[str, str]]:
    """(variable, default cell) of README.md's settings table, in its order."""
    rows = markdown_table((ROOT / "README.md").read_text(), "## Settings", "variable")
    return [(row[0].strip("`"), row[1]) for row in rows]


def default_shown(cell: str) -> str | None:
    """A default as README shows it: a code span is the value; "unset ..." or "= another
    variable" is no value."""
    if re.fullmatch(r"`[^`]*`", cell):
        return cell.strip("`")
    assert cell.startswith(("unset", "= ")), f"a default README shows neither way: {cell!r}"
    return None


def test_readme_lists_every_variable_of_the_table_in_its_order() -> None:
    assert [name for name, _ in readme_settings()] == [v.name for v in VARIABLES]


def test_readme_shows_each_variables_default() -> None:
    shown = {name: default_shown(cell) for name, cell in readme_settings()}
    assert shown == {v.name: v.default for v in VARIABLES}


def test_every_variable_settings_holds_is_parsed_into_a_field_or_combined() -> None:
    """A row with a parser fills a Settings field (or one ``from_env`` combines it into);
    a row without one names the module that reads it, which does."""
    fields = set(inspect.signature(Settings).parameters)
    for variable in VARIABLES:
        if variable.parse is None:
            assert variable.read_in is not None and not variable.roles, variable.name
            assert variable.name in (ROOT / variable.read_in).read_text(), variable.name
        else:
            assert variable.roles, variable.name
            assert variable.field is None or variable.field in fields, variable.name
    assert {v.field for v in VARIABLES if v.field} < fields  # the rest are combined


def test_the_settings_fields_defaults_are_the_tables() -> None:
    """A field with a default (for a Settings built in code) has the table's, parsed."""
    read = Settings.from_env({})
    for item in dataclasses.fields(Settings):
        if item.default is not dataclasses.MISSING:
            assert getattr(read, item.name) == item.default, item.name


def test_the_derived_names_follow_the_table() -> None:
    assert len(VARIABLE) == len(VARIABLES)  # no name twice
    assert set(ENV_DEFAULTS) | OTHER_VARIABLES == set(VARIABLE)
    assert ROLE_VARIABLES["backfill"] >= ROLE_VARIABLES["fleet"] | ROLE_VARIABLES["reader"]
    assert {"ENCRYPTION_SECRET", "ENCRYPTION_SECRET_PREVIOUS"}.isdisjoint(ROLE_VARIABLES["fleet"])
    needed = [v.needs[0] for v in VARIABLES if v.needs is not None]
    names = [v.name for v in VARIABLES]
    for variable in VARIABLES:  # parsed in the table's order: what it needs comes first
        if variable.needs is not None:
            assert names.index(variable.needs[0]) < names.index(variable.name)
    assert needed


def test_a_variable_read_elsewhere_defaults_as_the_table_says() -> None:
    assert log_format({}) == VARIABLE[LOG_FORMAT_ENV].default == "text"
    assert metrics_port({}) is None and VARIABLE[METRICS_PORT_ENV].default is None
    assert VARIABLE[LOG_FORMAT_ENV].read_in == "workers/logs.py"
    assert VARIABLE[METRICS_PORT_ENV].read_in == "workers/metrics.py"


def container_comments() -> set[str]:
    """The chunk container's OpusTags comments (docs/FORMATS.md §1): AUDIOSYNC_* names that
    are no environment variable."""
    rows = markdown_table((ROOT / "docs" / "FORMATS.md").read_text(), "## 1.", "comment")
    return {row[0].strip("`") for row in rows}


def string_literals(path: Path) -> list[str]:
    """Every string constant of a module (docstrings and f-strings' literal parts too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_every_audiosync_name_in_a_string_literal_is_a_variable_of_the_table() -> None:
    """A new variable read with ``os.environ.get("AUDIOSYNC_...")`` fails here until it has
    its row (and README its line)."""
    comments = container_comments()
    strays = {
        f"{path.relative_to(ROOT)}: {literal}"
        for path in SOURCES
        for literal in string_literals(path)
        if re.fullmatch(r"AUDIOSYNC_[A-Z0-9_]+", literal)
        and literal not in VARIABLE
        and not (path.name == "container.py" and literal in comments)
    }
    assert not strays


def test_every_audiosync_name_the_source_mentions_is_a_variable_or_a_container_comment() -> None:
    """Comments, docstrings and messages included: a renamed or removed variable leaves no
    stale mention. ``AUDIOSYNC_ROLLOUT_*`` names a group of rows."""
    known = set(VARIABLE) | container_comments()
    strays = set()
    for path in SOURCES:
        for match in re.finditer(r"\bAUDIOSYNC_[A-Z0-9_]*", path.read_text()):
            name, after = match.group(), match.string[match.end() : match.end() + 1]
            if name in known or name == "AUDIOSYNC_":  # the prefix itself
                continue
            if after == "*" and any(known_name.startswith(name) for known_name in VARIABLE):
                continue
            strays.add(f"{path.relative_to(ROOT)}: {name}{after}")
    assert not strays


def environment_reads(path: Path) -> set[str]:
    """The names a module reads with ``os.environ.get("X")``, ``os.environ["X"]`` or
    ``os.getenv("X")``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        target: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            function = ast.unparse(node.func)
            if function in ("os.environ.get", "os.getenv", "environ.get"):
                target = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            target = node.slice
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            names.add(target.value)
    return names


def test_every_variable_read_by_name_is_in_the_table() -> None:
    read = {name for path in SOURCES for name in environment_reads(path)}
    assert "PROMETHEUS_MULTIPROC_DIR" in read  # the scan sees os.environ.get("...")
    assert read - REQUESTS_VARIABLES <= set(VARIABLE)
    assert {v.name for v in VARIABLES if v.passed_to} >= {
        "CELERY_BROKER_URL",
        "STORAGE_EMULATOR_HOST",
        "PROMETHEUS_MULTIPROC_DIR",
    }


# -- docs/FORMATS.md §5.1: the Redis keys ---------------------------------------------------

SHARD, SESSION = 7, "0123456789abcdef0123456789abcdef"


def as_documented(key: str) -> str:
    """A key the code built for shard 7 and session SESSION, as FORMATS.md writes it: shard
    ``{sK}``, session ``S``, a deleted mark's digest ``D``."""
    key = key.replace("{s7}", "{sK}").replace(SESSION, "S")
    return re.sub(r"^audiosync:deleted:[0-9a-f]{32}$", "audiosync:deleted:D", key)


def session_key_properties() -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(SessionKeys)
        if isinstance(member, property) and name != "prefix"
    ]


def key_functions(module: ModuleType = redis_keys) -> dict[str, inspect.Signature]:
    """``module``'s functions that name a key: ``<kind>_key(...) -> str``."""
    return {
        name: inspect.signature(function)
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.endswith("_key")
        and function.__module__ == module.__name__
        and inspect.signature(function).return_annotation == "str"
    }


def key_constants(module: ModuleType) -> dict[str, object]:
    """``module``'s own constants that name a key: ``<KIND>_KEY``."""
    return {name: value for name, value in vars(module).items() if name.endswith("_KEY")}


def shard_key_functions() -> list[str]:
    """The ones that name one shard's key: ``<kind>_key(shard)``."""
    return [name for name, sig in key_functions().items() if list(sig.parameters) == ["shard"]]


def keys_in_code(shard: int) -> set[str]:
    """Every key redis_keys names, for ``shard`` (LEGACY_SHARD: the layout before shards)."""
    keys = {getattr(SessionKeys(SESSION, shard), name) for name in session_key_properties()}
    keys |= {getattr(redis_keys, name)(shard) for name in shard_key_functions()}
    keys |= {value for value in key_constants(redis_keys).values() if isinstance(value, str)}
    keys.add(redis_keys.deleted_conversation_key("uid", "cid"))
    return keys


def test_keys_are_named_in_redis_keys_and_not_in_the_redis_adapter() -> None:
    """redis_keys is the one module naming keys (the table below is checked against it):
    the Redis adapter, the pusher's append and the fleet's store import their names."""
    for module in (redis_store, appender, store):
        assert key_functions(module) == {}, module.__name__
        assert set(key_constants(module)) <= set(key_constants(redis_keys)), module.__name__


def test_every_key_function_of_redis_keys_is_known_to_this_test() -> None:
    """A new way of naming a key (another signature) must be added to ``keys_in_code``."""
    named = set(key_functions())
    assert named == {*shard_key_functions(), "deleted_conversation_key"}
    assert {"due_key", "dispatch_key", "quarantine_index_key"} <= named
    # Every session key's last part is one of the suffixes the fleet scans for.
    suffixes = {
        getattr(SessionKeys(SESSION, SHARD), name).rpartition(":")[2]
        for name in session_key_properties()
        if getattr(SessionKeys(SESSION, SHARD), name).startswith(SessionKeys(SESSION, SHARD).prefix)
    }
    assert suffixes == redis_keys.SESSION_KEY_SUFFIXES


def test_the_formats_key_table_lists_exactly_the_keys_the_code_names() -> None:
    rows = markdown_table((ROOT / "docs" / "FORMATS.md").read_text(), "### 5.1 Keys", "key")
    documented = [row[0].strip("`") for row in rows]
    assert len(documented) == len(set(documented))
    assert set(documented) == {as_documented(key) for key in keys_in_code(SHARD)}


@pytest.mark.parametrize("key", sorted(keys_in_code(LEGACY_SHARD)))
def test_the_formats_page_names_each_key_of_the_layout_before_shards(key: str) -> None:
    """A session's keys are ``audiosync:{S}:<suffix>``; the shard's own keys and the
    global ones are named as they are."""
    text = (ROOT / "docs" / "FORMATS.md").read_text().split("### 5.1 Keys", 1)[1]
    text = text.split("### 5.2", 1)[0]
    shown = "audiosync:{S}:<suffix>" if key.startswith(f"audiosync:{{{SESSION}}}:") else key
    assert f"`{as_documented(shown)}`" in text
