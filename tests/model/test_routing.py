"""Routing on the edge graph against networkx, and random trips."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from citytwin.errors import DemandError
from citytwin.model.demand import Trip
from citytwin.model.routing import (
    free_flow_times,
    fringe_edges,
    random_trips,
    route_trips,
    shortest_routes,
)


def _route_cost(net, route, times):
    return float(sum(times[e] for e in route[1:]))


def test_shortest_routes_match_networkx(small_grid, rng):
    net = small_grid
    times = free_flow_times(net) * rng.uniform(0.5, 3.0, net.n_edges)
    g = nx.DiGraph()
    ptr, nxt = net.successors
    for e in range(net.n_edges):
        for f in nxt[ptr[e]:ptr[e + 1]]:
            g.add_edge(e, int(f), weight=times[f])
    o = rng.integers(0, net.n_edges, 80).astype(np.int32)
    d = rng.integers(0, net.n_edges, 80).astype(np.int32)
    rptr, edges = shortest_routes(net, o, d, times)
    for k in range(80):
        route = edges[rptr[k]:rptr[k + 1]].tolist()
        try:
            expect = nx.shortest_path_length(g, int(o[k]), int(d[k]), weight="weight")
        except nx.NetworkXNoPath:
            assert route == []
            continue
        assert route[0] == o[k] and route[-1] == d[k]
        for a, z in itertools.pairwise(route):
            assert z in nxt[ptr[a]:ptr[a + 1]]
        assert _route_cost(net, route, times) == pytest.approx(expect)


def test_route_trips_shares_routes_and_flags_unroutable(small_grid):
    net = small_grid
    starts, ends = fringe_edges(net)
    a, z = net.edge_ids[starts[0]], net.edge_ids[ends[-1]]
    # A fringe exit edge leads nowhere: nothing can be routed out of it.
    trips = [Trip("x", 0, a, z), Trip("y", 1, a, z), Trip("dead", 2, z, a)]
    start, length, _edges = route_trips(net, trips)
    assert start[0] == start[1] and length[0] == length[1] > 1
    assert length[2] == 0
    with pytest.raises(DemandError, match="unknown edge"):
        route_trips(net, [Trip("bad", 0, "nope", z)])
    with pytest.raises(DemandError, match="not connected"):
        route_trips(net, [Trip("gap", 0, a, z, route=(a, z))])


def test_random_trips_are_routable_and_follow_the_profile(small_grid):
    net = small_grid
    trips = random_trips(net, begin=0, end=3600, vehs_per_hour=2000,
                         rng=np.random.default_rng(4), profile=[(0, 0.0), (1800, 2.0),
                                                               (3600, 0.0)])
    assert 1600 < len(trips) < 2400  # mean of a triangle peaking at twice the rate
    departs = np.array([t.depart for t in trips])
    assert np.all(np.diff(departs) >= 0)
    middle = np.count_nonzero((departs > 1200) & (departs < 2400))
    assert middle > 2 * np.count_nonzero(departs < 600)
    _, length, _ = route_trips(net, trips)
    assert np.all(length > 0)
    again = random_trips(net, begin=0, end=3600, vehs_per_hour=2000,
                         rng=np.random.default_rng(4), profile=[(0, 0.0), (1800, 2.0),
                                                                (3600, 0.0)])
    assert again == trips
