"""Routes by travel time, computed in batches, and random trips.

Routing works on the edge graph: one node per edge, an arc ``e -> f`` wherever a connection
leads from ``e`` into ``f``, weighted by ``f``'s travel time, so turn restrictions are honoured.
All vehicles that share an origin share one Dijkstra tree (scipy's csgraph, compiled code);
paths are read out of the predecessor trees by a kernel. Nothing here runs per tick.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from citytwin.agents.kernels.routes import extract_paths
from citytwin.errors import DemandError
from citytwin.model.demand import Trip
from citytwin.model.network import Network


def free_flow_times(network: Network) -> np.ndarray:
    """Travel time of every edge at its speed limit, in seconds."""
    return network.edge_length / network.edge_speed


def edge_graph(network: Network, times: np.ndarray) -> csr_matrix:
    """The edge graph weighted by the travel time of the entered edge."""
    ptr, nxt = network.successors
    rows = np.repeat(np.arange(network.n_edges), np.diff(ptr))
    weights = np.maximum(times[nxt], 1e-3)  # csgraph treats 0 as "no arc"
    return csr_matrix((weights, (rows, nxt)), shape=(network.n_edges, network.n_edges))


def shortest_routes(network: Network, origins: np.ndarray, destinations: np.ndarray,
                    times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fastest routes for many (origin edge, destination edge) pairs at once.

    Args:
        network: The road network.
        origins: Origin edge per request.
        destinations: Destination edge per request.
        times: Travel time per edge (default: free flow).

    Returns:
        ``(ptr, edges)``: request ``k``'s route is ``edges[ptr[k]:ptr[k+1]]``, origin first;
        an empty route means the destination cannot be reached.
    """
    origins = np.asarray(origins, dtype=np.int32)
    destinations = np.asarray(destinations, dtype=np.int32)
    if times is None:
        times = free_flow_times(network)
    if origins.size == 0:
        return np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int32)
    unique, row_of = np.unique(origins, return_inverse=True)
    graph = edge_graph(network, times)
    _, pred = dijkstra(graph, directed=True, indices=unique, return_predecessors=True)
    return extract_paths(pred.astype(np.int32), row_of.astype(np.int32), origins, destinations)


def route_trips(network: Network, trips: list[Trip]) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """Edge-index routes of trips: given routes are checked, the others computed.

    Trips with the same route (same given edges, or same origin and destination) share one
    copy in the returned route table.

    Returns:
        ``(start, length, edges)``: trip ``k``'s route is
        ``edges[start[k]:start[k] + length[k]]``; ``length[k]`` is 0 where no route exists
        (the caller skips and counts such trips).

    Raises:
        DemandError: a trip names an unknown edge, or a given route is not connected.
    """
    n = len(trips)
    start = np.zeros(n, dtype=np.int64)
    length = np.zeros(n, dtype=np.int32)
    table: list[np.ndarray] = []
    used = 0
    given: dict[tuple[str, ...], tuple[int, int]] = {}
    pairs: dict[tuple[int, int], list[int]] = {}
    succ_ptr, succ = network.successors
    for k, t in enumerate(trips):
        try:
            if t.route:
                if t.route not in given:
                    r = np.array([network.edge_index[e] for e in t.route], dtype=np.int32)
                    for a, z in itertools.pairwise(r):
                        if z not in succ[succ_ptr[a]:succ_ptr[a + 1]]:
                            raise DemandError(
                                f"vehicle {t.id!r}: route is not connected between edges "
                                f"{network.edge_ids[a]!r} and {network.edge_ids[z]!r}")
                    given[t.route] = (used, r.size)
                    table.append(r)
                    used += r.size
                start[k], length[k] = given[t.route]
            else:
                key = (network.edge_index[t.from_edge], network.edge_index[t.to_edge])
                pairs.setdefault(key, []).append(k)
        except KeyError as exc:
            raise DemandError(f"vehicle {t.id!r}: unknown edge {exc}") from None
    keys = list(pairs)
    o = np.array([kk[0] for kk in keys], dtype=np.int32)
    d = np.array([kk[1] for kk in keys], dtype=np.int32)
    ptr_c, edges_c = shortest_routes(network, o, d)
    for q, key in enumerate(keys):
        m = int(ptr_c[q + 1] - ptr_c[q])
        for k in pairs[key]:
            start[k], length[k] = used + int(ptr_c[q]), m
    table.append(edges_c)
    edges = np.concatenate(table).astype(np.int32) if table else np.empty(0, np.int32)
    start[length == 0] = 0
    return start, length, edges


def fringe_edges(network: Network) -> tuple[np.ndarray, np.ndarray]:
    """Edges where trips can start at the border (leaving a dead end) and end (entering one).

    A junction is a dead end when no connection passes through it.
    """
    through = np.zeros(network.n_junctions, dtype=bool)
    through[network.conn_junction] = True
    starts = np.flatnonzero(~through[network.edge_from])
    ends = np.flatnonzero(~through[network.edge_to])
    return starts, ends


def random_trips(network: Network, *, begin: float, end: float, vehs_per_hour: float,
                 rng: np.random.Generator, profile: list[tuple[float, float]] | None = None,
                 fringe_only: bool = True, vtype: str = "DEFAULT_VEHTYPE",
                 prefix: str = "rt") -> list[Trip]:
    """Random trips between routable edge pairs, like SUMO's ``randomTrips.py``.

    Departures form a Poisson process of ``vehs_per_hour``, scaled over time by ``profile``
    (piecewise-linear ``(time_s, multiplier)`` points; constant 1 without one). Origins and
    destinations are drawn uniformly among fringe edges (all edges if ``fringe_only`` is False
    or the network has no fringe), never the same edge, and only pairs with a route.
    """
    if end <= begin or vehs_per_hour <= 0:
        raise DemandError("random trips need end > begin and vehs_per_hour > 0")
    if fringe_only:
        starts, ends = fringe_edges(network)
    else:
        starts = ends = np.arange(network.n_edges)
    if starts.size == 0 or ends.size == 0:
        starts = ends = np.arange(network.n_edges)
    pts = np.asarray(profile if profile else [(begin, 1.0), (end, 1.0)], dtype=np.float64)
    if (pts.ndim != 2 or pts.shape[1] != 2 or np.any(pts[:, 1] < 0)
            or np.any(np.diff(pts[:, 0]) <= 0)):
        raise DemandError("random trip profile must be [[time, multiplier], ...] with "
                          "increasing times and multipliers >= 0")
    peak = float(pts[:, 1].max())
    if peak <= 0:
        return []
    # Thinning of a Poisson process with the peak rate.
    rate_peak = vehs_per_hour * peak / 3600.0
    n_max = int(rng.poisson(rate_peak * (end - begin)))
    times = np.sort(rng.uniform(begin, end, n_max))
    keep = rng.random(n_max) * peak < np.interp(times, pts[:, 0], pts[:, 1])
    times = np.round(times[keep], 1)
    n = times.size
    # Reachability from every start edge (one tree each).
    dist = dijkstra(edge_graph(network, free_flow_times(network)), directed=True, indices=starts)
    reach = np.isfinite(dist[:, ends])
    reach &= starts[:, None] != ends[None, :]
    valid_rows = np.flatnonzero(reach.any(axis=1))
    if valid_rows.size == 0:
        raise DemandError("no origin-destination pair of this network has a route")
    o_rows = valid_rows[rng.integers(0, valid_rows.size, n)]
    u = rng.random(n)
    trips = []
    for k in range(n):
        cols = np.flatnonzero(reach[o_rows[k]])
        d = ends[cols[int(u[k] * cols.size)]]
        trips.append(Trip(f"{prefix}{k}", float(times[k]), network.edge_ids[starts[o_rows[k]]],
                          network.edge_ids[d], vtype))
    return trips
