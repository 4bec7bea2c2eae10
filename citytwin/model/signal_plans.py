"""Fixed-time plans computed from the demand: Webster's cycle and splits, and green waves.

Computed once, before a run, from the routed trips:

1. **Flows per link.** Every routed trip adds one vehicle to each signalised movement on its
   route (incoming edge to outgoing edge), split evenly over the movement's lanes (its
   connections), at the time it would pass at free-flow speed. The design flow of a junction
   is the rate of its busiest ``window`` seconds (the peak 15 minutes by default).
2. **Webster.** Per stage, the critical flow ratio ``y`` is the largest, over the stage's
   incoming lanes, of the lane's flow on links green in that stage divided by the saturation
   flow (links that must yield, ``g``, count ``permissive_factor`` times). With ``Y`` the sum
   over stages and ``L`` the lost time (``lost_time`` per stage, by default the intergreen
   ``yellow + all_red``: start-up loss and the use of yellow cancel out), the optimal cycle is
   ``C0 = (1.5 L + 5) / (1 - Y)``, clamped to ``[min_cycle, max_cycle]`` (``max_cycle`` when
   ``Y`` >= 0.95); effective green ``C - L`` is split in proportion to ``y``, each green at
   least ``min_green``, rounded to the tick.
3. **Green wave.** Along an arterial (a list of edges), every signalised junction runs the
   longest Webster cycle of the arterial, split for its own flows, with offsets so that the
   stage serving the arterial turns green when a vehicle leaving the first junction at the
   progression speed arrives.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from citytwin.agents.controllers import ControlFleet, Plan, Timing
from citytwin.agents.roads import MAJOR, MINOR
from citytwin.errors import ScenarioError
from citytwin.model.network import Network


@dataclass(frozen=True)
class WebsterParams:
    """Inputs of Webster's method (see the module docstring)."""

    saturation_flow: float = 1800.0   # veh/h per lane
    lost_time: float | None = None    # s per stage; None: yellow + all_red
    min_cycle: float = 30.0
    max_cycle: float = 120.0
    window: float = 900.0             # s of the design period (busiest window)
    permissive_factor: float = 1.5    # car equivalents of a yielding movement


@dataclass(frozen=True)
class RoutedTrips:
    """What plans need of the demand: depart times and routes (edge-index route table)."""

    depart: np.ndarray
    route_start: np.ndarray
    route_len: np.ndarray
    route_edges: np.ndarray


def link_flows(net: Network, trips: RoutedTrips, window: float) -> list[np.ndarray]:
    """Design flow (veh/h) per link of every signal controller: the busiest ``window``
    seconds of each junction."""
    free = net.edge_length / net.edge_speed
    by_move: dict[tuple[int, int], list[int]] = {}
    for c in range(net.n_connections):
        if net.conn_tls[c] >= 0:
            by_move.setdefault((int(net.conn_from_edge[c]), int(net.conn_to_edge[c])),
                               []).append(c)
    times: list[list[float]] = [[] for _ in range(len(net.programs))]
    weights: list[list[tuple[int, float]]] = [[] for _ in range(len(net.programs))]
    for tr in range(trips.depart.size):
        n = int(trips.route_len[tr])
        if n < 2:
            continue
        r = trips.route_edges[trips.route_start[tr]:trips.route_start[tr] + n]
        t = float(trips.depart[tr])
        for a, b in zip(r[:-1].tolist(), r[1:].tolist(), strict=True):
            t += float(free[a])
            conns = by_move.get((a, b))
            if conns:
                k = int(net.conn_tls[conns[0]])
                for c in conns:
                    times[k].append(t)
                    weights[k].append((int(net.conn_link[c]), 1.0 / len(conns)))
    out = []
    for k, prog in enumerate(net.programs):
        flow = np.zeros(prog.n_links)
        if times[k]:
            ts = np.asarray(times[k])
            links = np.array([w[0] for w in weights[k]])
            ws = np.array([w[1] for w in weights[k]])
            span = max(float(ts.max() - ts.min()), 1.0)
            width = min(window, span)
            best = None
            for start in np.arange(float(ts.min()), float(ts.max()) - width + 1e-9 + 60.0,
                                   60.0):
                inside = (ts >= start) & (ts < start + width)
                total = float(ws[inside].sum())
                if best is None or total > best[0]:
                    best = (total, inside)
            assert best is not None
            np.add.at(flow, links[best[1]], ws[best[1]])
            flow *= 3600.0 / width
        out.append(flow)
    return out


def webster_plan(stages: Sequence[str], lane_of_link: Sequence[Sequence[int]],
                 flow: np.ndarray, timing: Timing, params: WebsterParams,
                 dt: float = 1.0) -> tuple[Plan, dict[str, float]]:
    """Webster's plan for one controller.

    Args:
        stages: State strings of its stages, in order.
        lane_of_link: Per link, the incoming lanes of its connections.
        flow: Design flow per link, veh/h.
        timing: Yellow, all-red and minimum green.
        params: Webster's inputs.
        dt: Greens are rounded to whole ticks.

    Returns:
        The plan (offset 0) and its figures (``Y``, ``L``, ``C0``).
    """
    n = len(stages)
    ys = np.zeros(n)
    for x, st in enumerate(stages):
        per_lane: Counter[int] = Counter()
        for link, ch in enumerate(st):
            code = MAJOR if ch == "G" else MINOR if ch == "g" else 0
            if not code or flow[link] <= 0:
                continue
            w = params.permissive_factor if code == MINOR else 1.0
            for lane in lane_of_link[link]:
                per_lane[lane] += flow[link] * w / max(len(lane_of_link[link]), 1)
        ys[x] = max(per_lane.values(), default=0.0) / params.saturation_flow
    inter = timing.yellow + timing.all_red
    lost = n * (params.lost_time if params.lost_time is not None else inter)
    y_sum = float(ys.sum())
    c0 = (1.5 * lost + 5.0) / (1.0 - y_sum) if y_sum < 0.95 else math.inf
    cycle = min(max(c0, params.min_cycle), params.max_cycle)
    eff = max(cycle - lost, 0.0)
    share = ys / y_sum if y_sum > 0 else np.full(n, 1.0 / n)
    greens = tuple(max(round(max(eff * s, timing.min_green) / dt) * dt, timing.min_green)
                   for s in share)
    total = float(sum(greens)) + n * inter
    return Plan(total, 0.0, greens), {"Y": y_sum, "L": lost, "C0": c0}


def webster_plans(control: ControlFleet, flows: list[np.ndarray], timing: Timing,
                  params: WebsterParams, dt: float,
                  cycle: dict[int, float] | None = None) -> list[tuple[Plan, dict[str, float]]]:
    """Webster plans of every controller (``cycle`` forces the cycle of some)."""
    net = control.network
    out = []
    for k in range(len(control)):
        lanes: list[list[int]] = [[] for _ in range(net.programs[k].n_links)]
        for c in np.flatnonzero(net.conn_tls == k).tolist():
            lanes[int(net.conn_link[c])].append(int(net.conn_from_lane[c]))
        p = params
        if cycle and k in cycle:
            p = WebsterParams(p.saturation_flow, p.lost_time, cycle[k], cycle[k], p.window,
                              p.permissive_factor)
        out.append(webster_plan(control.stage_states(k), lanes, flows[k], timing, p, dt))
    return out


def arterial_junctions(net: Network, control: ControlFleet, arterial: Sequence[str]
                       ) -> list[tuple[int, int, float]]:
    """Signal controllers along ``arterial`` (edge ids in driving order): per junction the
    controller, the stage that serves the arterial movement and the distance from the first
    one's stop line, m."""
    idx = []
    for e in arterial:
        if e not in net.edge_index:
            raise ScenarioError(f"unknown edge {e!r}")
        idx.append(net.edge_index[e])
    out = []
    dist = 0.0
    for a, b in itertools.pairwise(idx):
        conns = [c for c in range(net.n_connections)
                 if net.conn_from_edge[c] == a and net.conn_to_edge[c] == b]
        if not conns:
            raise ScenarioError(f"edges {net.edge_ids[a]!r} and {net.edge_ids[b]!r} are not "
                                "connected")
        k = int(net.conn_tls[conns[0]])
        if k >= 0:
            link = int(net.conn_link[conns[0]])
            stages = control.stage_states(k)
            serving = [x for x, st in enumerate(stages) if st[link] == "G"] or [
                x for x, st in enumerate(stages) if st[link] == "g"]
            if serving:
                out.append((k, serving[0], dist))
        dist += float(net.lane_length[net.n_normal_lanes + conns[0]]) + float(
            net.edge_length[b])
    return out


def green_wave_plans(control: ControlFleet, flows: list[np.ndarray], timing: Timing,
                     params: WebsterParams, dt: float, arterial: Sequence[str],
                     speed: float | None) -> list[tuple[Plan, dict[str, float]]]:
    """Webster plans, with the arterial's junctions coordinated (common cycle, offsets)."""
    net = control.network
    along = arterial_junctions(net, control, arterial)
    if len(along) < 2:
        raise ScenarioError("the arterial passes fewer than two signalised junctions")
    plans = webster_plans(control, flows, timing, params, dt)
    common = max(plans[k][0].cycle for k, _, _ in along)
    base = webster_plans(control, flows, timing, params, dt,
                         cycle={k: common for k, _, _ in along})
    if speed is None:
        speed = float(net.edge_speed[net.edge_index[arterial[0]]])
    inter = timing.yellow + timing.all_red
    out = list(plans)
    for k, stage, dist in along:
        plan, info = base[k]
        start = sum(plan.greens[:stage]) + stage * inter
        offset = round(((dist / speed - start) % plan.cycle) / dt) * dt
        out[k] = (Plan(plan.cycle, offset, plan.greens), {**info, "offset": offset})
    return out


def busiest_route(trips: RoutedTrips, net: Network) -> list[str]:
    """The route most trips drive among those through at least two signalised junctions
    (ties: the longer one), as edge ids."""
    signalised = np.zeros(net.n_junctions, bool)
    signalised[net.conn_junction[net.conn_tls >= 0]] = True
    count: Counter[tuple[int, ...]] = Counter()
    for tr in range(trips.depart.size):
        n = int(trips.route_len[tr])
        if n >= 3:
            s = int(trips.route_start[tr])
            route = trips.route_edges[s:s + n]
            if signalised[net.edge_to[route[:-1]]].sum() >= 2:
                count[tuple(route.tolist())] += 1
    if not count:
        raise ScenarioError("no routed trip passes two signalised junctions; set "
                            "green_wave.arterial")
    best = max(count.items(), key=lambda kv: (kv[1], len(kv[0])))[0]
    return [net.edge_ids[e] for e in best]
