"""Building cities from scenarios: seeds, the relative-path rule, SUMO files, run length, and
the layering rule (the model never imports scenarios)."""

from __future__ import annotations

import ast
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

import citytwin
from citytwin.errors import ScenarioError
from citytwin.scenarios import Scenario, load_scenario
from tests.conftest import TINY_SCENARIO

DATA = Path(__file__).resolve().parents[1] / "data"
PACKAGE = Path(citytwin.__file__).parent

ROUTES = """<routes>
    <vType id="bus" length="12" accel="1.2" decel="4" maxSpeed="15"/>
    <route id="r" edges="left0A0 A0B0 B0C0 C0right0"/>
    <vehicle id="v0" depart="0" route="r" type="bus"/>
    <trip id="t0" depart="3" from="left0A0" to="C0right0"/>
    <flow id="f" begin="0" end="60" period="10" route="r"/>
</routes>
"""

SUMO_SCENARIO = """name = "sumo-grid"
duration = 150

[network]
sumo_net = "city.net.xml"

[demand]
sumo_routes = "city.rou.xml"

[[demand.flows]]
id = "buses"
from = "right0C0"
to = "A0left0"
begin = 0
end = 60
number = 3
vtype = "bus"

[[detectors]]
id = "d"
lane = "A0B0_0"
pos = 10
"""


@pytest.fixture
def sumo_scenario(tmp_path) -> Path:
    """A scenario on a netgenerate grid with a SUMO demand file next to it."""
    shutil.copy(DATA / "grid3_tls.net.xml", tmp_path / "city.net.xml")
    (tmp_path / "city.rou.xml").write_text(ROUTES)
    path = tmp_path / "sumo.toml"
    path.write_text(SUMO_SCENARIO)
    return path


def _trips(city) -> list[tuple]:
    return list(zip(city.fleet.trip_ids, city.fleet.trips.depart.tolist(), strict=True))


def test_build_city_uses_every_source(tiny_scenario):
    sc = load_scenario(tiny_scenario)
    city = sc.build_city()
    ids = city.fleet.trip_ids
    assert "solo" in ids and "east.0" in ids and any(i.startswith("rt") for i in ids)
    assert sum(i.startswith("east.") for i in ids) == 10  # 360 veh/h for 100 s
    assert [v.id for v in city.vtypes] == ["DEFAULT_VEHTYPE", "car"]
    assert "loop" in city.detectors.ids
    assert city.config.reroute_period == 60


def test_same_seed_same_demand_other_seed_other_demand(tiny_scenario):
    sc = load_scenario(tiny_scenario)
    assert _trips(sc.build_city()) == _trips(sc.build_city(3))  # file seed is 3
    assert _trips(sc.build_city(3)) != _trips(sc.build_city(4))


def test_build_demand_draws_random_trips_from_the_given_rng(tiny_scenario):
    sc = load_scenario(tiny_scenario)
    net = sc.build_network()
    a = sc.build_demand(net, np.random.default_rng(1))
    b = sc.build_demand(net, np.random.default_rng(1))
    c = sc.build_demand(net, np.random.default_rng(2))
    assert a.trips == b.trips and a.trips != c.trips


def test_run_for_duration(tiny_scenario):
    sc = load_scenario(tiny_scenario)
    city = sc.build_city()
    seen = []
    sc.run(city, callback=seen.append)
    assert city.sim_time == 120 and seen[-1] == 120
    # Progress comes after every chunk of ticks, at least once per summary interval.
    steps = np.diff([0.0, *seen])
    assert (steps > 0).all() and steps.max() <= city.config.summary_interval
    sc.run(city, duration=30)
    assert city.sim_time == 150


def test_run_without_duration_stops_when_every_trip_finished(write_toml):
    text = TINY_SCENARIO.replace("duration = 120\n", "")
    sc = load_scenario(write_toml(text))
    city = sc.build_city()
    sc.run(city)
    k = city.kpis()
    assert city.finished and k["vehicles_arrived"] == k["vehicles_inserted"] > 0
    assert 100 < city.sim_time < 400


def test_run_without_duration_stops_at_max_duration(write_toml):
    text = TINY_SCENARIO.replace("duration = 120", "max_duration = 50")
    sc = load_scenario(write_toml(text))
    city = sc.build_city()
    sc.run(city)
    assert city.sim_time == 50 and not city.finished


def test_relative_paths_are_relative_to_the_scenario_file(sumo_scenario, tmp_path,
                                                          monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sc = load_scenario(Path("..") / sumo_scenario.name)
    monkeypatch.chdir(PACKAGE)  # later builds do not depend on the working folder
    assert sc.build_network().n_edges == 48


def test_sumo_scenario_runs(sumo_scenario):
    pytest.importorskip("citytwin.model.sumo_net")
    sc = load_scenario(sumo_scenario)
    city = sc.build_city()
    assert {"v0", "t0", "f.0", "buses.0"} <= set(city.fleet.trip_ids)
    assert {v.id for v in city.vtypes} == {"DEFAULT_VEHTYPE", "bus"}
    sc.run(city)
    k = city.kpis()
    assert k["vehicles_arrived"] > 5
    assert k["vehicles_inserted"] == (k["vehicles_arrived"] + k["vehicles_running_end"]
                                      + k["vehicles_teleported_out"])


def test_broken_sumo_network_file(sumo_scenario):
    (sumo_scenario.parent / "city.net.xml").write_text("<net><edge")
    with pytest.raises(ScenarioError, match=r"sumo\.toml: network\.sumo_net: .*city\.net\.xml"):
        load_scenario(sumo_scenario).build_city()


def test_broken_sumo_routes_file(sumo_scenario):
    (sumo_scenario.parent / "city.rou.xml").write_text(
        ROUTES.replace('edges="left0A0 A0B0', 'edges="left0A0 nowhere'))
    with pytest.raises(ScenarioError, match=r"sumo\.toml: demand\.sumo_routes: .*city\.rou\.xml"
                                            r".*unknown edge 'nowhere'"):
        load_scenario(sumo_scenario).build_city()


def test_vtype_defined_twice_is_refused(sumo_scenario):
    sumo_scenario.write_text(SUMO_SCENARIO + '\n[[vtypes]]\nid = "bus"\nlength = 10.0\n')
    with pytest.raises(ScenarioError, match=r"vtypes\[0\]\.id: 'bus' is also defined in "
                                            r"city\.rou\.xml"):
        load_scenario(sumo_scenario).build_city()


def test_scenario_is_exported():
    assert citytwin.Scenario is Scenario
    assert citytwin.load_scenario is load_scenario
    assert "builtin_scenarios" in citytwin.__all__
    assert citytwin.__all__ == sorted(citytwin.__all__)


def test_model_never_imports_scenarios_or_cli():
    for path in (PACKAGE / "model").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("citytwin.scenarios", "citytwin.cli")), \
                    f"{path.name} imports {name}"


def test_examples_in_the_docs_build(tmp_path):
    text = (PACKAGE.parent / "docs" / "scenarios.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    for block in blocks:  # every snippet is valid TOML
        tomllib.loads(block)
    examples = [b for b in blocks if b.startswith("name = ")]  # the whole scenario files
    assert len(examples) == 2
    grid, sumo = (tmp_path / "grid.toml"), (tmp_path / "sumo.toml")
    grid.write_text(examples[0])
    sumo.write_text(examples[1])
    shutil.copy(DATA / "grid3_tls.net.xml", tmp_path / "city.net.xml")
    (tmp_path / "city.rou.xml").write_text(ROUTES)
    city = load_scenario(grid).build_city()
    assert {"main.0", "line_5.0", "probe", "rt0"} <= set(city.fleet.trip_ids)
    assert city.vehicles_unroutable == 0
    assert load_scenario(sumo).build_city().fleet.trip_ids


def test_damaged_gzip_demand_file(write_toml, tmp_path):
    (tmp_path / "city.rou.xml.gz").write_bytes(b"not gzip")
    path = write_toml(TINY_SCENARIO.replace("[demand]\n",
                                            '[demand]\nsumo_routes = "city.rou.xml.gz"\n'))
    with pytest.raises(ScenarioError, match=r"demand\.sumo_routes: cannot read city\.rou\.xml"
                                            r"\.gz"):
        load_scenario(path).build_city()
