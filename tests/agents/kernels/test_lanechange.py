"""Lane changes around emergency vehicles: traffic makes way and never cuts in ahead, and an
emergency vehicle takes the lane that flows."""

from __future__ import annotations

import numpy as np

from citytwin.agents.kernels import lanechange as lc
from citytwin.agents.kernels.lanechange import BLUELIGHT_REACH
from citytwin.model.city import City
from citytwin.model.demand import Demand, Flow, Trip, VehicleType
from citytwin.model.network import NetworkBuilder
from tests.invariants import step_checked

SPEED = 13.89


def test_no_change_into_a_lane_just_ahead_of_an_emergency_vehicle():
    """A car 35 m ahead of a follower at 16 m/s may move in front of it (the follower would
    brake gently), but not when the follower is an emergency vehicle (it would have to
    react), and it never asks one to make room."""
    f64 = np.float64
    pos, speed = np.array([50.0, 90.0]), np.array([16.0, 14.0])
    order, span = np.array([0, 1], np.int32), np.array([[0, 1], [1, 2]], np.int32)
    lane_speed = np.array([SPEED, SPEED])

    def safe(follower_priority):
        vtype = np.array([1, 0], np.int32)
        t = {k: np.array(v, f64) for k, v in dict(
            length=[5.0, 6.5], min_gap=[2.5, 2.5], accel=[2.6, 2.6], decel=[4.5, 4.5],
            emergency=[9.0, 9.0], max_speed=[55.0, 55.0], tau=[1.0, 1.0], delta=[4.0, 4.0],
            speed_factor=[1.0, 1.2], priority=[0, follower_priority]).items()}
        ok, follower = lc._safe(1, 0, False, order, span, vtype, speed, pos, lane_speed,
                                t["length"], t["min_gap"], t["accel"], t["decel"],
                                t["emergency"], t["max_speed"], t["tau"], t["delta"],
                                t["speed_factor"], t["priority"], 1.0)
        coop = np.full(2, -1, np.int32)
        lc._ask_room(1, 0, order, span, pos, vtype, coop, t["length"], t["priority"])
        lc._let_in(1, 0, follower, order, span, speed, pos, vtype, coop, t["length"],
                   t["priority"])
        return ok, follower, int(coop[0])

    assert safe(0) == (True, 0, 1)
    assert safe(1) == (False, 0, -1)


def _road():
    """A straight two-lane road of 1,500 m, then a 200 m exit, both at 50 km/h."""
    b = NetworkBuilder()
    for j, x in {"a": 0.0, "b": 1500.0, "c": 1700.0}.items():
        b.add_junction(j, x, 0.0)
    b.add_edge("road", "a", "b", [(1500.0, SPEED)] * 2)
    b.add_edge("exit", "b", "c", [(200.0, SPEED)] * 2)
    for k in range(2):
        b.add_connection("road", k, "exit", k, length=2.0)
    b.derive_conflicts()
    return b.build()


def test_traffic_makes_way_for_an_emergency_vehicle_and_never_cuts_in_ahead():
    """Ten cars at the speed limit fill both lanes ahead of an ambulance that drives 20 %
    faster. Cars it closes in on move over (the one beside letting them in), so it passes
    them with little time lost; and no car ever changes into its lane close ahead of it.
    Without making way it stays behind them all the way (about 30 s lost)."""
    net = _road()
    demand = Demand(flows=[Flow("cars", 0.0, 10.0, "road", "exit", period=1.0)],
                    trips=[Trip("amb", 12.0, "road", "exit", "ambulance")])
    amb = VehicleType("ambulance", priority=1, speed_factor=1.2, length=6.5)
    demand.add_vtype(amb)
    city = City(net, demand, rng=1)
    nn = net.n_normal_lanes
    veh, types = city.fleet.veh, city.fleet.types
    amb_trip = city.fleet.trip_ids.index("amb")
    cut_ins = made_way = 0
    for _ in range(200):
        prev_lane = veh.lane.copy()
        prev_alive = veh.alive.copy()
        step_checked(city, 1)
        live = np.flatnonzero(veh.alive[: prev_alive.size] & prev_alive)
        ev = [i for i in live if veh.trip[i] == amb_trip]
        if not ev or veh.lane[ev[0]] >= nn:
            continue
        e = ev[0]
        reach = veh.speed[e] ** 2 / (2 * amb.decel) + BLUELIGHT_REACH
        for i in live:
            if i == e or veh.lane[i] >= nn or prev_lane[i] == veh.lane[i]:
                continue
            gap = veh.pos[i] - types.length[veh.vtype[i]] - veh.pos[e]
            if prev_lane[i] == prev_lane[e] and gap > -types.length[veh.vtype[i]]:
                made_way += 1
            if veh.lane[i] == veh.lane[e] and 0 <= gap < reach:
                cut_ins += 1
    tr = city.fleet.trips
    assert tr.state[amb_trip] == 2 and city.kpis()["teleports"] == 0
    free = tr.arrival[amb_trip] - tr.t_insert[amb_trip] - tr.time_loss[amb_trip]
    assert made_way >= 3
    assert cut_ins == 0
    assert tr.time_loss[amb_trip] < 0.05 * free, (tr.time_loss[amb_trip], free)


def _turn_queue_road():
    """A ramp onto the left lane of a 500 m two-lane road; at its end both lanes go straight
    on and the left lane also turns left onto a street driven at walking pace."""
    b = NetworkBuilder()
    for j, (x, y) in {"a": (0.0, 0.0), "m": (100.0, 0.0), "b": (600.0, 0.0),
                      "c": (800.0, 0.0), "d": (600.0, 200.0)}.items():
        b.add_junction(j, x, y)
    b.add_edge("ramp", "a", "m", [(100.0, SPEED)])
    b.add_edge("road", "m", "b", [(500.0, SPEED)] * 2)
    b.add_edge("exit", "b", "c", [(200.0, SPEED)] * 2)
    b.add_edge("left", "b", "d", [(200.0, 1.5)])
    b.add_connection("ramp", 0, "road", 1, length=2.0)
    for k in range(2):
        b.add_connection("road", k, "exit", k, length=2.0)
    b.add_connection("road", 1, "left", 0, length=8.0, direction="l", speed=1.5)
    b.derive_conflicts()
    return b.build()


def test_an_emergency_vehicle_leaves_a_lane_held_up_by_turning_traffic():
    """Cars from the ramp queue on the left lane to turn left at walking pace; they cannot
    make way (they need that lane). An ambulance from the ramp, going straight, takes the free
    lane while the queue is still far ahead, instead of closing in on it and braking."""
    net = _turn_queue_road()
    demand = Demand(flows=[Flow("turners", 0.0, 40.0, "ramp", "left", period=4.0)],
                    trips=[Trip("amb", 50.0, "ramp", "exit", "ambulance")])
    amb = VehicleType("ambulance", priority=1, speed_factor=1.2, length=6.5)
    demand.add_vtype(amb)
    city = City(net, demand, rng=1)
    veh, road = city.fleet.veh, net.edge("road")
    amb_trip = city.fleet.trip_ids.index("amb")
    changed_at = None  # distance to the last queued car when the ambulance left the lane
    for _ in range(150):
        step_checked(city, 1)
        e = np.flatnonzero(veh.alive & (veh.trip == amb_trip))
        if e.size == 0 or changed_at is not None:
            continue
        i = e[0]
        if net.lane_edge[veh.lane[i]] == road and veh.lane[i] == net.edge_first_lane[road]:
            queued = [veh.pos[j] for j in np.flatnonzero(veh.alive)
                      if veh.lane[j] == veh.lane[i] + 1 and veh.trip[j] != amb_trip]
            changed_at = min(queued) - veh.pos[i] if queued else np.inf
    tr = city.fleet.trips
    assert tr.state[amb_trip] == 2
    assert changed_at is not None and changed_at > 100.0, changed_at
    free = tr.arrival[amb_trip] - tr.t_insert[amb_trip] - tr.time_loss[amb_trip]
    assert tr.time_loss[amb_trip] < 0.03 * free, (tr.time_loss[amb_trip], free)
