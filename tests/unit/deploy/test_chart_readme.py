"""charts/audiosync/README.md's values table is made from values.yaml and is current."""

from __future__ import annotations

import yaml

from tests.unit.deploy.values_table import README, leaf_keys, readme_with_table, rows, values_text


def test_the_readme_values_table_is_current() -> None:
    readme = README.read_text()
    assert readme == readme_with_table(readme, values_text()), (
        "run `python -m tests.unit.deploy.values_table` and commit charts/audiosync/README.md"
    )


def test_the_values_table_lists_every_value() -> None:
    listed = {key for key, _, _ in rows(values_text())}
    for leaf in leaf_keys(yaml.safe_load(values_text())):
        # a mapping written inline (`requests: {cpu: 500m}`) is one row
        assert any(leaf == key or leaf.startswith(key + ".") for key in listed), leaf
