"""Safety of every signal strategy, checked by the conflict monitor (an independent check built
from the network's foe relations): no conflicting greens, minimum green, yellow and all-red
before every change, also when emergency vehicles pre-empt the signals."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from citytwin.agents.conflict_monitor import ConflictMonitor, MonitorTiming
from citytwin.errors import ScenarioError
from citytwin.model.city import City
from citytwin.model.demand import Demand, Trip, VehicleType
from citytwin.model.grid import grid_network
from citytwin.model.routing import fringe_edges, random_trips, shortest_routes
from citytwin.model.signal_policy import (
    ActuatedParams,
    MaxPressureParams,
    PreemptionParams,
    SignalPolicy,
    SotlParams,
)
from citytwin.model.sumo_net import read_sumo_net
from tests.agents.test_conflict_monitor import DATA

STAGED = ("fixed", "actuated", "max-pressure", "sotl", "green-wave")
_SUMO = {name: read_sumo_net(DATA / name) for name in ("grid3_tls.net.xml",
                                                          "grid2_sidewalks.net.xml")}


def _city(net, policy: SignalPolicy, vph: float, seed: int, n_ev: int) -> City:
    rng = np.random.default_rng(seed)
    trips = random_trips(net, begin=0, end=300, vehs_per_hour=vph, rng=rng)
    demand = Demand(trips=trips)
    demand.add_vtype(VehicleType("ambulance", priority=1, speed_factor=1.2, length=6.5))
    starts, ends = fringe_edges(net)
    ptr, _ = shortest_routes(net, starts.repeat(ends.size), np.tile(ends, starts.size))
    pairs = [(int(a), int(b)) for q, (a, b) in enumerate(
        zip(starts.repeat(ends.size), np.tile(ends, starts.size), strict=True))
        if ptr[q + 1] - ptr[q] >= 2]
    for i in range(n_ev):
        a, b = pairs[int(rng.integers(len(pairs)))]
        demand.trips.append(Trip(f"ev{i}", float(rng.uniform(0, 250)), net.edge_ids[a],
                                 net.edge_ids[b], "ambulance"))
    return City(net, demand, rng=seed, signals=policy)


def run_monitored(city: City, ticks: int) -> dict[str, int]:
    """Step ``city`` and let a conflict monitor per junction check every state shown."""
    pol = city.signal_policy
    timing = MonitorTiming(min_green=pol.min_green, yellow=pol.yellow, red_clear=pol.all_red)
    net = city.network
    mons = [ConflictMonitor(net, k, timing, city.signals.state_of(k))
            for k in range(len(net.programs))]
    changes = 0
    for _ in range(ticks):
        t = city.sim_time
        city.step()
        for k, mon in enumerate(mons):
            state = city.signals.state_of(k)
            if state != mon.state:
                why = mon.check(state, t)
                assert why is None, f"{net.tls_ids[k]} at t={t:g}: {why}"
                mon.commit(state, t)
                changes += 1
    return {"changes": changes, "preemptions": city.kpis().get("preemptions", 0)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net_kind=st.sampled_from(["grid", "grid3_tls.net.xml", "grid2_sidewalks.net.xml"]),
       rows=st.integers(1, 3), cols=st.integers(1, 3), lanes=st.integers(1, 2),
       policy=st.sampled_from(STAGED), vph=st.floats(300, 4000), seed=st.integers(0, 10**6),
       min_green=st.floats(3, 12), yellow=st.floats(2, 5), all_red=st.floats(0, 3),
       n_ev=st.integers(0, 3))
def test_no_conflicting_greens_and_timings_honoured(net_kind, rows, cols, lanes, policy, vph,
                                                     seed, min_green, yellow, all_red, n_ev):
    net = (grid_network(rows, cols, lanes=lanes, edge_length=150.0) if net_kind == "grid"
           else _SUMO[net_kind])
    mg, y, ar = round(min_green), round(yellow), round(all_red)
    pol = SignalPolicy(policy=policy, yellow=y, all_red=ar, min_green=mg,
                       actuated=ActuatedParams(min_green=mg, max_green=mg + 20),
                       max_pressure=MaxPressureParams(min_green=mg, max_green=mg + 30),
                       sotl=SotlParams(min_green=mg),
                       preemption=PreemptionParams(eta=25.0, max_hold=60.0))
    try:
        city = _city(net, pol, vph, seed, n_ev)
    except ScenarioError as exc:  # a green wave needs a route through two signals
        assert policy == "green-wave" and "two signalised junctions" in str(exc)
        assume(False)
    seen = run_monitored(city, 360)
    assert seen["changes"] > 0


def test_preemption_goes_through_clearance_and_serves_the_vehicle():
    """A pre-empted junction still shows yellow and all red before the ambulance's green, and
    the ambulance meets no red signal where it was requested in time."""
    net = grid_network(1, 4, lanes=2, edge_length=200.0, attach_length=400.0)
    for policy in STAGED:
        pol = SignalPolicy(policy=policy)
        demand = Demand(trips=random_trips(net, begin=0, end=600, vehs_per_hour=1500,
                                           rng=np.random.default_rng(3)))
        demand.add_vtype(VehicleType("ambulance", priority=1, length=6.5))
        route = ("r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c2", "r0c2_r0c3", "r0c3_r0c3_E")
        demand.trips += [Trip(f"amb{i}", 60.0 + 120 * i, route[0], route[-1], "ambulance",
                              route) for i in range(4)]
        city = City(net, demand, rng=3, signals=pol)
        seen = run_monitored(city, 800)
        k = city.kpis()
        assert seen["preemptions"] >= 4 * 4 - 2, policy
        assert k["emergency_trips"] == 4
        assert k["emergency_red_signals"] == 0, policy


def test_the_corridor_is_requested_at_dispatch():
    """An ambulance due to depart within the pre-emption horizon already requests the
    junctions it will reach within it: the first one shows its movement green before it
    departs (the queue there has left), not only once it is on the road."""
    net = grid_network(1, 4, lanes=2, edge_length=200.0, attach_length=100.0)
    demand = Demand(trips=random_trips(net, begin=0, end=120, vehs_per_hour=1500,
                                       rng=np.random.default_rng(3)))
    demand.add_vtype(VehicleType("ambulance", priority=1, length=6.5))
    route = ("r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c2", "r0c2_r0c3", "r0c3_r0c3_E")
    demand.trips.append(Trip("amb", 60.0, route[0], route[-1], "ambulance", route))
    city = City(net, demand, rng=3, signals=SignalPolicy(
        policy="fixed", preemption=PreemptionParams(eta=30.0)))
    amb = city.fleet.trip_ids.index("amb")
    e_in, e_out = net.edge(route[0]), net.edge(route[1])
    c = next(c for c in range(net.n_connections) if net.conn_from_edge[c] == e_in
             and net.conn_to_edge[c] == e_out)
    k, link = int(net.conn_tls[c]), int(net.conn_link[c])
    run_monitored(city, 59)
    assert city.fleet.trips.state[amb] == 0  # not departed yet
    assert city.kpis()["preemptions"] >= 1
    assert city.signals.state_of(k)[link] == "G"


def test_without_preemption_ambulances_meet_red_signals():
    net = grid_network(1, 4, lanes=2, edge_length=200.0, attach_length=400.0)
    pol = SignalPolicy(policy="fixed", preemption=PreemptionParams(enabled=False))
    demand = Demand(trips=random_trips(net, begin=0, end=600, vehs_per_hour=1500,
                                       rng=np.random.default_rng(3)))
    demand.add_vtype(VehicleType("ambulance", priority=1, length=6.5))
    route = ("r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c2", "r0c2_r0c3", "r0c3_r0c3_E")
    demand.trips += [Trip(f"amb{i}", 60.0 + 120 * i, route[0], route[-1], "ambulance", route)
                     for i in range(4)]
    city = City(net, demand, rng=3, signals=pol)
    city.run_for(800)
    k = city.kpis()
    assert k["preemptions"] == 0 and k["emergency_red_signals"] > 0


def test_a_device_can_take_and_return_a_staged_junction():
    """The HIL bridge's hold/release on a junction that runs a strategy: while held, the
    stage machine leaves it alone; released (after the device's clearance), it starts again at
    its first stage."""
    net = grid_network(2, 2, lanes=2, edge_length=150.0)
    city = _city(net, SignalPolicy(policy="max-pressure"), 1500.0, 5, 0)
    city.run_for(30)
    k = 0
    n = city.signals.n_links(k)
    city.signals.hold(k, "r" * n)
    for _ in range(20):
        city.step()
        assert city.signals.state_of(k) == "r" * n
        assert set(city.lanes.conn_state[net.conn_tls == k].tolist()) == {0}
    city.signals.release(k)
    city.step()
    assert city.signals.state_of(k) == city.control.stage_states(k)[0]
    assert city.control.arrays.t_mode[k] == 1.0
    run_monitored(city, 200)
