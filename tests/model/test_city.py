"""Behaviour of a running city: conservation, safety, determinism, outputs."""

from __future__ import annotations

import io
import itertools

import pyarrow.parquet as pq
import pytest

from citytwin.agents.detectors import LoopDetector
from citytwin.agents.signals import SignalController
from citytwin.agents.vehicles import Vehicle
from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.demand import Demand, Flow, Trip
from citytwin.model.grid import grid_network
from citytwin.model.network import NetworkBuilder, Phase, SignalProgram
from tests.conftest import make_city
from tests.invariants import step_checked as _step_checked


def test_busy_grid_is_safe_and_conserves_vehicles(small_city):
    seen = _step_checked(small_city, 900)
    k = small_city.kpis()
    assert seen["entries"] > 500 and seen["pairs"] > 1000  # the checks had work to do
    assert k["vehicles_arrived"] > 0.8 * k["vehicles_inserted"]
    assert k["teleports"] == 0
    assert k["lane_changes"] > 0


def test_unsignalised_grid_is_safe(rng):
    net = grid_network(3, 3, lanes=1, signalised=False, edge_length=120.0)
    city = make_city(net, vehs_per_hour=1500, end=400, seed=3)
    seen = _step_checked(city, 700)
    assert seen["entries"] > 200
    assert city.kpis()["vehicles_arrived"] > 0.8 * city.kpis()["vehicles_inserted"]


def test_kernels_run_on_one_numba_thread_and_give_the_setting_back(monkeypatch):
    """Numba's OpenMP workers, left at the default count, spin between kernel calls and slowed
    every other simulation on the machine (two on 2 cores: 3-16x each). The tick kernel runs
    with one thread, and the caller's own setting comes back after every call."""
    import numba

    from citytwin.model import city as city_module

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread on this machine")
    seen = []
    real = city_module.run_ticks

    def spy(*args):
        seen.append(numba.get_num_threads())
        return real(*args)

    monkeypatch.setattr(city_module, "run_ticks", spy)
    city = make_city(grid_network(2, 2, lanes=1, edge_length=120.0), vehs_per_hour=600,
                     end=60, seed=1)
    numba.set_num_threads(2)
    city.run_for(30)
    city.step()
    assert len(seen) >= 2 and set(seen) == {1}
    assert numba.get_num_threads() == 2


def _parquet_bytes(table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_same_seed_same_bytes_and_other_seed_differs(small_grid):
    def run(seed):
        city = make_city(small_grid, seed=seed, reroute_period=60.0, mesa_agents=False)
        city.run_for(700)
        k = {key: v for key, v in city.kpis().items()
             if key not in ("step_wall_seconds", "updates_per_second")}
        return _parquet_bytes(city.trips_table()), k, _parquet_bytes(city.summary_table())
    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert a[0] != c[0]


def test_trip_records_have_tripinfo_semantics(small_grid):
    city = make_city(small_grid, vehs_per_hour=600, end=300)
    city.run_for(900)
    t = city.trips_table().to_pydict()
    assert len(t["id"]) == city.kpis()["vehicles_arrived"] > 20
    for k in range(len(t["id"])):
        assert t["duration"][k] == pytest.approx(t["arrival"][k] - t["depart"][k])
        assert 0 <= t["waiting_time"][k] <= t["time_loss"][k] + 1e-9 <= t["duration"][k]
        assert t["depart_delay"][k] >= 0
        # Never faster than the speed limit allows.
        assert t["duration"][k] >= t["route_length"][k] / 13.89 - 1.0
    assert t["arrival"] == sorted(t["arrival"])


def test_free_flow_trip_matches_kinematics():
    """A lone vehicle on an empty straight road: duration = distance / speed plus the time
    IDM needs to accelerate, no waiting and (almost) no time loss once at speed."""
    net = grid_network(1, 3, lanes=1, signalised=False, edge_length=300.0)
    trip = Trip("solo", 0.0, "r0c0_W_r0c0", "r0c2_r0c2_E")
    city = City(net, Demand(trips=[trip]), rng=1)
    city.run_for(200)
    row = city.trips_table().to_pylist()[0]
    assert row["waiting_time"] == 0
    assert row["stops"] == 0
    free = row["route_length"] / 13.89
    assert free <= row["duration"] <= free + 3.0


def test_vehicle_waits_when_there_is_no_room_to_depart():
    net = grid_network(1, 1, lanes=1, edge_length=100.0, attach_length=30.0)
    flow = Flow("f", 0.0, 20.0, "r0c0_W_r0c0", "r0c0_r0c0_E", number=20)
    city = City(net, Demand(flows=[flow]), rng=1)
    city.run_for(400)
    t = city.trips_table().to_pydict()
    assert len(t["id"]) == 20
    assert max(t["depart_delay"]) > 5  # 20 vehicles in 20 s do not fit on a 23 m edge
    assert t["depart"] == sorted(t["depart"])  # first in, first out per edge


def _red_forever_network():
    b = NetworkBuilder()
    for jid, x in (("a", 0.0), ("m", 100.0), ("z", 300.0)):
        b.add_junction(jid, x, 0.0)
    b.add_edge("in", "a", "m", [(100.0, 13.89)])
    b.add_edge("out", "m", "z", [(200.0, 13.89)])
    b.add_signal_program(SignalProgram("m", (Phase(60.0, "r"),)), ["m"])
    b.add_connection("in", 0, "out", 0, length=5.0, tls="m", link_index=0)
    b.derive_conflicts()
    return b.build()


def test_jam_that_cannot_resolve_is_teleported_and_counted():
    net = _red_forever_network()
    trips = [Trip(f"v{k}", float(k * 3), "in", "out") for k in range(5)]
    city = City(net, Demand(trips=trips), rng=1, config=SimConfig(time_to_teleport=30.0))
    city.run_for(35)
    assert city.kpis()["teleports"] == 0  # queued at the red, not yet timed out
    city.run_until_done(1000)
    k = city.kpis()
    assert k["teleports"] == 5  # each head of the queue in turn
    assert k["vehicles_arrived"] == 5 and k["vehicles_running_end"] == 0
    rows = city.trips_table().to_pylist()
    assert all(r["waiting_time"] >= 30 for r in rows)


def test_teleports_can_be_switched_off():
    net = _red_forever_network()
    city = City(net, Demand(trips=[Trip("v", 0.0, "in", "out")]), rng=1,
                config=SimConfig(time_to_teleport=0.0))
    city.run_for(600)
    assert city.kpis()["teleports"] == 0 and city.fleet.n_running == 1


def test_rerouting_changes_routes_under_congestion(small_grid):
    city = make_city(small_grid, vehs_per_hour=4000, reroute_period=30.0, mesa_agents=False)
    city.run_for(300)
    assert city.reroute() >= 0
    n_before = city.fleet.n_route
    city.run_for(300)
    assert city.fleet.n_route > n_before  # some vehicles took new routes


def test_mesa_views(small_city):
    small_city.run_for(120)
    assert len(small_city.agents_by_type[SignalController]) == 9
    ctrl = small_city.agents_by_type[SignalController].to_list()[0]
    assert len(ctrl.state) == len(small_city.network.programs[0].phases[0].state)
    vehicles = small_city.agents_by_type[Vehicle]
    assert len(vehicles) == small_city.fleet.n_running > 0
    v = vehicles.to_list()[0]
    assert v.edge is None or v.edge in small_city.network.edge_index
    assert v.route and v.position >= 0
    assert LoopDetector not in small_city.agents_by_type  # static program: no detectors
    df = small_city.datacollector.get_model_vars_dataframe()
    assert len(df) >= 2 and df["running"].iloc[-1] == small_city.fleet.n_running


def test_actuated_signals_use_detectors():
    net = grid_network(2, 2, lanes=1, actuated=True, min_green=5.0, max_green=40.0)
    city = make_city(net, vehs_per_hour=800, end=600)
    city.run_for(600)
    dets = city.agents_by_type[LoopDetector]
    assert len(dets) == 16  # one per approach lane of 4 junctions
    assert sum(d.count for d in dets) > 100
    assert city.kpis()["vehicles_arrived"] > 50


def test_summary_and_junction_tables(small_city):
    small_city.run_for(600)
    s = small_city.summary_table().to_pydict()
    assert s["end"][-1] == 600.0 and len(s["end"]) == 10
    assert sum(s["inserted"]) == small_city.kpis()["vehicles_inserted"]
    j = small_city.junctions_table().to_pydict()
    assert set(j["junction"]) == {f"r{r}c{c}" for r in range(3) for c in range(3)}
    assert sum(j["vehicles"]) > 0 and max(j["queue_max"]) > 0


def test_user_loop_detectors_count_passing_vehicles():
    net = grid_network(1, 1, lanes=1, signalised=False, edge_length=100.0,
                       attach_length=200.0)
    flow = Flow("f", 0.0, 300.0, "r0c0_W_r0c0", "r0c0_r0c0_E", number=30)
    city = City(net, Demand(flows=[flow]), rng=1,
                detectors=[("in", "r0c0_W_r0c0_0", 100.0), ("out", "r0c0_r0c0_E_0", 150.0),
                           ("start", "r0c0_r0c0_E_0", 0.0)])
    city.run_for(600)
    dets = {d.detector_id: d for d in city.agents_by_type[LoopDetector]}
    # (a loop at a lane's very start counts the fronts that enter the lane across it)
    assert dets["in"].count == dets["out"].count == dets["start"].count == 30
    # ~30 vehicles of 5 m at about 13.9 m/s: each covers the loop for about 0.4 s.
    assert 5.0 <= dets["in"].occupied_seconds <= 40.0


def test_bad_detectors_are_rejected(small_grid):
    from citytwin.errors import NetworkError
    with pytest.raises(NetworkError, match="unknown lane"):
        City(small_grid, Demand(), rng=1, detectors=[("d", "nope_0", 1.0)])
    with pytest.raises(NetworkError, match="outside lane"):
        City(small_grid, Demand(), rng=1, detectors=[("d", "r0c0_r0c1_0", 1e6)])


def test_mutual_yielding_does_not_deadlock():
    """Two minor streams that must each yield to the other (as SUMO's joined junctions have):
    standing vehicles take turns, longest waiting first, and never share the junction."""
    b = NetworkBuilder()
    for j, (x, y) in {"w": (0, 0), "s": (100, -100), "m": (100, 0), "e": (200, 0),
                      "n": (100, 100)}.items():
        b.add_junction(j, x, y)
    b.add_edge("in1", "w", "m", [(100.0, 13.89)])
    b.add_edge("in2", "s", "m", [(100.0, 13.89)])
    b.add_edge("out1", "m", "e", [(100.0, 13.89)])
    b.add_edge("out2", "m", "n", [(100.0, 13.89)])
    a = b.add_connection("in1", 0, "out1", 0, length=10.0, state="m")
    c = b.add_connection("in2", 0, "out2", 0, length=10.0, state="m")
    b.set_conflicts(a, [c], [c])
    b.set_conflicts(c, [a], [a])
    net = b.build()
    demand = Demand(flows=[Flow("f1", 0, 300, "in1", "out1", period=4.0),
                           Flow("f2", 0, 300, "in2", "out2", period=4.0)])
    city = City(net, demand, rng=1)
    _step_checked(city, 900)
    k = city.kpis()
    assert k["vehicles_arrived"] == k["vehicles_demand"] == 150 and k["teleports"] == 0


def test_lane_is_chosen_ahead_of_a_chain_of_short_edges():
    """Only the left lane of a 3 m edge leads on: vehicles must pick it on the edge before,
    since a 3 m lane leaves no room to change (a SUMO import has many such edges)."""
    b = NetworkBuilder()
    for j, x in {"a": 0, "b": 300, "c": 303, "d": 500}.items():
        b.add_junction(j, x, 0)
    b.add_edge("long", "a", "b", [(300.0, 13.89)] * 2)
    b.add_edge("short", "b", "c", [(3.0, 13.89)] * 2)
    b.add_edge("exit", "c", "d", [(200.0, 13.89)])
    for k in range(2):
        b.add_connection("long", k, "short", k, length=2.0)
    b.add_connection("short", 1, "exit", 0, length=2.0)
    b.derive_conflicts()
    net = b.build()
    demand = Demand(flows=[Flow("f", 0, 300, "long", "exit", period=6.0)])
    city = City(net, demand, rng=1)
    _step_checked(city, 500)
    k = city.kpis()
    assert k["vehicles_arrived"] == k["vehicles_demand"] == 50 and k["teleports"] == 0


def _fork(mid: float):
    """in (200 m) -> mid (``mid`` m), both two lanes, lane to lane; from ``mid``, lane 0 leads
    to exit and lane 1 to on (200 m each)."""
    b = NetworkBuilder()
    for j, (x, y) in {"a": (0, 0), "b": (200, 0), "c": (200 + mid, 0), "d": (400 + mid, 0),
                      "e": (400 + mid, 50)}.items():
        b.add_junction(j, x, y)
    b.add_edge("in", "a", "b", [(200.0, 13.89)] * 2)
    b.add_edge("mid", "b", "c", [(mid, 13.89)] * 2)
    b.add_edge("exit", "c", "d", [(200.0, 13.89)])
    b.add_edge("on", "c", "e", [(200.0, 13.89)])
    for k in range(2):
        b.add_connection("in", k, "mid", k, length=2.0)
    b.add_connection("mid", 0, "exit", 0, length=2.0)
    b.add_connection("mid", 1, "on", 0, length=2.0)
    b.derive_conflicts()
    return b.build()


def test_vehicle_departs_on_the_lane_its_route_needs_further_on():
    """SUMO's departLane="best": both lanes of the first edge lead to the next one, but only
    one lane of that one leads on to each exit, so each vehicle departs on the lane that
    leads to its exit, not on the first lane with room."""
    net = _fork(100.0)
    city = City(net, Demand(trips=[Trip("t", 0.0, "in", "on"), Trip("s", 0.0, "in", "exit")]),
                rng=1)
    city.step()
    veh, ids = city.fleet.veh, city.fleet.trip_ids
    lane_of = {ids[veh.trip[i]]: net.lane_ids[veh.lane[i]]
               for i in range(veh.alive.shape[0]) if veh.alive[i]}
    assert lane_of == {"t": "in_1", "s": "in_0"}


@pytest.mark.parametrize("wait", [-0.5, 5.5])
def test_wait_point_outside_its_connection_is_rejected(wait):
    from citytwin.errors import NetworkError
    b = NetworkBuilder()
    for j, x in {"a": 0, "b": 100, "c": 200}.items():
        b.add_junction(j, x, 0)
    b.add_edge("in", "a", "b", [(100.0, 13.89)])
    b.add_edge("out", "b", "c", [(100.0, 13.89)])
    with pytest.raises(NetworkError, match="wait must be within its length"):
        b.add_connection("in", 0, "out", 0, length=5.0, wait=wait)


def test_vehicle_on_a_dead_end_lane_shorter_than_itself_changes_off_it():
    """A vehicle that reached the wrong lane of a 0.2 m edge (Berlin's Rudower Chaussee has
    one: those that could not change before it stood there until teleported) changes lanes
    from where it stands, as SUMO's vehicles do, and drives on."""
    net = _fork(0.2)
    city = City(net, Demand(trips=[Trip("t", 0.0, "in", "exit")]), rng=1)
    city.step()
    veh = city.fleet.veh
    (i,) = [k for k in range(veh.alive.shape[0]) if veh.alive[k]]
    dead_end = list(net.lane_ids).index("mid_1")
    veh.lane[i], veh.pos[i], veh.speed[i] = dead_end, 0.2 - 0.1 - 1e-12, 0.0
    veh.ridx[i], veh.next_conn[i], veh.reach_lane[i] = 1, -1, -1
    _step_checked(city, 120)
    k = city.kpis()
    assert k["vehicles_arrived"] == 1 and k["teleports"] == 0 and k["lane_changes"] == 1


def test_vehicle_departs_from_an_edge_shorter_than_itself():
    b = NetworkBuilder()
    for j, x in {"a": 0, "b": 3, "c": 203}.items():
        b.add_junction(j, x, 0)
    b.add_edge("stub", "a", "b", [(3.0, 13.89)])
    b.add_edge("road", "b", "c", [(200.0, 13.89)])
    b.add_connection("stub", 0, "road", 0, length=2.0)
    net = b.build()
    city = City(net, Demand(flows=[Flow("f", 0, 60, "stub", "road", period=10.0)]), rng=1)
    _step_checked(city, 200)
    k = city.kpis()
    assert k["vehicles_arrived"] == 6 and k["teleports"] == 0


def test_left_turner_waits_inside_and_lets_its_lane_drive_on(small_grid):
    """A permissive left turner waits for a gap at its wait point inside the junction, off its
    approach lane, so that through vehicles behind it on that lane drive on (SUMO's internal
    junctions); without wait points they would queue behind it at the stop line."""
    city = make_city(small_grid, vehs_per_hour=3000.0)
    net, nn = small_grid, small_grid.n_normal_lanes
    passed = 0
    for _ in range(600):
        city.step()
        veh = city.fleet.veh
        inside = [i for i in range(veh.alive.size) if veh.alive[i] and veh.lane[i] >= nn]
        for i in inside:
            c = int(veh.lane[i]) - nn
            if net.conn_wait[c] < 0 or veh.speed[i] >= 0.1 or veh.pos[i] > net.conn_wait[c]:
                continue
            passed += sum(1 for j in inside if veh.lane[j] - nn != c and veh.speed[j] > 1.0
                          and net.conn_from_lane[veh.lane[j] - nn] == net.conn_from_lane[c])
    assert passed > 0


def test_vehicles_brake_late_for_a_slower_junction_lane():
    """A turn with a lower speed limit: the vehicle keeps its speed until braking at its
    comfortable deceleration gets it to the turn's limit at the stop line (as SUMO's do), and
    enters the turn at that limit, not faster."""
    b = NetworkBuilder()
    for jid, x in (("a", 0.0), ("m", 400.0), ("z", 600.0)):
        b.add_junction(jid, x, 0.0)
    b.add_edge("in", "a", "m", [(400.0, 13.89)])
    b.add_edge("out", "m", "z", [(200.0, 13.89)])
    b.add_connection("in", 0, "out", 0, length=8.0, speed=5.0)
    b.derive_conflicts()
    net = b.build()
    city = City(net, Demand(trips=[Trip("v", 0.0, "in", "out")]), rng=1,
                config=SimConfig(mesa_agents=False))
    veh, decel = city.fleet.veh, city.vtypes[0].decel
    approach, turn = [], []  # (distance to the stop line, speed) before it; speeds in the turn
    for _ in range(60):
        city.step()
        i = int(veh.alive.nonzero()[0][0])
        if veh.lane[i] == 0:
            approach.append((400.0 - float(veh.pos[i]), float(veh.speed[i])))
        elif veh.lane[i] == net.n_normal_lanes:
            turn.append(float(veh.speed[i]))
        else:
            break
    top = max(v for _, v in approach)
    assert top > 13.0 and turn
    braking = (top**2 - 5.0**2) / (2 * decel) + 2 * top  # braking distance and 2 s of driving
    assert min(v for d, v in approach if d >= braking) >= top - 0.05  # no early braking
    assert max(turn) <= 5.0 + 1e-6
    assert all(x - y <= decel + 1e-6 for (_, x), (_, y) in itertools.pairwise(approach))
