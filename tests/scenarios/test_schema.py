"""Scenario files: valid files load, every kind of broken file is answered with a
ScenarioError that starts with the file path and names the field."""

from __future__ import annotations

import re

import pytest

from citytwin.errors import ScenarioError
from citytwin.scenarios import builtin_scenarios, load_scenario
from citytwin.scenarios.schema import MAX_DURATION
from tests.conftest import TINY_SCENARIO

GRID_TABLE = """[network.grid]
rows = 2
cols = 2
edge_length = 100.0
attach_length = 60.0
lanes = 1
cycle = 40.0"""


def _error(write_toml, text: str, *, build: bool = False) -> str:
    path = write_toml(text)
    with pytest.raises(ScenarioError) as info:
        scenario = load_scenario(path)
        if build:
            scenario.build_city()
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


def test_tiny_scenario_loads_with_every_table(tiny_scenario):
    sc = load_scenario(tiny_scenario)
    assert sc.name == "tiny" and sc.description == "a 2x2 test grid" and sc.seed == 3
    assert sc.path == tiny_scenario.resolve()
    assert re.fullmatch(r"[0-9a-f]{64}", sc.sha256)
    spec = sc.spec
    assert spec.duration == 120 and spec.max_duration == MAX_DURATION
    assert spec.network.grid.rows == 2 and spec.network.grid.speed == 13.89  # default kept
    assert spec.demand.flows[0].from_edge == "r0c0_W_r0c0"
    assert spec.demand.trips[0].depart_speed == "max"
    assert spec.demand.random.profile == [[0, 0.5], [50, 1.0], [100, 0.5]]
    assert spec.vtypes[0].to_vtype().accel == 2.0
    assert spec.simulation.to_config().reroute_period == 60
    assert spec.detectors[0].lane == "r0c0_r0c1_0"


def test_minimal_file_takes_documented_defaults(write_toml):
    sc = load_scenario(write_toml(f'name = "m"\n{GRID_TABLE}\n[[demand.trips]]\nid = "a"\n'
                                  'depart = 0\nfrom = "r0c0_W_r0c0"\nto = "r0c1_r0c1_E"\n'))
    spec = sc.spec
    assert (spec.seed, spec.duration, spec.description) == (0, None, "")
    assert spec.simulation.to_config().dt == 1.0
    assert spec.vtypes == [] and spec.detectors == []


def test_builtin_scenarios_all_validate_and_build():
    found = builtin_scenarios()
    assert "downtown" in found and "rush hour" in found["downtown"]
    for name in found:
        sc = load_scenario(name)
        assert sc.name == name
        city = sc.build_city()
        assert len(city.fleet.trip_ids) > 0


def test_downtown_is_the_described_grid():
    sc = load_scenario("downtown")
    grid = sc.spec.network.grid
    assert (grid.rows, grid.cols, grid.lanes, grid.edge_length, grid.signalised) == \
        (6, 6, 2, 200.0, True)
    assert sc.spec.simulation.reroute_period == 120
    rnd = sc.spec.demand.random
    assert (rnd.begin, rnd.end) == (0, 3600)
    assert max(p[1] for p in rnd.profile) > min(p[1] for p in rnd.profile)  # a peak


def test_unknown_builtin_name_lists_the_available_ones():
    with pytest.raises(ScenarioError, match=r"unknown scenario 'nowhere'.*downtown"):
        load_scenario("nowhere")


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "gone.toml")


BROKEN = {
    "toml syntax": (TINY_SCENARIO.replace('name = "tiny"', 'name = "tiny'),
                    r":1:13: invalid TOML"),
    "toml syntax later line": (TINY_SCENARIO.replace("rows = 2", "rows ="),
                               r":7:\d+: invalid TOML"),
    "unknown key": (TINY_SCENARIO.replace("vehs_per_hour = 360", "vehs_per_hr = 360"),
                    r"demand\.flows\[0\]\.vehs_per_hr: unknown key \(did you mean "
                    r"'vehs_per_hour'\?\)"),
    "unknown table": (TINY_SCENARIO + "\n[simulatoin]\ndt = 1\n",
                      r"simulatoin: unknown key \(did you mean 'simulation'\?\)"),
    "wrong type": (TINY_SCENARIO.replace("rows = 2", 'rows = "two"'),
                   r"network\.grid\.rows: must be an integer, got 'two'"),
    "float for int": (TINY_SCENARIO.replace("rows = 2", "rows = 2.5"),
                      r"network\.grid\.rows: must be an integer"),
    "string for bool": (TINY_SCENARIO.replace("lanes = 1", 'lanes = 1\nsignalised = "yes"'),
                        r"network\.grid\.signalised: must be true or false"),
    "table for array": (TINY_SCENARIO.replace("[[demand.flows]]", "[demand.flows]"),
                        r"demand\.flows: must be an array"),
    "negative value": (TINY_SCENARIO.replace("vehs_per_hour = 360", "vehs_per_hour = -360"),
                       r"demand\.flows\[0\]\.vehs_per_hour: must be > 0"),
    "negative seed": (TINY_SCENARIO.replace("seed = 3", "seed = -1"), r": seed: must be >= 0"),
    "zero duration": (TINY_SCENARIO.replace("duration = 120", "duration = 0"),
                      r": duration: must be > 0"),
    "too many lanes": (TINY_SCENARIO.replace("lanes = 1", "lanes = 9"),
                       r"network\.grid\.lanes: must be <= 6"),
    "missing key": (TINY_SCENARIO.replace("rows = 2\n", ""),
                    r"network\.grid\.rows: required key is missing"),
    "missing name": (TINY_SCENARIO.replace('name = "tiny"\n', ""),
                     r": name: required key is missing"),
    "both networks": (TINY_SCENARIO.replace("[network.grid]",
                                            '[network]\nsumo_net = "c.net.xml"\n\n'
                                            "[network.grid]"),
                      r": network: set exactly one of sumo_net"),
    "no network source": (TINY_SCENARIO.replace(GRID_TABLE, "[network]"),
                          r": network: set exactly one of sumo_net"),
    "not a net file": (TINY_SCENARIO.replace(GRID_TABLE, '[network]\nsumo_net = "c.xml"'),
                       r"network: sumo_net must name a \.net\.xml"),
    "two flow rates": (TINY_SCENARIO.replace("vehs_per_hour = 360",
                                             "vehs_per_hour = 360\nperiod = 3"),
                       r"demand\.flows\[0\]: set exactly one of vehs_per_hour, period, "
                       r"probability, number \(got vehs_per_hour, period\)"),
    "probability above 1": (TINY_SCENARIO.replace("vehs_per_hour = 360", "probability = 2"),
                            r"demand\.flows\[0\]\.probability: must be <= 1"),
    "flow ends before it begins": (TINY_SCENARIO.replace("end = 100\nvehs_per_hour = 360",
                                                         "end = 0\nvehs_per_hour = 360"),
                                   r"demand\.flows\[0\]: end \(0\) must be after begin"),
    "trip without destination": (TINY_SCENARIO.replace(
        'route = ["r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c1_E"]', 'from = "r0c0_W_r0c0"'),
        r"demand\.trips\[0\]: needs from and to, or a route"),
    "from disagrees with route": (TINY_SCENARIO.replace("depart = 5",
                                                        'depart = 5\nfrom = "r0c0_r0c1"'),
                                  r"demand\.trips\[0\]: from = 'r0c0_r0c1' is not the "
                                  r"route's first edge"),
    "bad depart speed": (TINY_SCENARIO.replace("depart = 5", 'depart = 5\ndepart_speed = "x"'),
                         r'demand\.trips\[0\]\.depart_speed: must be a speed in m/s >= 0 or '
                         r'"max"'),
    "duplicate ids": (TINY_SCENARIO.replace('id = "solo"', 'id = "east"'),
                      r": demand: duplicate flow/trip id 'east'"),
    "bad profile": (TINY_SCENARIO.replace("[[0, 0.5], [50, 1.0], [100, 0.5]]",
                                          "[[0, 0.5], [50], [100, 0.5]]"),
                    r"demand\.random: profile must be \[\[time_s, multiplier\]"),
    "profile times go back": (TINY_SCENARIO.replace("[[0, 0.5], [50, 1.0], [100, 0.5]]",
                                                    "[[0, 0.5], [50, 1.0], [40, 0.5]]"),
                              r"demand\.random: profile times must increase"),
    "no demand": (TINY_SCENARIO[:TINY_SCENARIO.index("[demand]")] + "[demand]\n",
                  r": demand: no traffic"),
    "brakes weaker than comfort": (TINY_SCENARIO.replace("accel = 2.0", "decel = 10.0"),
                                   r"vtypes\[0\]: emergency_decel \(9\) must be >= decel"),
    "duplicate vtype": (TINY_SCENARIO + '\n[[vtypes]]\nid = "car"\n',
                        r": vtypes: duplicate id 'car'"),
    "summary shorter than tick": (TINY_SCENARIO.replace("summary_interval = 30",
                                                        "summary_interval = 0.5"),
                                  r"simulation: summary_interval \(0\.5\) must be >= dt"),
    "duration and max_duration": (TINY_SCENARIO.replace("duration = 120",
                                                        "duration = 120\nmax_duration = 30"),
                                  r": set duration .* or max_duration .*, not both"),
    "missing referenced file": (TINY_SCENARIO.replace(GRID_TABLE,
                                                      '[network]\nsumo_net = "city.net.xml"'),
                                r"network\.sumo_net: no such file 'city\.net\.xml' \(relative "
                                r"names are looked up in "),
    "missing routes file": (TINY_SCENARIO.replace("[demand]\n",
                                                  '[demand]\nsumo_routes = "city.rou.xml"\n'),
                            r"demand\.sumo_routes: no such file 'city\.rou\.xml'"),
}


@pytest.mark.parametrize("text, pattern", BROKEN.values(), ids=BROKEN.keys())
def test_broken_file_names_the_field(write_toml, text, pattern):
    message = _error(write_toml, text)
    assert re.search(pattern, message), message
    assert "\n" not in message  # one problem, one line
    assert "pydantic" not in message and "Input should" not in message


BROKEN_AGAINST_NETWORK = {
    "unknown edge in a flow": (TINY_SCENARIO.replace('from = "r0c0_W_r0c0"',
                                                     'from = "r0c0_W_r0c"'),
                               r"demand\.flows\[0\]\.from: unknown edge 'r0c0_W_r0c' \(did you "
                               r"mean 'r0c0_W_r0c0'\?\)"),
    "unknown edge in a route": (TINY_SCENARIO.replace('"r0c0_r0c1", "r0c1_r0c1_E"]',
                                                      '"nowhere", "r0c1_r0c1_E"]'),
                                r"demand\.trips\[0\]\.route\[1\]: unknown edge 'nowhere'"),
    "unknown vtype": (TINY_SCENARIO.replace('vtype = "car"', 'vtype = "truck"'),
                      r"demand\.flows\[0\]\.vtype: unknown vehicle type 'truck' \(defined: "
                      r"DEFAULT_VEHTYPE, car\)"),
    "unknown vtype of random trips": (TINY_SCENARIO.replace("[[0, 0.5], [50, 1.0], [100, 0.5]]",
                                                            '[[0, 1], [100, 1]]\nvtype = "bus"'),
                                      r"demand\.random\.vtype: unknown vehicle type 'bus'"),
    "route with a gap": (TINY_SCENARIO.replace('"r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c1_E"',
                                               '"r0c0_W_r0c0", "r0c1_r0c1_E"'),
                         r"demand\.trips\[0\]\.route: no connection from edge 'r0c0_W_r0c0' "
                         r"to 'r0c1_r0c1_E'"),
    "unreachable destination": (TINY_SCENARIO.replace('to = "r0c1_r0c1_E"',
                                                      'to = "r0c0_S_r0c0"'),
                                r"demand\.flows\[0\]: no route from edge 'r0c0_W_r0c0' to "
                                r"'r0c0_S_r0c0'"),
    "unknown detector lane": (TINY_SCENARIO.replace('lane = "r0c0_r0c1_0"',
                                                    'lane = "r0c0_r0c1_3"'),
                              r"detectors\[0\]\.lane: unknown lane 'r0c0_r0c1_3': edge "
                              r"'r0c0_r0c1' has lanes r0c0_r0c1_0"),
    "detector beyond the lane": (TINY_SCENARIO.replace("pos = 20.0", "pos = 2000.0"),
                                 r"detectors\[0\]\.pos: must be <= the length of lane"),
    "grid out of range": (TINY_SCENARIO.replace("cycle = 40.0", "cycle = 15.0"),
                          r"network\.grid: grid cycle 15\.0 s leaves 2\.5 s of green"),
    "random trip id clash": (TINY_SCENARIO.replace('id = "solo"', 'id = "rt0"'),
                             r": demand: duplicate vehicle id 'rt0'"),
}


@pytest.mark.parametrize("text, pattern", BROKEN_AGAINST_NETWORK.values(),
                         ids=BROKEN_AGAINST_NETWORK.keys())
def test_file_that_does_not_fit_its_network_names_the_field(write_toml, text, pattern):
    path = write_toml(text)
    load_scenario(path)  # valid on its own
    message = _error(write_toml, text, build=True)
    assert re.search(pattern, message), message


def test_many_problems_one_line_each(write_toml):
    path = write_toml(TINY_SCENARIO.replace("rows = 2", "rows = 0").replace("cols = 2",
                                                                          "cols = -1"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "network.grid.rows: must be >= 1" in lines[0]
    assert "network.grid.cols: must be >= 1" in lines[1]


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml: not UTF-8"):
        load_scenario(path)
