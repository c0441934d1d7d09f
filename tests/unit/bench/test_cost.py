"""bench/cost.py: prices x quantities (pure), the proposal's arithmetic, the object-length
model, and the command end to end on a hand-written proof fixture (proof_fixture.json, marked
"fixture": it is not a measurement).

The cost report is a script in bench/ (``python -m bench.cost`` or ``python bench/cost.py``);
bench/ is not a package, so it is loaded from its path here, as the other bench tests do.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "cost.py"
FIXTURE = Path(__file__).with_name("proof_fixture.json")
PRICES = ROOT / "bench" / "prices.toml"


@pytest.fixture(scope="module")
def cost() -> ModuleType:
    return importlib.import_module("bench.cost")


@pytest.fixture(scope="module")
def prices(cost: ModuleType) -> Any:
    return cost.load_prices(PRICES)


@pytest.fixture(scope="module")
def proof(cost: ModuleType) -> Any:
    return cost.load_proof(FIXTURE)


def rates(cost: ModuleType, **changes: float) -> Any:
    """Round per-session-hour figures: 720 writes, 1 MB stored, 36 s of CPU each side."""
    base = {
        "gcs_class_a": 720.0,
        "gcs_class_b": 10.0,
        "objects": 720.0,
        "bytes_stored": 1e6,
        "pusher_cpu_seconds": 36.0,
        "fleet_cpu_seconds": 36.0,
        "redis_cpu_seconds": 0.0,
        "broker_commands": 0.0,
        "redis_peak_bytes_per_session": 0.0,
        "store_bytes_per_audio_second": 0.0,
    }
    base.update(changes)
    return cost.PathRates(**base)


def test_every_price_names_its_page_and_whether_it_was_read_or_recalled() -> None:
    doc = tomllib.loads(PRICES.read_text())
    assert doc["meta"]["region"] == "us-central1"
    assert doc["meta"]["read_on"]
    for name, section in doc.items():
        if name == "meta":
            continue
        assert section["source"].startswith("https://"), name
        assert section["status"].split(":")[0] in {"seen", "recalled"}, name


def test_the_proposals_arithmetic_is_reproduced_to_the_cent(
    cost: ModuleType, prices: Any, proof: Any
) -> None:
    checks = {(c.sessions, c.path): c for c in cost.proposal_checks(proof, prices, cost.Model())}
    # 200 sessions x 17,280 writes a day x 30 days x $0.05 / 10,000
    assert checks[200, "baseline"].reproduced_usd == pytest.approx(518.40)
    assert checks[200, "audiosync"].reproduced_usd == pytest.approx(43.20)
    assert checks[20_000, "baseline"].reproduced_usd == pytest.approx(51_840)
    assert checks[2_000_000, "audiosync"].reproduced_usd == pytest.approx(432_000)
    for check in checks.values():
        # ours = the proposal's arithmetic x month x requests x price, nothing else
        factors = check.month_factor * check.requests_factor * check.price_factor
        assert check.ours_usd == pytest.approx(check.reproduced_usd * factors)
        assert abs(check.proposal_usd - check.reproduced_usd) <= 0.5


def test_class_a_line_is_requests_times_the_price_over_a_730_hour_month(
    cost: ModuleType, prices: Any
) -> None:
    line = cost.monthly_cost("baseline", 200, rates(cost), prices, cost.Model()).line("gcs_class_a")
    assert line.monthly_usd == pytest.approx(200 * 730 * 720 / 1e4 * 0.05)


def test_storage_is_the_steady_state_of_the_retention(cost: ModuleType, prices: Any) -> None:
    def storage(months: float) -> float:
        model = cost.Model(retention_months=months)
        return float(
            cost.monthly_cost("baseline", 1000, rates(cost), prices, model)
            .line("storage")
            .monthly_usd
        )

    written_gib = 1000 * 730 * 1e6 / 2**30
    assert storage(12) == pytest.approx(written_gib * 12 * 0.020)
    assert storage(24) == pytest.approx(2 * storage(12))


def test_duty_scales_usage_but_not_what_is_provisioned_for_the_peak(
    cost: ModuleType, prices: Any
) -> None:
    live = rates(
        cost,
        store_bytes_per_audio_second=1300.0,
        redis_peak_bytes_per_session=90_000.0,
        redis_cpu_seconds=0.6,  # 20,000 sessions: 3.3 cores, CPU-bound shards
    )
    full = cost.monthly_cost("audiosync", 20_000, live, prices, cost.Model())
    half = cost.monthly_cost("audiosync", 20_000, live, prices, cost.Model(duty=0.5))
    for key in ("gcs_class_a", "gcs_class_b", "storage", "pusher_cpu", "fleet_cpu"):
        assert half.line(key).monthly_usd == pytest.approx(full.line(key).monthly_usd / 2), key
    for key in ("redis_memory", "redis_nodes", "spool"):
        assert half.line(key).monthly_usd == pytest.approx(full.line(key).monthly_usd), key


def test_redis_shards_follow_memory_or_cpu_whichever_needs_more(
    cost: ModuleType, prices: Any
) -> None:
    model = cost.Model()
    small = cost.redis_plan(200, rates(cost, store_bytes_per_audio_second=1.0), prices, model)
    assert (small.shards, small.nodes, small.bound) == (1, 2, "one shard")
    # 1,000,000 sessions x 100 kB = 100 GB: 10 shards of 10.4 GB writable
    memory = cost.redis_plan(
        1_000_000,
        rates(cost, store_bytes_per_audio_second=1.0, redis_peak_bytes_per_session=100_000.0),
        prices,
        model,
    )
    assert (memory.shards, memory.bound) == (10, "memory")
    # 36,000 sessions x 0.6 s an hour = 6 cores, at 60 % of one each: 10 shards
    cpu = cost.redis_plan(
        36_000, rates(cost, store_bytes_per_audio_second=1.0, redis_cpu_seconds=0.6), prices, model
    )
    assert (cpu.shards, cpu.nodes, cpu.bound) == (10, 20, "cpu")


def test_the_redis_lines_add_up_to_whole_nodes(cost: ModuleType, prices: Any) -> None:
    live = rates(cost, store_bytes_per_audio_second=1300.0, redis_peak_bytes_per_session=90_000.0)
    for sessions in (200, 20_000, 2_000_000):
        bill = cost.monthly_cost("audiosync", sessions, live, prices, cost.Model())
        plan = cost.redis_plan(sessions, live, prices, cost.Model())
        both = bill.line("redis_memory").monthly_usd + bill.line("redis_nodes").monthly_usd
        assert both == pytest.approx(plan.nodes * prices.redis_node_hour * 730)
        assert bill.line("redis_nodes").monthly_usd >= 0


def test_the_spool_takes_the_proposals_tiers(cost: ModuleType, prices: Any) -> None:
    live = rates(cost, store_bytes_per_audio_second=1300.0)
    model = cost.Model()

    def plan(sessions: int) -> tuple[str, int, float]:
        got = cost.spool_plan(sessions, live, prices, model)
        return (got.tier, got.instances, got.gib_each)

    assert plan(200) == ("Basic HDD", 1, 100)
    assert plan(20_000) == ("Basic SSD", 1, 2560)
    assert plan(2_000_000)[:2] == ("Basic SSD", 100)
    assert cost.spool_plan(200, live, prices, cost.Model(spool=False)).instances == 0
    baseline = cost.monthly_cost("baseline", 200, rates(cost), prices, model)
    assert baseline.line("spool").monthly_usd == 0


def test_object_length_model_is_the_measurement_at_its_own_length(
    cost: ModuleType, proof: Any
) -> None:
    measured = proof.rates["audiosync"]
    same = cost.rates_at_object_seconds(measured, 60, 60, 5)
    for name, value in dataclasses.asdict(measured).items():
        assert getattr(same, name) == pytest.approx(value), name


def test_longer_objects_mean_fewer_writes_and_more_memory(cost: ModuleType, proof: Any) -> None:
    measured = proof.rates["audiosync"]
    twice = cost.rates_at_object_seconds(measured, 60, 120, 5)
    assert twice.gcs_class_a == pytest.approx(measured.gcs_class_a / 2)
    assert twice.redis_peak_bytes_per_session == pytest.approx(
        2 * measured.redis_peak_bytes_per_session
    )
    # the fleet's CPU per object grows with its chunks, but less than the objects fall
    assert measured.fleet_cpu_seconds / 2 < twice.fleet_cpu_seconds < measured.fleet_cpu_seconds
    assert twice.bytes_stored == measured.bytes_stored
    assert twice.pusher_cpu_seconds == measured.pusher_cpu_seconds
    # an object is cut at AUDIOSYNC_BATCH_MAX_BYTES: past it, a longer setting changes nothing
    cap = cost.BATCH_MAX_BYTES / (measured.bytes_stored / 3600)
    assert cost.rates_at_object_seconds(measured, 60, 5000, 5) == cost.rates_at_object_seconds(
        measured, 60, cap + 1, 5
    )


def test_a_proof_of_another_schema_is_refused(cost: ModuleType) -> None:
    doc = json.loads(FIXTURE.read_text())
    doc["schema"] = "audiosync-proof/0"
    with pytest.raises(ValueError, match="schema"):
        cost.parse_proof(doc, "other.json")


def test_the_words_carry_the_numbers_they_quote(cost: ModuleType, prices: Any, proof: Any) -> None:
    model = cost.Model()
    costs = cost.report_costs(proof, prices, model)
    words = cost.paragraph(costs, proof, prices, model)
    for sessions, pair in costs.items():
        assert (
            f"At {sessions:,} sessions audiosync costs {cost.usd(pair['audiosync'].total)}" in words
        )
        assert cost.usd(pair["baseline"].total) in words


def test_the_command_writes_the_table_the_json_and_two_charts(
    cost: ModuleType, tmp_path: Path
) -> None:
    said: list[str] = []
    markdown, figures, charts = tmp_path / "cost.md", tmp_path / "cost.json", tmp_path / "img"
    code = cost.main(
        [
            "--proof",
            str(FIXTURE),
            "--markdown",
            str(markdown),
            "--json",
            str(figures),
            "--charts",
            str(charts),
        ],
        out=said.append,
    )
    assert code == 0, said
    text = markdown.read_text()
    assert "FIXTURE" in text
    for _key, label in cost.LINES:
        assert f"| {label} |" in text, label
    assert text.count("| **total** |") == 1
    written = json.loads(figures.read_text())
    assert set(written["scales"]) == {"200", "20000", "2000000"}
    for pair in written["scales"].values():
        for name in ("baseline", "audiosync"):
            assert set(pair[name]["lines"]) == {key for key, _ in cost.LINES}
    for name in cost.CHART_FILES:
        png = (charts / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000, name


def test_without_a_proof_it_says_how_to_make_one(cost: ModuleType, tmp_path: Path) -> None:
    said: list[str] = []
    assert cost.main(["--proof", str(tmp_path / "none.json")], out=said.append) == 2
    assert "python -m bench.proof" in said[0]


@pytest.mark.parametrize("command", [["-m", "bench.cost"], [str(SCRIPT)]], ids=["module", "script"])
def test_it_runs_as_a_module_and_as_a_script(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *command, "--proof", str(FIXTURE), "--retention-months", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| **total** |" in done.stdout
    assert "Retention 6 months" in done.stdout


def test_blocks_are_replaced_and_the_rest_kept(cost: ModuleType) -> None:
    text = "intro\n<!-- bench.cost:begin report -->\nold\n<!-- bench.cost:end report -->\noutro\n"
    assert cost.fill_blocks(text, {"report": "new\n", "headline": "h"}) == (
        "intro\n<!-- bench.cost:begin report -->\nnew\n<!-- bench.cost:end report -->\noutro\n"
    )
    assert cost.fill_blocks("no blocks", {"report": "new"}) is None


def test_the_proof_headline_gives_both_paths_their_ratio_and_the_audit(
    cost: ModuleType, proof: Any
) -> None:
    text = cost.proof_headline(proof)
    assert "FIXTURE" in text
    row = next(line for line in text.splitlines() if line.startswith("| GCS Class A"))
    base, new = proof.rates["baseline"].gcs_class_a, proof.rates["audiosync"].gcs_class_a
    cells = f"| {base:,.2f} | {new:,.2f} | {new / base:.3f} |"
    assert row == f"| GCS Class A requests (object writes) {cells}"
    assert "(none on the old path)" in text  # the fleet's CPU: the old path has no fleet
    assert ("Audit passed" if proof.audit_ok else "Audit FAILED") in text
    with pytest.raises(ValueError, match="without"):
        cost.fill_blocks("<!-- bench.cost:begin report -->", {"report": "new"})


def test_the_docs_hold_the_report_of_the_committed_proof(cost: ModuleType) -> None:
    """docs/COST.md's report, README's headline and the proof's figures (README,
    docs/BENCHMARKS.md) are what bench.cost writes from
    bench/results/proof.json (from the fixture while there is none): rerun
    `python -m bench.cost --markdown docs/COST.md --markdown README.md
    --markdown docs/BENCHMARKS.md --charts docs/img` after a new proof or a price change."""
    measured = ROOT / "bench" / "results" / "proof.json"
    proof = cost.load_proof(measured if measured.exists() else FIXTURE)
    prices = cost.load_prices(PRICES)
    model = cost.Model()
    costs = cost.report_costs(proof, prices, model)
    blocks = {
        "report": cost.render_markdown(proof, prices, model, costs),
        "headline": cost.headline(proof, prices, model, costs),
        "proof": cost.proof_headline(proof),
    }
    for doc in (ROOT / "docs" / "COST.md", ROOT / "README.md", ROOT / "docs" / "BENCHMARKS.md"):
        text = doc.read_text()
        assert cost.fill_blocks(text, blocks) == text, f"{doc.name} is not current"
    for doc in (ROOT / "README.md", ROOT / "docs" / "BENCHMARKS.md"):
        assert "<!-- bench.cost:begin proof -->" in doc.read_text(), doc.name
    for name in cost.CHART_FILES:
        assert (ROOT / "docs" / "img" / name).stat().st_size > 20_000, name


def test_each_cut_is_the_bill_less_the_bill_with_the_cut(
    cost: ModuleType, prices: Any, proof: Any
) -> None:
    model = cost.Model()
    for sessions in cost.SCALES:
        bill = cost.monthly_cost("audiosync", sessions, proof.rates["audiosync"], prices, model)
        cuts = cost.savings(sessions, proof, prices, model)
        assert [c.monthly_usd for c in cuts] == sorted((c.monthly_usd for c in cuts), reverse=True)
        by_key = {c.key: c for c in cuts}
        assert set(by_key) == set(cost.SAVING_ROWS)
        rates = proof.rates["audiosync"]
        per_object_ms = rates.fleet_cpu_seconds / rates.objects * 1000
        assert by_key["fleet_goal"].monthly_usd == pytest.approx(
            bill.line("fleet_cpu").monthly_usd * (1 - cost.FLEET_GOAL_MS / per_object_ms)
        )
        assert by_key["spool"].monthly_usd == pytest.approx(bill.line("spool").monthly_usd)
        _seconds, best = cost.optimum(cost.object_seconds_sweep(proof, prices, model, sessions))
        assert by_key["object_length"].monthly_usd == pytest.approx(bill.total - best.total)
        assert all(c.monthly_usd >= -1e-9 for c in cuts)


def test_a_clients_start_up_read_is_not_priced_per_session_hour(cost: ModuleType) -> None:
    doc = json.loads(FIXTURE.read_text())
    figures = doc["paths"]["audiosync"]
    figures["gcs_requests_by_kind"] = {"insert": 440, "bucket_get": 1, "get": 6}
    figures["gcs_class_b"] = 7
    figures["gcs_class_b_per_session_hour"] = 7 / doc["session_hours"]
    parsed = cost.parse_proof(doc)
    assert parsed.rates["audiosync"].gcs_class_b == pytest.approx(6 / doc["session_hours"])


def test_the_paragraph_says_more_when_audiosync_costs_more(
    cost: ModuleType, prices: Any, proof: Any
) -> None:
    # a month of retention and sessions live a tenth of the time: at 200 sessions the
    # provisioned Redis shard outweighs what the old path's writes and bytes cost
    model = cost.Model(retention_months=1, duty=0.1)
    costs = cost.report_costs(proof, prices, model, scales=(200,))
    pair = costs[200]
    assert pair["audiosync"].total > pair["baseline"].total
    words = cost.paragraph(costs, proof, prices, model)
    assert f"{cost.usd(pair['audiosync'].total - pair['baseline'].total)} more)" in words
