"""Plain Mesa against citytwin on the same car-following: vehicle-updates/s and agreement.

K straight single-lane roads without junctions carry V vehicles. citytwin has them as a
network (``NetworkBuilder``, one edge per road, long enough that nobody reaches its end),
inserts the vehicles at the starts of the roads and steps until all are on. A plain Mesa model
then starts from exactly that state: one ``mesa.Agent`` per vehicle that finds its leader
through a per-road list the model keeps sorted by position, with citytwin's IDM parameters
and update rule (``follow`` then ``move``: every vehicle chooses its speed, then all move).
Both step the same ticks; printed are the vehicle-updates/s of both stepping loops, their
ratio, and the mean speeds and largest differences after the window.

    python benchmarks/mesa_baseline.py --vehicles 10000 --roads 100 --ticks 100
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from operator import attrgetter
from pathlib import Path

import mesa
import numpy as np

from citytwin.agents.kernels.idm import IDM_STEPPING, NUMERICAL_EPS
from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.demand import Demand, Trip, VehicleType
from citytwin.model.network import Network, NetworkBuilder

DT = 1.0            # s per tick (citytwin's default)
ROAD_SPEED = 13.89  # m/s speed limit of every road
_VT = VehicleType()  # citytwin's defaults (SUMO's passenger car)
LENGTH, S0, A, B, TAU = _VT.length, _VT.min_gap, _VT.accel, _VT.decel, _VT.tau
EMERGENCY = _VT.emergency_decel
VMAX = min(_VT.max_speed, ROAD_SPEED * _VT.speed_factor)
assert _VT.delta == 4.0  # the free-road term below is written for IDM's usual exponent


# -- plain Mesa -------------------------------------------------------------------------------
STEPS = max(1, int(DT / IDM_STEPPING + 0.5))  # SUMO's IDM sub-steps, as citytwin's
H = DT / STEPS
AH = A * H
INV_VMAX = 1.0 / VMAX
INV_2SQRT_AB = 0.5 / math.sqrt(A * B)


def free_speed(v: float) -> float:
    """The speed after a tick on a free road (citytwin's ``kernels.idm.idm_free_speed``,
    operation by operation)."""
    for _ in range(STEPS):
        x = v * INV_VMAX
        x2 = x * x
        v = max(0.0, v + AH * (1.0 - x2 * x2))
    return v


def follow_speed(v: float, gap: float, v_lead: float) -> float:
    """The speed after a tick behind a leader ``gap`` m ahead at ``v_lead`` (citytwin's
    ``kernels.idm.idm_speed``, operation by operation)."""
    for _ in range(STEPS):
        s_star = S0 + max(0.0, v * TAU + v * (v - v_lead) * INV_2SQRT_AB)
        r = s_star / max(gap, NUMERICAL_EPS)
        x = v * INV_VMAX
        x2 = x * x
        v = max(0.0, v + AH * (1.0 - x2 * x2 - r * r))
        gap -= max(0.0, (v - v_lead) * H)
    return v


class Car(mesa.Agent):
    """One vehicle: the front's position on its road and its speed."""

    def __init__(self, model: mesa.Model, trip: int, pos: float, speed: float) -> None:
        super().__init__(model)
        self.trip = trip
        self.pos = pos
        self.speed = speed
        self.speed_next = speed
        self.leader: Car | None = None

    def step(self) -> None:
        """Choose this tick's speed: IDM towards the leader (free road without one), at most
        emergency braking, never negative, and never into a leader braking at its hardest."""
        v = self.speed
        vs = free_speed(v)
        cap = math.inf
        lead = self.leader
        if lead is not None:
            gap = lead.pos - LENGTH - self.pos
            vs = min(vs, follow_speed(v, gap, lead.speed))
            cap = gap + max(0.0, lead.speed - EMERGENCY * DT) * DT
        vn = max(vs, v - EMERGENCY * DT)
        vn = min(max(vn, 0.0), VMAX if v < VMAX else v)
        if vn * DT > cap:
            vn = max(cap, 0.0) / DT
        self.speed_next = vn

    def advance(self) -> None:
        """Move with the chosen speed (Euler, as citytwin)."""
        self.speed = self.speed_next
        self.pos += self.speed * DT


class Highway(mesa.Model):
    """Cars on single-lane roads; each road is a list of its cars sorted by position."""

    def __init__(self, roads: list[list[tuple[int, float, float]]]) -> None:
        """Args:
            roads: per road, its cars as ``(trip, position, speed)``.
        """
        super().__init__()
        self.roads = [[Car(self, *car) for car in road] for road in roads]

    def step(self) -> None:
        """Re-sort each road, tell every car its leader, then all choose and all move."""
        for road in self.roads:
            road.sort(key=attrgetter("pos"))
            for car, leader in itertools.pairwise(road):
                car.leader = leader
            if road:
                road[-1].leader = None
        self.agents.do("step")
        self.agents.do("advance")


# -- citytwin ---------------------------------------------------------------------------------
def road_network(n_roads: int, length: float) -> Network:
    """``n_roads`` parallel single-lane roads of ``length`` m, no junctions between them."""
    b = NetworkBuilder()
    for k in range(n_roads):
        b.add_junction(f"a{k}", 0.0, 50.0 * k, "dead_end")
        b.add_junction(f"b{k}", length, 50.0 * k, "dead_end")
        b.add_edge(f"road{k}", f"a{k}", f"b{k}", [(length, ROAD_SPEED)])
    return b.build()


def filled_city(n_vehicles: int, n_roads: int, ticks: int) -> City:
    """A city whose vehicles all departed at t=0 and are all on their roads now.

    Insertion puts at most one vehicle per lane and tick on the road, once the last one has
    left room, so a road with m vehicles fills in a few times m ticks; the roads are long
    enough that the first vehicle is still on after that and the measured window.
    """
    per_road = math.ceil(n_vehicles / n_roads)
    limit = 4 * per_road + 100
    net = road_network(n_roads, VMAX * DT * (limit + ticks) + 100.0)
    trips = [Trip(f"v{k}", 0.0, f"road{k % n_roads}", f"road{k % n_roads}",
                  route=(f"road{k % n_roads}",)) for k in range(n_vehicles)]
    city = City(net, Demand(trips=trips), rng=1, config=SimConfig(mesa_agents=False))
    while city.fleet.pending > 0 and city.tick < limit:
        city.run_for(10 * DT)
    if city.fleet.n_running != n_vehicles:
        raise SystemExit(f"only {city.fleet.n_running} of {n_vehicles} vehicles got on the "
                         f"roads in {city.sim_time:g} s")
    return city


def snapshot(city: City) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trip, lane (= road), position and speed of every running vehicle, by trip."""
    veh = city.fleet.veh
    slots = np.flatnonzero(veh.alive)
    slots = slots[np.argsort(veh.trip[slots])]
    return veh.trip[slots], veh.lane[slots], veh.pos[slots], veh.speed[slots]


def roads_of(city: City, n_roads: int) -> list[list[tuple[int, float, float]]]:
    """The city's vehicles as the Mesa model's roads: ``(trip, position, speed)`` each."""
    roads: list[list[tuple[int, float, float]]] = [[] for _ in range(n_roads)]
    for trip, lane, pos, speed in zip(*snapshot(city), strict=True):
        roads[int(lane)].append((int(trip), float(pos), float(speed)))
    for road in roads:
        road.sort(key=lambda car: car[1])
    return roads


# -- measurement ------------------------------------------------------------------------------
def time_citytwin(city: City, ticks: int) -> tuple[float, float]:
    """Vehicle-updates/s and wall seconds of citytwin's stepping loop over ``ticks``."""
    k0 = city.kpis()
    city.run_for(ticks * DT)
    k1 = city.kpis()
    wall = k1["step_wall_seconds"] - k0["step_wall_seconds"]
    return (k1["vehicle_updates"] - k0["vehicle_updates"]) / wall, wall


def time_mesa(model: Highway, ticks: int) -> tuple[float, float]:
    """Vehicle-updates/s and wall seconds of the Mesa model's stepping loop."""
    t0 = time.perf_counter()
    for _ in range(ticks):
        model.step()
    wall = time.perf_counter() - t0
    return len(model.agents) * ticks / wall, wall


def compare(city: City, model: Highway) -> dict[str, float]:
    """Mean speeds of both, and the largest position and speed differences per vehicle."""
    trip, _, pos, speed = snapshot(city)
    cars = sorted(model.agents, key=attrgetter("trip"))
    if [c.trip for c in cars] != trip.tolist():
        raise SystemExit("citytwin and Mesa no longer hold the same vehicles")
    m_pos = np.array([c.pos for c in cars])
    m_speed = np.array([c.speed for c in cars])
    return {"mean_speed_citytwin": float(speed.mean()), "mean_speed_mesa": float(m_speed.mean()),
            "max_abs_dpos": float(np.abs(pos - m_pos).max()),
            "max_abs_dspeed": float(np.abs(speed - m_speed).max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vehicles", type=int, default=10_000)
    p.add_argument("--roads", type=int, default=100)
    p.add_argument("--ticks", type=int, default=100, help="measured ticks")
    p.add_argument("--json", type=Path, help="append the result as a JSON line here")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    city = filled_city(a.vehicles, a.roads, a.ticks)
    warm = city.sim_time
    model = Highway(roads_of(city, a.roads))
    t1 = time.perf_counter()
    ct_ups, ct_wall = time_citytwin(city, a.ticks)
    mesa_ups, mesa_wall = time_mesa(model, a.ticks)
    agree = compare(city, model)
    print(f"{a.vehicles:,d} vehicles on {a.roads} single-lane roads of "
          f"{city.network.edge_length[0] / 1000:.1f} km; {a.ticks} ticks measured after "
          f"{warm:g} s of citytwin filling the roads (setup {t1 - t0:.1f} s)")
    print(f"{'':30}{'plain Mesa':>16}{'citytwin':>16}{'ratio':>10}")
    print(f"{'vehicle-updates/s':30}{mesa_ups:>16,.0f}{ct_ups:>16,.0f}"
          f"{ct_ups / mesa_ups:>10.1f}")
    print(f"{'stepping wall time, s':30}{mesa_wall:>16.4f}{ct_wall:>16.4f}"
          f"{mesa_wall / ct_wall:>10.1f}")
    print(f"{'mean speed after, m/s':30}{agree['mean_speed_mesa']:>16.10f}"
          f"{agree['mean_speed_citytwin']:>16.10f}")
    print(f"largest difference per vehicle after the window: position "
          f"{agree['max_abs_dpos']:.3g} m, speed {agree['max_abs_dspeed']:.3g} m/s")
    if a.json:
        with a.json.open("a") as f:
            f.write(json.dumps({"vehicles": a.vehicles, "roads": a.roads, "ticks": a.ticks,
                                "warmup_sim_s": warm, "mesa_updates_per_second": mesa_ups,
                                "citytwin_updates_per_second": ct_ups,
                                "mesa_wall_s": mesa_wall, "citytwin_wall_s": ct_wall,
                                **agree}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
