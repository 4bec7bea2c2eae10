"""The conflict monitor accepts every junction's own program and refuses what a bug would do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citytwin.agents.conflict_monitor import ConflictMonitor, MonitorTiming, clearance
from citytwin.model.grid import grid_network
from citytwin.model.sumo_net import read_sumo_net

DATA = Path(__file__).parent.parent / "data"


def _nets():
    yield "grid", grid_network(3, 3, lanes=2, edge_length=150.0)
    yield "sumo_tls", read_sumo_net(DATA / "grid3_tls.net.xml")


@pytest.mark.parametrize("name, net", list(_nets()))
def test_every_program_cycle_passes_its_own_monitor(name: str, net) -> None:
    for k, prog in enumerate(net.programs):
        yellow = min([p.duration for p in prog.phases if "y" in p.state], default=3.0)
        green = min([p.duration for p in prog.phases if p.is_green], default=5.0)
        mon = ConflictMonitor(net, k, MonitorTiming(min_green=green, yellow=yellow,
                                                    red_clear=0.0), prog.phases[0].state)
        t = 0.0
        for _ in range(3):
            for ph in prog.phases:
                assert mon.check(ph.state, t) is None, (name, prog.tls_id, ph.state, t)
                mon.commit(ph.state, t)
                t += ph.duration


def test_conflicting_pairs_come_from_the_network_and_the_program() -> None:
    net = grid_network(3, 3, lanes=2, edge_length=150.0)
    k = net.tls_ids.index("r1c1")
    mon = ConflictMonitor(net, k, MonitorTiming(), "r" * net.programs[k].n_links)
    c = mon.conflicts
    assert np.array_equal(c, c.T) and not c.diagonal().any()
    # never green together in any phase of the program, and foes in the network
    for ph in net.programs[k].phases:
        g = np.array([ch in "Gg" for ch in ph.state])
        assert not (c & np.outer(g, g)).any()
    a, b = np.argwhere(c)[0]
    heads = ["r"] * mon.n_links
    heads[a] = heads[b] = "G"
    assert "conflict" in mon.check("".join(heads), 100.0)


def test_timing_rules() -> None:
    net = grid_network(3, 3, lanes=2, edge_length=150.0)
    k = net.tls_ids.index("r1c1")
    phases = [p.state for p in net.programs[k].phases]
    n = len(phases[0])
    mon = ConflictMonitor(net, k, MonitorTiming(min_green=5, yellow=3, red_clear=2), "r" * n)
    mon.commit(phases[0], 0.0)
    assert "minimum green" in mon.check(clearance(phases[0]), 4.0)
    assert "without yellow" in mon.check("r" * n, 10.0)
    mon.commit(clearance(phases[0]), 10.0)
    assert "back to green" in mon.check(phases[0], 11.0)
    assert "yellow time" in mon.check("r" * n, 12.0)
    mon.commit("r" * n, 13.0)
    assert "red clearance" in mon.check(phases[3], 14.0)
    assert mon.check(phases[3], 15.0) is None
    assert "links" in mon.check("r" * (n - 1), 20.0)
    assert "letter" in mon.check("x" * n, 20.0)
