"""The stage-machine kernel against the plain reference in tests/naive.py, tick by tick, on
random detections and pre-emption requests, for every strategy."""

from __future__ import annotations

import numpy as np
import pytest

from citytwin.agents.controllers import (
    Actuated,
    ControlFleet,
    FixedTime,
    MaxPressure,
    Plan,
    Sotl,
    Timing,
)
from citytwin.agents.kernels import control as kc
from citytwin.model.grid import grid_network
from citytwin.model.sumo_net import read_sumo_net
from tests import naive
from tests.agents.test_conflict_monitor import DATA

CONTROLLERS = {
    "fixed": FixedTime(Plan(41.0, 7.0, (18.0, 13.0))),
    "actuated": Actuated(min_green=6.0, max_green=25.0, max_gap=2.0),
    "max-pressure": MaxPressure(min_green=6.0, max_green=30.0, headway=2.5),
    "sotl": Sotl(min_green=6.0, theta=30.0, mu=2.0),
}


def _fleet(net, k):
    det_of_lane = {lane: d for d, lane in enumerate(sorted(set(net.conn_from_lane.tolist())))}
    return ControlFleet(net, det_of_lane, [0] * len(net.programs)), det_of_lane


@pytest.mark.parametrize("strategy", list(CONTROLLERS))
@pytest.mark.parametrize("net_name", ["grid", "sumo"])
def test_stage_machine_matches_reference(strategy, net_name):
    net = (grid_network(2, 2, lanes=2, edge_length=150.0) if net_name == "grid"
           else read_sumo_net(DATA / "grid3_tls.net.xml"))
    k = 0
    fleet, _ = _fleet(net, k)
    ctl = CONTROLLERS[strategy]
    if strategy == "fixed":
        ctl = FixedTime(Plan(10.0 * fleet.n_regular(k) + 5.0 * fleet.n_regular(k), 7.0,
                             tuple([10.0] * fleet.n_regular(k))))
    timing = Timing(yellow=3.0, all_red=2.0, min_green=4.0)
    fleet.set_controller(k, ctl, timing, max_hold=40.0)
    a = fleet.arrays
    s0, s1 = int(a.stage_ptr[k]), int(a.stage_ptr[k + 1])
    n_links = int(a.link_ptr[k + 1] - a.link_ptr[k])
    stages = [fleet._letters(s) for s in range(s0, s1)]
    pre = {link: int(a.pre_stage[a.link_ptr[k] + link]) - s0 for link in range(n_links)}
    pre = {link: s for link, s in pre.items() if s >= 0}
    serves = [[bool(a.serves[a.codes_ptr[s] + q]) for q in range(n_links)]
              for s in range(s0, s1)]
    links = [a.lconn[a.lconn_ptr[g]:a.lconn_ptr[g + 1]].tolist()
             for g in range(a.link_ptr[k], a.link_ptr[k + 1])]
    dets = [a.det[a.det_ptr[s]:a.det_ptr[s + 1]].tolist() for s in range(s0, s1)]
    kw = {"fixed": {"plan": (ctl.plan.cycle, ctl.plan.offset, ctl.plan.greens)}
          if strategy == "fixed" else None}.get("fixed") or {}
    base = [int(a.stage_base[s]) - s0 for s in range(s0, s1)]
    ref = naive.StageMachine(
        stages, base, pre, serves, links, net.conn_to_lane.tolist(), dets,
        strategy=strategy, yellow=3.0, all_red=2.0, min_green=float(a.min_green[k]),
        max_green=float(a.max_green[k]), max_gap=float(a.max_gap[k]),
        theta=float(a.theta[k]), mu=float(a.mu[k]), max_hold=40.0,
        headway=float(a.headway[k]), **kw)
    ref.stage = ref.nxt = int(a.stage[k]) - s0
    ref.mode = {kc.GREEN: "green", kc.CLEARING_YELLOW: "yellow", kc.CLEARING_RED: "red"}[
        int(a.mode[k])]
    ref.t = float(a.t_mode[k])
    rng = np.random.default_rng(7)
    n_det = int(a.det.max()) + 1 if a.det.size else 1
    last_on = np.full(n_det, -1e18)
    roads = net.arrays
    conns = np.flatnonzero(net.conn_tls == k)
    changes = 0
    shown_before = ref.shown()
    for tick in range(600):
        t = float(tick)
        a.q_app[:] = 0
        a.q_near[:] = 0
        a.q_app[conns] = rng.integers(0, 4, conns.size) * (rng.random(conns.size) < 0.4)
        a.q_near[conns] = np.minimum(a.q_app[conns], rng.integers(0, 3, conns.size))
        a.n_start[:] = rng.integers(0, 3, net.n_lanes) * (rng.random(net.n_lanes) < 0.3)
        a.blocked[:] = rng.random(net.n_lanes) < 0.02
        hit = rng.random(n_det) < 0.3
        last_on[hit] = t
        req, ev = -1, -1
        if tick % 150 > 110 and pre:
            link = sorted(pre)[(tick // 150) % len(pre)]
            req, ev = int(a.link_ptr[k]) + link, tick // 150
        a.pre_link[k], a.pre_ev[k] = req, ev
        kc._advance(k, t, 1.0, a, last_on, roads)
        got = fleet.shown(k)
        want = ref.step(t, 1.0, req - int(a.link_ptr[k]) if req >= 0 else -1, ev,
                        a.q_app, a.q_near, a.n_start, a.blocked, last_on)
        assert got == want, (strategy, tick, got, want)
        changes += got != shown_before
        shown_before = got
    assert changes > 20  # the machine did run through many transitions


def test_a_request_during_a_clearance_reverts_to_its_stage_after_the_all_red():
    """A request for a link that is clearing (towards a stage that does not serve it) takes
    the junction back to the link's pre-emption stage at the end of the all-red, with yellow
    and all-red shown in full; the stage the clearance led to never begins."""
    from citytwin.agents.conflict_monitor import ConflictMonitor, MonitorTiming

    net = grid_network(1, 1, lanes=2, edge_length=150.0)
    k = 0
    fleet, _ = _fleet(net, k)
    n = fleet.n_regular(k)
    fleet.set_controller(k, FixedTime(Plan(15.0 * n, 0.0, tuple([10.0] * n))),
                         Timing(yellow=3.0, all_red=2.0, min_green=4.0), max_hold=60.0)
    a = fleet.arrays
    mon = ConflictMonitor(net, k, MonitorTiming(min_green=4.0, yellow=3.0, red_clear=2.0),
                          fleet.shown(k))
    last_on = np.full(1, -1e18)
    t = 0.0

    def tick(req=-1, ev=-1):
        nonlocal t
        a.pre_link[k], a.pre_ev[k] = req, ev
        kc._advance(k, t, 1.0, a, last_on, net.arrays)
        t += 1.0
        state = fleet.shown(k)
        if state != mon.state:
            assert mon.check(state, t) is None
            mon.commit(state, t)

    while a.mode[k] != kc.CLEARING_YELLOW:
        tick()
    cur, nxt = int(a.stage[k]), int(a.nxt[k])
    lo = int(a.link_ptr[k])
    link = next(q for q in range(int(a.link_ptr[k + 1]) - lo)
                if a.serves[a.codes_ptr[cur] + q] and not a.serves[a.codes_ptr[nxt] + q]
                and a.pre_stage[lo + q] >= 0)
    modes = []
    while a.mode[k] != kc.GREEN:
        tick(lo + link, 0)
        modes.append(int(a.mode[k]))
    assert modes.count(kc.CLEARING_YELLOW) == 2 and modes.count(kc.CLEARING_RED) == 2
    assert int(a.stage[k]) == int(a.pre_stage[lo + link]) != nxt
    assert fleet.shown(k)[link] in "Gg"
