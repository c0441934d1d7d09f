"""The chaos run's presets, command line and cluster restart order (no servers)."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from collections import Counter

import pytest

from audiosync_dev.chaos import ChaosConfig, parse_args, restart_order


def test_cluster_presets_are_the_plain_ones_on_a_cluster() -> None:
    short, cluster = ChaosConfig.short(), ChaosConfig.short_cluster()
    assert not short.cluster and cluster.cluster and cluster.name == "short-cluster"
    assert cluster.redis_restarts == 2  # two different nodes
    assert (cluster.sessions, cluster.kills, cluster.poison, cluster.drop_rate) == (
        short.sessions,
        short.kills,
        short.poison,
        short.drop_rate,
    )
    assert ChaosConfig.long_cluster().cluster and ChaosConfig.long_cluster().sessions == 200


@pytest.mark.parametrize(
    ("argv", "name", "cluster"),
    [
        ([], "short", False),
        (["--cluster"], "short-cluster", True),
        (["--short", "--cluster"], "short-cluster", True),
        (["--long", "--cluster"], "long-cluster", True),
        (["--long"], "long", False),
    ],
)
def test_cluster_flag(argv: list[str], name: str, cluster: bool) -> None:
    config = parse_args(argv)
    assert (config.name, config.cluster) == (name, cluster)


def test_cluster_flag_keeps_the_overrides() -> None:
    config = parse_args(["--cluster", "--redis-restarts", "5", "--seed", "9"])
    assert (config.cluster, config.redis_restarts, config.seed) == (True, 5, 9)


@pytest.mark.parametrize("seed", range(20))
def test_restart_order_every_node_before_any_again_never_twice_in_a_row(seed: int) -> None:
    order = restart_order(random.Random(seed), 3, 7)
    assert len(order) == 7 and set(order) <= {1, 2, 3}
    assert all(a != b for a, b in itertools.pairwise(order))
    assert sorted(order[:3]) == [1, 2, 3] and sorted(order[3:6]) == [1, 2, 3]
    assert len(set(restart_order(random.Random(seed), 3, 2))) == 2


def test_restart_order_is_random_and_handles_small_clusters() -> None:
    firsts = Counter(restart_order(random.Random(seed), 3, 1)[0] for seed in range(60))
    assert set(firsts) == {1, 2, 3}
    assert restart_order(random.Random(1), 1, 3) == [1, 1, 1]
    assert restart_order(random.Random(1), 3, 0) == []
    with pytest.raises(ValueError, match="at least one node"):
        restart_order(random.Random(1), 0, 1)  # no cluster: never an endless loop


def test_the_command_line_runs_as_a_module_with_its_options() -> None:
    """``python -m audiosync_dev.chaos`` (the package's ``__main__``): help and a refusal."""
    shown = subprocess.run(
        [sys.executable, "-m", "audiosync_dev.chaos", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: python -m audiosync_dev.chaos")
    for option in ("--short", "--long", "--cluster", "--fault-rate", "--seed", "--keep"):
        assert option in shown.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "audiosync_dev.chaos", "--sessions", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "at least one session" in refused.stderr
