"""The grid generator: structure, conflicts and signal programs."""

from __future__ import annotations

import numpy as np
import pytest

from citytwin.errors import NetworkError
from citytwin.model.grid import grid_network


@pytest.mark.parametrize("rows,cols,lanes", [(1, 1, 1), (2, 3, 2), (4, 4, 3)])
def test_counts(rows, cols, lanes):
    net = grid_network(rows, cols, lanes=lanes)
    inner = 2 * (rows * (cols - 1) + cols * (rows - 1))
    fringe = 2 * 2 * (rows + cols)
    assert net.n_edges == inner + fringe
    assert net.n_normal_lanes == lanes * net.n_edges
    # Per junction and approach: right, left, and one straight per lane, to 3 exits.
    assert net.n_connections == rows * cols * 4 * (lanes + 2)
    assert len(net.programs) == rows * cols
    assert net.graph.number_of_edges() == net.n_edges


def test_conflicts_are_symmetric_and_response_is_a_subset(small_grid):
    net = small_grid
    foes = {c: set(net.conn_foe[net.conn_foe_ptr[c]:net.conn_foe_ptr[c + 1]].tolist())
            for c in range(net.n_connections)}
    for c, fs in foes.items():
        for f in fs:
            assert c in foes[f]
            assert net.conn_junction[f] == net.conn_junction[c]
        resp = set(net.conn_resp[net.conn_resp_ptr[c]:net.conn_resp_ptr[c + 1]].tolist())
        assert resp <= fs
        for f in resp:  # never both yield to each other
            assert c not in set(net.conn_resp[net.conn_resp_ptr[f]:net.conn_resp_ptr[f + 1]])


def test_program_never_gives_green_to_conflicting_majors(small_grid):
    net = small_grid
    for k, prog in enumerate(net.programs):
        conns = np.flatnonzero(net.conn_tls == k)
        for ph in prog.phases:
            green = [c for c in conns if ph.state[net.conn_link[c]] in "Gg"]
            for a in green:
                for b in green:
                    if b in net.conn_foe[net.conn_foe_ptr[a]:net.conn_foe_ptr[a + 1]]:
                        # Allowed only as permissive: one of them yields to the other.
                        ra = net.conn_resp[net.conn_resp_ptr[a]:net.conn_resp_ptr[a + 1]]
                        rb = net.conn_resp[net.conn_resp_ptr[b]:net.conn_resp_ptr[b + 1]]
                        assert b in ra or a in rb
                        assert "g" in (ph.state[net.conn_link[a]], ph.state[net.conn_link[b]])


def test_left_turn_crosses_opposing_through(small_grid):
    net = small_grid
    j = net.junction_ids.index("r1c1")
    conns = [c for c in range(net.n_connections) if net.conn_junction[c] == j]
    lefts = [c for c in conns if net.conn_direction[c] == "l"]
    assert len(lefts) == 4
    for c in lefts:
        resp = net.conn_resp[net.conn_resp_ptr[c]:net.conn_resp_ptr[c + 1]]
        assert any(net.conn_direction[f] == "s" for f in resp)


def test_permissive_left_turns_wait_inside_short_of_the_opposing_through(small_grid):
    """A left turn that yields to the oncoming through movement gets a wait point inside the
    junction, short of where it meets that movement; protected movements get none."""
    net = small_grid
    for c in range(net.n_connections):
        w = net.conn_wait[c]
        if net.conn_direction[c] != "l":
            assert w < 0
            continue
        oncoming = [q for q in range(net.conn_foe_ptr[c], net.conn_foe_ptr[c + 1])
                    if net.conn_foe[q] in net.conn_resp[net.conn_resp_ptr[c]:
                                                        net.conn_resp_ptr[c + 1]]
                    and net.conn_direction[net.conn_foe[q]] == "s"
                    and net._green_together(c, int(net.conn_foe[q]))]
        assert oncoming
        assert 1.0 <= w < min(net.conn_foe_at[q] for q in oncoming)
        assert w < net.lane_length[net.n_normal_lanes + c]


@pytest.mark.parametrize("kwargs", [{"rows": 0, "cols": 2}, {"rows": 2, "cols": 2, "lanes": 0},
                                    {"rows": 2, "cols": 2, "cycle": 12.0},
                                    {"rows": 2, "cols": 2, "edge_length": 5.0}])
def test_bad_parameters_are_rejected(kwargs):
    with pytest.raises(NetworkError):
        grid_network(**kwargs)
