"""Webster plans and green waves computed from the demand, against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest

from citytwin.agents.controllers import Timing
from citytwin.model.city import City
from citytwin.model.demand import Demand, Flow
from citytwin.model.grid import grid_network
from citytwin.model.signal_plans import WebsterParams, webster_plan
from citytwin.model.signal_policy import GreenWaveParams, SignalPolicy


def test_webster_formula_by_hand():
    # Two stages; stage 0 serves links 0 (lane 10) and 1 (lane 11), stage 1 link 2 (lane 12).
    stages = ["GGr", "rrG"]
    lanes = [[10], [11], [12]]
    flow = np.array([540.0, 360.0, 450.0])  # veh/h
    timing = Timing(yellow=3.0, all_red=2.0, min_green=5.0)
    plan, fig = webster_plan(stages, lanes, flow, timing, WebsterParams(saturation_flow=1800.0))
    y0, y1 = 540 / 1800, 450 / 1800           # critical lanes: 0.30 and 0.25
    lost = 2 * (3 + 2)
    c0 = (1.5 * lost + 5) / (1 - (y0 + y1))   # 20 / 0.45 = 44.4 s
    assert fig["Y"] == pytest.approx(y0 + y1)
    assert fig["C0"] == pytest.approx(c0)
    eff = c0 - lost
    assert plan.greens == (round(eff * y0 / (y0 + y1)), round(eff * y1 / (y0 + y1)))
    assert plan.cycle == sum(plan.greens) + lost


def test_webster_clamps_and_keeps_minimum_green():
    timing = Timing(yellow=3.0, all_red=2.0, min_green=7.0)
    over, fig = webster_plan(["Gr", "rG"], [[1], [2]], np.array([1500.0, 600.0]), timing,
                             WebsterParams(max_cycle=120.0))
    assert fig["Y"] > 1 and over.cycle == pytest.approx(120.0, abs=1.0)
    idle, _ = webster_plan(["Gr", "rG"], [[1], [2]], np.array([10.0, 0.0]), timing,
                           WebsterParams(min_cycle=30.0))
    assert min(idle.greens) >= 7.0


def test_plans_follow_the_demand_of_the_city():
    net = grid_network(1, 1, lanes=1, edge_length=200.0, attach_length=200.0)
    ew = Flow("ew", 0, 1800, "r0c0_W_r0c0", "r0c0_r0c0_E", vehs_per_hour=600)
    ns = Flow("ns", 0, 1800, "r0c0_S_r0c0", "r0c0_r0c0_N", vehs_per_hour=200)
    city = City(net, Demand(flows=[ew, ns]), rng=1, signals=SignalPolicy(policy="fixed"))
    plan = city.control.controllers[0].plan
    stages = city.control.stage_states(0)
    ns_stage = next(x for x, s in enumerate(stages) if s[0] != "r")  # the grid: N-S first
    assert plan.greens[1 - ns_stage] > plan.greens[ns_stage]  # the busier street gets more
    assert city.signal_plans[0]["Y"] == pytest.approx((600 + 200) / 1800, rel=0.05)


def test_plans_leave_out_the_traffic_they_were_not_made_for():
    """An unplanned flow (an event) runs in the city but not in the plan: the plan is the one
    of the regular demand alone; the same flow planned changes it."""
    net = grid_network(1, 1, lanes=1, edge_length=200.0, attach_length=200.0)
    ew = Flow("ew", 0, 1800, "r0c0_W_r0c0", "r0c0_r0c0_E", vehs_per_hour=600)
    ns = Flow("ns", 0, 1800, "r0c0_S_r0c0", "r0c0_r0c0_N", vehs_per_hour=200)

    def plan(*extra):
        city = City(net, Demand(flows=[ew, ns, *extra]), rng=1,
                    signals=SignalPolicy(policy="fixed"))
        return city.control.controllers[0].plan, city.fleet.trips.depart.size

    event = dict(id="event", begin=0, end=1800, from_edge="r0c0_S_r0c0",
                 to_edge="r0c0_r0c0_N", vehs_per_hour=500)
    regular, n_regular = plan()
    unplanned, n_unplanned = plan(Flow(**event, planned=False))
    planned, _ = plan(Flow(**event))
    assert n_unplanned == n_regular + 250  # its vehicles do drive
    assert unplanned == regular
    assert planned != regular


def test_green_wave_offsets_follow_travel_time():
    net = grid_network(1, 4, lanes=2, edge_length=250.0)
    route = ("r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c2", "r0c2_r0c3", "r0c3_r0c3_E")
    demand = Demand(flows=[Flow("main", 0, 1800, route[0], route[-1], route=route,
                                vehs_per_hour=900)])
    pol = SignalPolicy(policy="green-wave", green_wave=GreenWaveParams(route, 10.0))
    city = City(net, demand, rng=1, signals=pol)
    plans = [c.plan for c in city.control.controllers]
    assert len({p.cycle for p in plans}) == 1  # one common cycle
    # Every junction serves the arterial in the same stage, so the offsets differ by the
    # travel time between junctions: 250 m blocks (plus the junction) at 10 m/s, about 26 s.
    gaps = np.diff([p.offset for p in plans]) % plans[0].cycle
    assert np.all(np.abs(gaps - 26.0) <= 2.0)
