"""Child process of scaling.py: one city of N vehicles, warmed up, then a measured window.

Builds a square signalised grid (2 lanes per direction, 200 m blocks) sized so that N vehicles
fill it at the requested density, gives N trips one-turn routes of up to 24 blocks departing
in the first 60 s, runs until every trip is on the network and then measures ``ticks`` ticks.
Prints one JSON line. Runs in its own process so that its wall time and peak memory are its
own.

    python benchmarks/_scaling_child.py 10000 60 22.5 1
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from citytwin.agents.vehicles import VehicleFleet, type_arrays
from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.demand import Demand
from citytwin.model.grid import LANE_WIDTH, grid_network
from citytwin.model.network import Network

LANES = 2               # per direction
BLOCK = 200.0           # m between junction centres
ATTACH = 100.0          # m of the fringe arms (grid_network's default)
ROUTE_EDGES = 24        # longest route, in edges (4.8 km: nobody arrives in the window)
DEPART_WINDOW = 60.0    # s over which the trips depart
WARMUP_LIMIT = 600.0    # s of sim time after which the window starts anyway
# Heading d: 0 north, 1 east, 2 south, 3 west; a step moves (row, col) by (DR[d], DC[d]).
DR = np.array([1, 0, -1, 0])
DC = np.array([0, 1, 0, -1])


def lane_km(n: int) -> float:
    """Lane-km of an n x n grid (``grid_network`` shortens edges by the junction size)."""
    inner = BLOCK - 2 * LANES * LANE_WIDTH
    fringe = ATTACH - LANES * LANE_WIDTH
    return (4 * n * (n - 1) * inner + 8 * n * fringe) * LANES / 1000


def grid_side(n_vehicles: int, density: float) -> int:
    """Junctions per side of the smallest grid that holds ``n_vehicles`` at no more than
    ``density`` vehicles per lane-km."""
    n = 2
    while lane_km(n) * density < n_vehicles:
        n += 1
    return n


def edge_table(net: Network, n: int) -> np.ndarray:
    """``table[r, c, d]``: the edge leaving grid junction (r, c) heading ``d`` (at the border,
    the edge out to the fringe dead end). Junction (r, c) stands at (c, r) * BLOCK."""
    a, b = net.edge_from, net.edge_to
    inner = np.array([kind != "dead_end" for kind in net.junction_kind])[a]
    dx, dy = (net.junction_xy[b] - net.junction_xy[a]).T
    heading = np.where(np.abs(dx) > np.abs(dy), np.where(dx > 0, 1, 3), np.where(dy > 0, 0, 2))
    rows = np.rint(net.junction_xy[a, 1] / BLOCK).astype(np.int64)
    cols = np.rint(net.junction_xy[a, 0] / BLOCK).astype(np.int64)
    table = np.full((n, n, 4), -1, np.int32)
    table[rows[inner], cols[inner], heading[inner]] = np.flatnonzero(inner)
    return table


def room(r: np.ndarray, c: np.ndarray, d: np.ndarray, n: int) -> np.ndarray:
    """Blocks one can drive from junction (r, c) heading ``d`` without leaving the grid."""
    return np.choose(d, [n - 1 - r, n - 1 - c, r, c])


def away(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """True where row (or column) ``x`` is nearer the low border: head for the high one
    (ties drawn)."""
    ahead, behind = n - 1 - x, x
    return (ahead > behind) | ((ahead == behind) & (rng.random(x.size) < 0.5))


def one_turn_routes(table: np.ndarray, n_trips: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random routes: from a random junction ``a`` blocks straight towards the farther
    border, a turn towards the farther border, then ``b`` blocks (the last may leave the
    grid); ``a + b <= ROUTE_EDGES``. On a grid of equal blocks these are shortest paths.

    Returns:
        ``(ptr, edges)``: trip ``k`` drives ``edges[ptr[k]:ptr[k + 1]]``.
    """
    n = table.shape[0]
    r0, c0 = rng.integers(0, n, n_trips), rng.integers(0, n, n_trips)
    vertical = rng.random(n_trips) < 0.5
    d0 = np.where(vertical, np.where(away(r0, n, rng), 0, 2), np.where(away(c0, n, rng), 1, 3))
    a = np.minimum(room(r0, c0, d0, n), rng.integers(1, ROUTE_EDGES, n_trips))
    r1, c1 = r0 + a * DR[d0], c0 + a * DC[d0]
    d1 = np.where(vertical, np.where(away(c1, n, rng), 1, 3), np.where(away(r1, n, rng), 0, 2))
    b = np.minimum(room(r1, c1, d1, n) + 1, ROUTE_EDGES - a)
    ptr = np.zeros(n_trips + 1, np.int64)
    np.cumsum(a + b, out=ptr[1:])
    edges = np.empty(ptr[-1], np.int32)
    chunk = 20_000  # bounds the temporaries of a million routes
    for lo in range(0, n_trips, chunk):
        hi = min(lo + chunk, n_trips)
        trip = np.repeat(np.arange(lo, hi), a[lo:hi] + b[lo:hi])
        k = np.arange(ptr[lo], ptr[hi]) - ptr[trip]
        first = k < a[trip]
        after = k - a[trip]
        rows = np.where(first, r0[trip] + k * DR[d0[trip]], r1[trip] + after * DR[d1[trip]])
        cols = np.where(first, c0[trip] + k * DC[d0[trip]], c1[trip] + after * DC[d1[trip]])
        edges[ptr[lo]:ptr[hi]] = table[rows, cols, np.where(first, d0[trip], d1[trip])]
    return ptr, edges


def build_city(net: Network, depart: np.ndarray, ptr: np.ndarray, edges: np.ndarray) -> City:
    """A city whose fleet holds these trips.

    ``City(network, Demand)`` takes :class:`~citytwin.model.demand.Trip` objects: a million
    of them with given routes cost about 0.45 kB each and ``route_trips`` checks every route
    in Python (about 90 us a trip), and with origins and destinations only it would route them
    with one dense Dijkstra row per origin edge (origin edges x edges, far beyond memory on
    this grid). The routes here are index arrays already, so the fleet is built from them as
    ``City.__init__`` builds it from routed trips.
    """
    city = City(net, Demand(), rng=1, config=SimConfig(mesa_agents=False, reroute_period=0))
    n = depart.size
    city.fleet = VehicleFleet(
        net.arrays, net.edge_ids, type_arrays(city.vtypes), [f"v{k}" for k in range(n)],
        depart, np.zeros(n, np.int32), ptr[:-1], np.diff(ptr).astype(np.int32), edges,
        np.full(n, -1.0))
    return city


def memory(city: City) -> dict[str, float]:
    """Bytes per vehicle slot of the simulation state (the per-slot vehicle arrays and the
    fleet's per-slot bookkeeping), and bytes per trip of the trip and route tables and of the
    trip id strings."""
    fleet, f = city.fleet, city.fleet.arrays
    state = sum(a.nbytes for a in (*fleet.veh, f.order, f.tmp, f.free_slots, f.inserted,
                                   f.arrived))
    trips = (sum(a.nbytes for a in fleet.trips) + f.backlog.nbytes
             + fleet.route_edges.nbytes)
    ids = sys.getsizeof(fleet.trip_ids) + sum(sys.getsizeof(s) for s in fleet.trip_ids)
    n = len(fleet.trip_ids)
    return {"capacity": fleet.capacity, "state_bytes": state,
            "state_bytes_per_slot": state / fleet.capacity, "trip_bytes_per_trip": trips / n,
            "trip_id_bytes_per_trip": ids / n, "route_edges_per_trip": fleet.n_route / n}


def build(size: int, density: float, seed: int) -> tuple[City, dict[str, float]]:
    """The city of ``size`` vehicles, and the grid and the time of each build phase."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    n = grid_side(size, density)
    net = grid_network(n, n, edge_length=BLOCK, lanes=LANES, attach_length=ATTACH)
    _ = net.arrays  # built on first use: part of the network's cost
    t1 = time.perf_counter()
    ptr, edges = one_turn_routes(edge_table(net, n), size, rng)
    depart = np.sort(rng.uniform(0.0, DEPART_WINDOW, size))
    t2 = time.perf_counter()
    city = build_city(net, depart, ptr, edges)
    t3 = time.perf_counter()
    return city, {"grid": n, "junctions": net.n_junctions, "lanes": net.n_normal_lanes,
                  "connections": net.n_connections, "density": size / lane_km(n),
                  "network_s": t1 - t0, "demand_s": t2 - t1, "city_s": t3 - t2}


def warm_up(city: City) -> dict[str, float]:
    """Step until every trip has departed (or ``WARMUP_LIMIT`` seconds have passed)."""
    t0 = time.perf_counter()
    while city.fleet.pending > 0 and city.sim_time < WARMUP_LIMIT:
        city.run_for(5.0)
    return {"warmup_s": time.perf_counter() - t0, "warmup_sim_s": city.sim_time,
            "not_departed": city.fleet.pending, "running_start": city.fleet.n_running}


def window(city: City, ticks: int) -> dict[str, float]:
    """Step ``ticks`` ticks; the stepping loop's figures over them (kpis deltas)."""
    k0 = city.kpis()
    t0 = time.perf_counter()
    city.run_for(ticks)
    t1 = time.perf_counter()
    k1 = city.kpis()
    updates = k1["vehicle_updates"] - k0["vehicle_updates"]
    wall = k1["step_wall_seconds"] - k0["step_wall_seconds"]
    veh = city.fleet.veh
    alive = veh.alive.astype(bool)
    return {"ticks": ticks, "window_s": t1 - t0, "running_end": city.fleet.n_running,
            "mean_running": updates / ticks,
            "arrived_in_window": k1["vehicles_arrived"] - k0["vehicles_arrived"],
            "teleports_in_window": k1["teleports"] - k0["teleports"],
            "mean_speed_end": float(veh.speed[alive].mean()) if alive.any() else float("nan"),
            "vehicle_updates": updates, "step_wall_s": wall,
            "updates_per_second": updates / wall}


def main() -> None:
    size, ticks, density, seed = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                                  int(sys.argv[4]))
    city, built = build(size, density, seed)
    city.compile()
    row = {"size": size, **built, **warm_up(city), **window(city, ticks),
           **memory(city)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
