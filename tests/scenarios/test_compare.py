"""``citytwin compare``: same seeds same bytes, common random numbers, intervals, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from citytwin.cli import main
from citytwin.scenarios.compare import METRICS, interval, parse_policies

#: A 2x2 grid, 5 minutes of traffic and an ambulance across it: a few seconds per comparison.
SCENARIO = """\
name = "cmp"
seed = 4
duration = 420

[network.grid]
rows = 2
cols = 2
lanes = 2
edge_length = 150.0
attach_length = 250.0

[[vtypes]]
id = "ambulance"
priority = 1
length = 6.5

[demand.random]
end = 300
vehs_per_hour = 1800

[[demand.flows]]
id = "amb"
route = ["r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c1_E"]
vtype = "ambulance"
begin = 30
end = 300
period = 120

[simulation]
warmup = 60

[signals]
policy = "fixed"
"""


@pytest.fixture
def cmp_scenario(write_toml):
    return write_toml(SCENARIO, "cmp.toml")


def _compare(path, out, *extra):
    return main(["compare", str(path), "--policies", "fixed,max-pressure:max_green=40,sotl",
                 "--seeds", "3", "--out", str(out), "--quiet", *extra])


def test_compare_writes_the_comparison_and_is_deterministic(cmp_scenario, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _compare(cmp_scenario, a, "--workers", "2") == 0
    assert _compare(cmp_scenario, b, "--workers", "1") == 0
    assert f"outputs written to {b}" in capsys.readouterr().out
    for name in ("comparison.json", "boxplots.png", "junction_delay.png", "timeseries.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    report_a, report_b = ((d / "report.md").read_text().replace(str(d), "OUT") for d in (a, b))
    assert report_a == report_b
    doc = json.loads((a / "comparison.json").read_text())
    assert doc["policies"] == ["fixed", "max-pressure:max_green=40", "sotl"]
    assert doc["seeds"] == [4, 5, 6]
    for policy, res in doc["results"].items():
        for key, _, _ in METRICS:
            m = res[key]
            assert len(m["per_seed"]) == 3 and m["n"] == 3
            assert m["ci95"][0] <= m["mean"] <= m["ci95"][1]
            assert ("change_vs_first" in m) == (policy != "fixed")
        # common random numbers: every policy runs the same demand for each seed
        assert res["other"]["vehicles_demand"] == doc["results"]["fixed"]["other"][
            "vehicles_demand"]
        assert res["emergency_red_signals"]["mean"] is not None
    fixed = doc["results"]["fixed"]["mean_time_loss_s"]["per_seed"]
    mp = doc["results"]["max-pressure:max_green=40"]["mean_time_loss_s"]
    rel = np.array(mp["per_seed"]) / np.array(fixed) - 1
    # comparison.json keeps 6 significant digits: of the change, and of each per-seed value
    # (which leaves the change recomputed from them off by up to ~2e-6)
    assert mp["change_vs_first"]["mean"] == pytest.approx(rel.mean(), abs=5e-6)


def test_interval_is_the_student_t_interval():
    v = np.array([1.0, 2.0, 4.0, 7.0])
    out = interval(v)
    half = 3.182446305284263 * v.std(ddof=1) / 2.0  # t(0.975, 3)
    assert out["mean"] == 3.5
    assert out["ci95"] == pytest.approx([3.5 - half, 3.5 + half])
    assert interval(np.array([2.0]))["ci95"] is None


@pytest.mark.parametrize("policies, message", [
    ("fixed,maxpressure", "unknown policy 'maxpressure'"),
    ("fixed,max-pressure:min_gren=3",
     "signals.max_pressure.min_gren: unknown key (did you mean 'min_green'?)"),
    ("actuated:max_green=-1", "signals.actuated.max_green: must be > 0"),
    ("actuated:min_green=30:max_green=20", "max_green must be >= min_green"),
    ("fixed:yellow=fast", "signals.yellow: must be a number"),
    ("fixed,external", "'external' needs devices"),
    ("fixed,fixed", "'fixed' given twice"),
    ("fixed,sotl:theta", "parameter 'theta' is not key=value"),
])
def test_bad_policies_are_rejected_with_exit_2(cmp_scenario, tmp_path, capsys, policies,
                                               message):
    code = main(["compare", str(cmp_scenario), "--policies", policies, "--seeds", "2",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_seed_count_is_rejected(cmp_scenario, tmp_path, capsys):
    assert main(["compare", str(cmp_scenario), "--policies", "fixed", "--seeds", "0",
                 "--out", str(tmp_path)]) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_policy_parameters_go_to_their_table():
    runs = parse_policies("fixed:min_green=7,max-pressure:min_green=8,"
                          "sotl:theta=90:yellow=4,actuated:preemption.enabled=false")
    assert [r.table for r in runs] == [
        {"policy": "fixed", "min_green": 7},
        {"policy": "max-pressure", "max_pressure": {"min_green": 8}},
        {"policy": "sotl", "sotl": {"theta": 90}, "yellow": 4},
        {"policy": "actuated", "preemption": {"enabled": False}}]
