"""A vehicle enters a junction only if the lane beyond has room for it before the queue
there (SUMO's checkRewindLinkLanes): it does not stand across the junction."""

from __future__ import annotations

import numpy as np

from citytwin.model.city import City
from citytwin.model.demand import Demand, Flow
from citytwin.model.network import NetworkBuilder, Phase, SignalProgram


def _net(short: float):
    """A -(100 m)-> B (priority) -(``short`` m)-> C (a signal, red for 300 s) -> D."""
    b = NetworkBuilder()
    for j, x in (("A", 0), ("B", 100), ("C", 100 + short), ("D", 300 + short)):
        b.add_junction(j, x, 0, "traffic_light" if j == "C" else "priority")
    b.add_edge("AB", "A", "B", [(100.0, 13.89)])
    b.add_edge("BC", "B", "C", [(short, 13.89)])
    b.add_edge("CD", "C", "D", [(200.0, 13.89)])
    b.add_signal_program(SignalProgram("C", (Phase(300, "r"), Phase(300, "G"))), ["C"])
    b.add_connection("AB", 0, "BC", 0, length=5.0)
    b.add_connection("BC", 0, "CD", 0, length=5.0, tls="C", link_index=0)
    b.derive_conflicts()
    return b.build()


def _run(short: float):
    net = _net(short)
    flow = Flow("f", 0.0, 12.0, "AB", "CD", number=6)  # a platoon, 2 s apart
    city = City(net, Demand(flows=[flow]), rng=1)
    via_b = net.n_normal_lanes  # connection 0: through junction B
    on_bc, on_path = [], []
    for _ in range(250):
        city.step()
        veh = city.fleet.veh
        alive = veh.alive == 1
        on_bc.append(int(np.sum(alive & (veh.lane == net.lane("BC_0")))))
        on_path.append(int(np.sum(alive & (veh.lane == via_b))))
    return on_bc, on_path, city


def test_no_vehicle_waits_inside_the_junction_before_a_full_short_lane():
    on_bc, on_path, city = _run(10.0)
    # One car (7.5 m with its gap) fits in the 10 m lane before the red light; the others
    # wait on AB before junction B, none of them inside it.
    assert on_bc[-1] == 1
    assert on_path[-50:] == [0] * 50
    veh = city.fleet.veh
    ab = (veh.alive == 1) & (veh.lane == city.network.lane("AB_0"))
    assert ab.sum() == 5 and veh.speed[ab].max() < 0.1


def test_vehicles_fill_a_lane_with_room():
    on_bc, _, _ = _run(40.0)
    assert on_bc[-1] == 5  # 40 m take five cars of 7.5 m with their gaps


def _approach(state: str) -> tuple[list[float], list[float]]:
    """Speeds of one car on AB as it nears junction B, whose link AB -> BC has ``state``,
    and after it."""
    b = NetworkBuilder()
    for j, x in (("A", 0), ("B", 200), ("C", 400)):
        b.add_junction(j, x, 0)
    b.add_edge("AB", "A", "B", [(200.0, 13.89)])
    b.add_edge("BC", "B", "C", [(200.0, 13.89)])
    b.add_connection("AB", 0, "BC", 0, length=5.0, state=state)
    b.derive_conflicts()
    net = b.build()
    city = City(net, Demand(flows=[Flow("f", 0.0, 1.0, "AB", "BC", number=1)]), rng=1)
    before, after = [], []
    for _ in range(40):
        city.step()
        veh = city.fleet.veh
        alive = veh.alive == 1
        on_ab = alive & (veh.lane == net.lane("AB_0"))
        before.extend(veh.speed[on_ab].tolist())
        after.extend(veh.speed[alive & ~on_ab].tolist())
    return before, after


def test_vehicles_slow_down_for_a_minor_link_they_cannot_see_past():
    # SUMO's drivers approach a yielding link as if to stop until 4.5 m before it, where
    # they see that it is free; a major link they pass at the limit.
    before, after = _approach("M")
    assert min(before + after) > 13.0
    before, after = _approach("m")
    assert 1.0 < min(before) < 6.0
    assert after and max(after) > min(before) + 5.0  # and drives on past the free link
