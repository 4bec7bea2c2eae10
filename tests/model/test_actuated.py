"""Loops of actuated programs lie where SUMO puts them and extend the phases SUMO's do."""

from __future__ import annotations

import pytest

from citytwin.model.actuated import LENGTH_WITH_GAP, PASSING_TIME, detector_layout
from citytwin.model.grid import grid_network
from citytwin.model.network import NetworkBuilder, Phase, SignalProgram


def test_loop_lies_where_min_green_clears_the_queue():
    net = grid_network(1, 1, lanes=1, actuated=True, min_green=5.0, max_green=40.0)
    layout = detector_layout(net, detector_gap=2.0, all_signals=False)
    assert len(layout.ids) == 4
    lane = net.lane("r0c0_W_r0c0_0")
    k = layout.of_lane[lane]
    assert layout.lanes[k] == lane
    # min(2 s x 13.89 m/s = 27.8 m, (5 / 1.9 + 0.5) x 7.5 m = 23.5 m)
    back = (5.0 / PASSING_TIME + 0.5) * LENGTH_WITH_GAP
    assert layout.pos[k] == pytest.approx(net.lane_length[lane] - back)
    long_green = grid_network(1, 1, lanes=1, actuated=True, min_green=30.0, max_green=40.0)
    layout = detector_layout(long_green, detector_gap=2.0, all_signals=False)
    k = layout.of_lane[lane]
    assert layout.pos[k] == pytest.approx(long_green.lane_length[lane]
                                          - 2.0 * long_green.lane_speed[lane])


def _chain(short: float, straight_state: str):
    """A -(100 m)-> B -(``short`` m)-> C (signal) -> D, and a left turn C -> E."""
    b = NetworkBuilder()
    for j, x, y in (("A", 0, 0), ("B", 100, 0), ("C", 100 + short, 0), ("D", 300, 0),
                    ("E", 100 + short, 100)):
        b.add_junction(j, x, y, "traffic_light" if j == "C" else "priority")
    b.add_edge("AB", "A", "B", [(100.0, 13.89)])
    b.add_edge("BC", "B", "C", [(short, 13.89)])
    b.add_edge("CD", "C", "D", [(150.0, 13.89)])
    b.add_edge("CE", "C", "E", [(100.0, 13.89)])
    prog = SignalProgram("C", (Phase(30, straight_state + "G", 5, 40), Phase(3, "yy"),
                               Phase(30, "rr")), kind="actuated")
    b.add_signal_program(prog, ["C"])
    b.add_connection("AB", 0, "BC", 0, length=5.0)
    b.add_connection("BC", 0, "CD", 0, length=5.0, tls="C", link_index=0)
    b.add_connection("BC", 0, "CE", 0, length=8.0, direction="l", tls="C", link_index=1)
    b.derive_conflicts()
    return b.build()


def test_loop_moves_upstream_on_a_short_lane_with_one_feeder():
    net = _chain(10.0, "G")
    layout = detector_layout(net, detector_gap=2.0, all_signals=False)
    (k,) = layout.of_lane.values()
    assert layout.lanes[k] == net.lane("AB_0")
    back = (5.0 / PASSING_TIME + 0.5) * LENGTH_WITH_GAP
    # 10 m of BC and 5 m through junction B (SUMO's internal lane) count towards the distance.
    assert layout.pos[k] == pytest.approx(100.0 + 5.0 + 10.0 - back)
    assert layout.of_phase[0] == [[k], [], []]


def test_loop_extends_a_phase_only_if_all_its_lanes_links_are_green():
    # The straight link is red where the left turn is green: the shared lane's loop cannot
    # extend that phase.
    net = _chain(50.0, "r")
    layout = detector_layout(net, detector_gap=2.0, all_signals=False)
    assert layout.of_phase[0] == [[], [], []]
    # Green minor on a never-major link from a lane with a major link counts as green.
    net = _chain(50.0, "g")
    layout = detector_layout(net, detector_gap=2.0, all_signals=False)
    assert layout.of_phase[0] == [[0], [], []]


def test_loop_may_lie_on_the_path_through_a_junction():
    net = _chain(20.0, "G")  # 20 m of BC and 5 m of path through B: 1.5 m into the path
    layout = detector_layout(net, detector_gap=2.0, all_signals=False)
    (k,) = layout.of_lane.values()
    assert layout.lanes[k] >= net.n_normal_lanes
    assert net.conn_to_lane[layout.lanes[k] - net.n_normal_lanes] == net.lane("BC_0")
    back = (5.0 / PASSING_TIME + 0.5) * LENGTH_WITH_GAP
    assert layout.pos[k] == pytest.approx(5.0 + 20.0 - back)
