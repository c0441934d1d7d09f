"""The values table of charts/audiosync/README.md, made from values.yaml and its comments.

``python -m tests.unit.deploy.values_table`` rewrites the table between the README's markers;
tests/unit/deploy/test_chart_readme.py checks it is current.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.deploy.rendering import CHART

README = CHART / "README.md"
BEGIN = "<!-- values table: python -m tests.unit.deploy.values_table -->"
END = "<!-- end of values table -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_./-]*):(?P<rest>.*)$")


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every leaf of the loaded values (an empty mapping is a leaf: a place for more)."""
    keys: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys.extend(leaf_keys(value, path + "."))
        else:
            keys.append(path)
    return keys


def rows(text: str) -> list[tuple[str, str, str]]:
    """(key, default, description) for every leaf, in file order; a mapping written
    inline (`requests: {cpu: 500m}`) is one row."""
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    found: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip().removeprefix("-- ").strip())
            continue
        match = _KEY.match(line)
        if not match:
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), match["key"]])
        rest = match["rest"].split(" #")[0].strip()
        description = " ".join(c for c in comment if c)
        comment = []
        if rest:
            default = json.dumps(yaml.safe_load(rest))
            found.append((path, default, description))
        else:
            stack.append((indent, match["key"]))
            if description:  # a block's comment describes its first row too
                comment = [description]
    return found


def table(values_text: str) -> str:
    lines = ["| key | default | description |", "|---|---|---|"]
    for key, default, description in rows(values_text):
        cells = (f"`{key}`", f"`{default}`", description.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_with_table(readme: str, values_text: str) -> str:
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return f"{before}{BEGIN}\n{table(values_text)}\n{END}{after}"


def values_text(path: Path = CHART / "values.yaml") -> str:
    return path.read_text()


def main() -> None:
    README.write_text(readme_with_table(README.read_text(), values_text()))


if __name__ == "__main__":
    main()
