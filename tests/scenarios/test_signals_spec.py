"""The ``[signals]`` table: validation names the field, and the city runs the policy."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from citytwin.cli import main
from citytwin.errors import ScenarioError
from citytwin.scenarios import load_scenario
from tests.scenarios.test_compare import SCENARIO


@pytest.mark.parametrize("table, message", [
    ('[signals]\npolicy = "maxpressure"', "signals.policy: input should be"),
    ('[signals]\nyellow = 0', "signals.yellow: must be > 0"),
    ('[signals.sotl]\ntheta = "high"', "signals.sotl.theta: must be a number"),
    ('[signals.fixed]\nmin_cycle = 90\nmax_cycle = 60', "max_cycle (60) must be >= min_cycle"),
    ('[signals.preemption]\netaa = 3', "signals.preemption.etaa: unknown key (did you mean "
                                       "'eta'?)"),
    ('[signals]\npolicy = "external"', "'external' needs signal devices"),
])
def test_bad_signal_tables_name_the_field(write_toml, table, message):
    text = SCENARIO.replace('[signals]\npolicy = "fixed"\n', "") + "\n" + table + "\n"
    with pytest.raises(ScenarioError) as err:
        load_scenario(write_toml(text))
    assert message in str(err.value)


def test_unknown_arterial_edge_is_reported_when_the_city_is_built(write_toml):
    text = SCENARIO + '\n[signals.green_wave]\narterial = ["r0c0_W_r0c0", "r0c0_r0c9"]\n'
    scenario = load_scenario(write_toml(text))
    with pytest.raises(ScenarioError, match=r"signals.green_wave.arterial\[1\]: unknown edge "
                                            r"'r0c0_r0c9' \(did you mean 'r0c0_r0c1'\?\)"):
        scenario.build_city()


def test_policy_is_installed_on_every_signal_controller(write_toml):
    from citytwin.agents.controllers import MaxPressure
    from citytwin.agents.signals import SignalController

    text = SCENARIO.replace('policy = "fixed"', 'policy = "max-pressure"\n'
                            '[signals.max_pressure]\nmin_green = 12.0')
    city = load_scenario(write_toml(text)).build_city()
    agents = city.agents_by_type[SignalController]
    assert len(agents) == 4
    assert all(a.controller == MaxPressure(min_green=12.0) for a in agents)
    agents[0].controller = None  # back to its own program
    city.run_for(60)
    assert city.kpis()["signal_switches"] > 0


def test_run_writes_emergency_trips_with_counterfactual(write_toml, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(write_toml(SCENARIO)), "--out", str(out), "--quiet"]) == 0
    t = pq.read_table(out / "emergency.parquet").to_pydict()
    assert len(t["id"]) == 3 and all(i.startswith("amb.") for i in t["id"])
    for dur, free, delay in zip(t["duration"], t["free_flow_s"], t["delay_s"], strict=True):
        assert dur == pytest.approx(free + delay)
    assert all(n >= 1 for n in t["preempted"])
    assert all(c is not None for c in t["cross_delay_s"]) and sum(t["cross_trips"]) > 0


def test_same_seed_same_bytes_under_a_strategy_with_preemption(write_toml, tmp_path):
    path = write_toml(SCENARIO.replace('policy = "fixed"', 'policy = "sotl"'))
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    for name in ("trips.parquet", "junctions.parquet", "emergency.parquet"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
