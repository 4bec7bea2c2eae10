"""Kernel: stage-based signal control (fixed-time plans, actuated, max-pressure, SOTL) with
emergency pre-emption, for every controller that runs a strategy, in one call per tick.

A staged controller shows one *stage* (a safe set of green links, from its program's green
phases) at a time. Every change of stage goes through a transition: links green in the old
stage and not in the new one show yellow for ``yellow`` seconds, then red for ``all_red``
seconds (links green in both stay green); only then does the new stage start. A stage ends
only after ``min_green`` seconds of green. The strategy decides when and where to go:

* ``FIXED``: a plan (cycle, offset, green window per stage) on a background cycle clock; the
  controller goes to the plan's current (or upcoming) stage, so after a disturbance it
  returns to the plan within a cycle.
* ``ACTUATED``: ends a green once its detectors saw no vehicle for ``max_gap`` seconds (or at
  ``max_green``), and goes to the next stage with a call; with no call anywhere it rests in
  green.
* ``MAX_PRESSURE``: once ``min_green`` is over and the queue that waited when the green began
  has had time to leave (``headway`` seconds per vehicle of its longest lane queue, at most
  ``max_green``), goes to the stage with the highest pressure (sum over its green links of
  approaching vehicles minus vehicles at the start of the exit lane; a link whose exit is
  blocked counts nothing), if higher than the
  current stage's; at ``max_green`` to the next stage with a call.
* ``SOTL``: self-organising (Gershenson; Cools et al. 2008): a counter per stage adds the
  vehicles approaching its red links every tick; after ``min_green`` the stage with the
  largest counter gets the green when the counter passes ``theta`` (unless 1..``mu`` vehicles
  are about to cross the current green), when no vehicle approaches the current green, or when
  its exit is blocked.

Pre-emption: every tick the emergency vehicles' routes are walked ahead; a signalised link
reached within ``eta`` seconds at free-flow speed requests its controller (for a vehicle not
yet departed, the time until its departure counts: the corridor is planned at dispatch). The
controller goes (after min green, through yellow and all-red) to the request's *pre-emption
stage* (see :mod:`citytwin.agents.controllers`): the link protected (``G``) and every link
crossing it red, and holds it until the vehicle has entered the junction (at most
``max_hold`` seconds); then the strategy takes over again.

The displayed letters are written into each controller's outside-controlled row of the signal
fleet (:class:`~citytwin.agents.signals.SignalFleet`), which ``signals_step`` publishes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from citytwin.agents.kernels._config import njit, njit_inline
from citytwin.agents.kernels.right_of_way import HALT_SPEED
from citytwin.agents.kernels.routes import find_conn
from citytwin.agents.kernels.strategies import (
    _EPS,
    ACTUATED,
    FIXED,
    MAX_PRESSURE,
    SOTL,
    _decide,
    _green,
)
from citytwin.agents.roads import RED, YELLOW

__all__ = ["ACTUATED", "CLEARING_RED", "CLEARING_YELLOW", "FIXED", "GREEN", "MAX_PRESSURE",
           "NOT_STAGED", "SOTL", "ControlArrays", "EmergencyArrays", "control_step"]

#: Controller modes (``ControlArrays.mode``); -1: not staged (program or device rules it).
NOT_STAGED, GREEN, CLEARING_YELLOW, CLEARING_RED = -1, 0, 1, 2


class ControlArrays(NamedTuple):
    """Staged controllers, their stages and links, sensing and pre-emption (plain arrays)."""

    # per controller
    mode: np.ndarray          # i1 NOT_STAGED, GREEN, CLEARING_YELLOW, CLEARING_RED
    strategy: np.ndarray      # i1
    stage: np.ndarray         # i4 global stage shown (in a transition: the one ending)
    nxt: np.ndarray           # i4 global stage a transition leads to
    t_mode: np.ndarray        # f8 seconds in the current mode (GREEN: green time)
    stage_ptr: np.ndarray     # i4[n_tls+1] global stages: regular ones, then one per link
    n_regular: np.ndarray     # i4 regular stages
    link_ptr: np.ndarray      # i4[n_tls+1] global link index of link 0
    ext_lo: np.ndarray        # i8 offset of the controller's row in the fleet's state codes
    yellow: np.ndarray        # f8
    all_red: np.ndarray       # f8
    min_green: np.ndarray     # f8
    max_green: np.ndarray     # f8
    max_gap: np.ndarray       # f8 actuated gap-out
    headway: np.ndarray       # f8 max-pressure: discharge time per queued vehicle, s
    hold: np.ndarray          # f8 max-pressure: green time the current stage keeps
    theta: np.ndarray         # f8 SOTL threshold, vehicle-seconds
    mu: np.ndarray            # f8 SOTL platoon size
    cycle: np.ndarray         # f8 fixed plan
    offset: np.ndarray        # f8 fixed plan
    max_hold: np.ndarray      # f8 longest pre-emption hold
    switches: np.ndarray      # i8 stage changes
    preemptions: np.ndarray   # i8 pre-emption requests served (one per vehicle and junction)
    pre_link: np.ndarray      # i4 requested global link this tick, -1 none
    pre_eta: np.ndarray       # f8 its ETA
    pre_ev: np.ndarray        # i4 requesting emergency vehicle
    pre_prev_ev: np.ndarray   # i4 requester of the previous tick
    pre_since: np.ndarray     # f8 start of the current request
    # per global stage
    codes_ptr: np.ndarray     # i8[n_stages+1] into stage_codes (one code per link)
    stage_codes: np.ndarray   # u1 link codes (RED, MINOR, MAJOR) of each stage
    serves: np.ndarray        # u1 same layout: 1 where the stage serves a request for the link
    stage_base: np.ndarray    # i4 the regular stage a pre-emption stage derives from
    plan_start: np.ndarray    # f8 green window start in the cycle (regular stages)
    plan_green: np.ndarray    # f8 green window length
    kappa: np.ndarray         # f8 SOTL counters
    det_ptr: np.ndarray       # i4[n_stages+1] detectors that extend a stage
    det: np.ndarray           # i4
    # per global link
    lconn_ptr: np.ndarray     # i4[n_links+1] connections of the link
    lconn: np.ndarray         # i4
    pre_stage: np.ndarray     # i4 the link's pre-emption stage
    # sensing (lane-area detectors)
    in_range: np.ndarray      # f8[n_lanes] watched length before the stop line (0: not watched)
    out_range: np.ndarray     # f8[n_lanes] watched length after the lane start (0: not watched)
    q_app: np.ndarray         # i4[n_conns] vehicles within in_range heading into the connection
    q_near: np.ndarray        # i4[n_conns] of those, within ``near`` of the stop line
    n_start: np.ndarray       # i4[n_lanes] vehicles within out_range of the lane start
    blocked: np.ndarray       # u1[n_lanes] a halted vehicle's back within ``block`` of the start
    watch_conns: np.ndarray   # i4 connections to reset each tick
    watch_lanes: np.ndarray   # i4 exit lanes to reset each tick
    params: np.ndarray        # f8[4] n_staged, near, block, (unused)


class EmergencyArrays(NamedTuple):
    """Emergency vehicles (vehicle types with priority > 0) and what their trips met."""

    trip_ev: np.ndarray       # i4[n_trips] emergency vehicle index, -1 for other trips
    ev_trip: np.ndarray       # i4[n_ev] trip of each emergency vehicle
    ev_slot: np.ndarray       # i4[n_ev] running slot, -1 when not on the network
    red: np.ndarray           # i4[n_ev] red (or yellow) signals met
    last_red: np.ndarray      # i4[n_ev] connection of the last one counted
    log_ptr: np.ndarray       # i4[n_ev+1] per vehicle: room for its pre-emption log
    log_n: np.ndarray         # i4[n_ev] entries used
    log_tls: np.ndarray       # i4 controller requested
    log_edge: np.ndarray      # i4 the edge it approached that controller on
    log_t0: np.ndarray        # f8 first request
    log_t1: np.ndarray        # f8 last request
    params: np.ndarray        # f8[4] preempt (0/1), eta s, meet reaction s, meet margin m


@njit
def control_step(t, dt, ctl, em, sig_codes, sig_external, det_last_on, veh, types, roads,
                 route_edges, trips, order, n_order):
    """Sense, take pre-emption requests, and advance every staged controller by one tick,
    writing the letters it shows into ``sig_codes`` (its outside-controlled row)."""
    if ctl.params[0] <= 0.0:
        return
    _sense(ctl, veh, types, roads, order, n_order)
    _requests(t, ctl, em, sig_external, veh, types, roads, route_edges, trips)
    for k in range(ctl.mode.shape[0]):
        if ctl.mode[k] == NOT_STAGED or sig_external[k]:
            continue
        _advance(k, t, dt, ctl, det_last_on, roads)
        _display(k, ctl, sig_codes)


@njit
def _sense(ctl, veh, types, roads, order, n_order):
    """Lane-area detection: approaching vehicles per connection, vehicles and blockage at the
    start of exit lanes."""
    for q in range(ctl.watch_conns.shape[0]):
        c = ctl.watch_conns[q]
        ctl.q_app[c] = 0
        ctl.q_near[c] = 0
    for q in range(ctl.watch_lanes.shape[0]):
        lane = ctl.watch_lanes[q]
        ctl.n_start[lane] = 0
        ctl.blocked[lane] = 0
    near, block = ctl.params[1], ctl.params[2]
    n_normal = roads.n_normal
    for k in range(n_order):
        i = order[k]
        if not veh.alive[i]:
            continue
        lane = veh.lane[i]
        if lane >= n_normal:
            continue
        p = veh.pos[i]
        r_in = ctl.in_range[lane]
        if r_in > 0.0:
            dist = roads.lane_length[lane] - p
            c = veh.next_conn[i]
            if dist <= r_in and c >= 0:
                ctl.q_app[c] += 1
                if dist <= near:
                    ctl.q_near[c] += 1
        r_out = ctl.out_range[lane]
        if r_out > 0.0:
            if p <= r_out:
                ctl.n_start[lane] += 1
            if veh.speed[i] < HALT_SPEED and p - types.length[veh.vtype[i]] <= block:
                ctl.blocked[lane] = 1


@njit
def _requests(t, ctl, em, sig_external, veh, types, roads, route_edges, trips):
    """Pre-emption requests of the emergency vehicles (the earliest ETA per controller wins),
    logged per vehicle: those on the network, and those dispatched to depart within the
    horizon (their ETA counts the time until departure, as a dispatch centre that plans the
    corridor when it sends the vehicle)."""
    ctl.pre_link[:] = -1
    ctl.pre_eta[:] = np.inf
    ctl.pre_ev[:] = -1
    if em.params[0] <= 0.0:
        return
    horizon = em.params[1]
    for e in range(em.ev_slot.shape[0]):
        i = em.ev_slot[e]
        if i >= 0:
            ty = veh.vtype[i]
            cl = veh.lane[i]
            eta = (roads.lane_length[cl] - veh.pos[i]) / _free_speed(cl, ty, types, roads)
            _walk(e, t, eta, cl, veh.next_conn[i], veh.ridx[i], veh.route_start[i],
                  veh.route_len[i] - 1, ty, horizon, ctl, em, sig_external, types, roads,
                  route_edges)
            continue
        tr = em.ev_trip[e]
        wait = max(trips.depart[tr] - t, 0.0)
        if trips.state[tr] != 0 or wait > horizon:
            continue  # arrived, or not dispatched yet
        rs, last = trips.route_start[tr], trips.route_len[tr] - 1
        if last < 1:
            continue
        ty = trips.vtype[tr]
        edge = route_edges[rs]
        n2 = route_edges[rs + 2] if last >= 2 else -1
        lo = roads.edge_first_lane[edge]
        for cl in range(lo, lo + roads.edge_num_lanes[edge]):  # a lane that leads on
            c = find_conn(cl, route_edges[rs + 1], n2, roads.lane_out_ptr, roads.lane_out,
                          roads.conn_to_edge, roads.conn_to_lane)
            if c >= 0:
                eta = wait + roads.lane_length[cl] / _free_speed(cl, ty, types, roads)
                _walk(e, t, eta, cl, c, 0, rs, last, ty, horizon, ctl, em, sig_external,
                      types, roads, route_edges)
                break


@njit
def _walk(e, t, eta, cl, c_first, r, rs, last, ty, horizon, ctl, em, sig_external, types,
          roads, route_edges):
    """Request every staged controller that emergency vehicle ``e`` reaches within
    ``horizon`` s, walking its route from the end of lane ``cl`` (reached in ``eta`` s) through
    connection ``c_first``; ``r`` is the route index of ``cl``'s edge."""
    n_normal = roads.n_normal
    first = True
    for _ in range(64):
        if eta > horizon:
            break
        if cl < n_normal:
            if r >= last:
                break
            if first:
                c = c_first
            else:
                n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
                c = find_conn(cl, route_edges[rs + r + 1], n2, roads.lane_out_ptr,
                              roads.lane_out, roads.conn_to_edge, roads.conn_to_lane)
            if c < 0:
                break
            k = roads.conn_tls[c]
            if k >= 0 and ctl.mode[k] != NOT_STAGED and not sig_external[k]:
                gl = ctl.link_ptr[k] + roads.conn_link[c]
                if ctl.pre_stage[gl] >= 0:
                    if eta < ctl.pre_eta[k]:
                        ctl.pre_eta[k] = eta
                        ctl.pre_link[k] = gl
                        ctl.pre_ev[k] = e
                    _log(em, e, k, roads.lane_edge[cl], t)
            cl = n_normal + c
        else:
            cl = roads.conn_to_lane[cl - n_normal]
            r += 1
        first = False
        eta += roads.lane_length[cl] / _free_speed(cl, ty, types, roads)


@njit_inline
def _free_speed(lane, ty, types, roads):
    return max(min(types.max_speed[ty], roads.lane_speed[lane] * types.speed_factor[ty]), 0.1)


@njit_inline
def _log(em, e, k, edge, t):
    lo = em.log_ptr[e]
    n = em.log_n[e]
    for q in range(lo, lo + n):
        if em.log_tls[q] == k and em.log_edge[q] == edge:
            em.log_t1[q] = t
            return
    if lo + n < em.log_ptr[e + 1]:
        em.log_tls[lo + n] = k
        em.log_edge[lo + n] = edge
        em.log_t0[lo + n] = t
        em.log_t1[lo + n] = t
        em.log_n[e] = n + 1


@njit
def _advance(k, t, dt, ctl, det_last_on, roads):
    """One tick of controller ``k``'s stage machine."""
    pre = ctl.pre_link[k]
    ev = ctl.pre_ev[k]
    if ev >= 0 and ev != ctl.pre_prev_ev[k]:
        ctl.pre_since[k] = t
        ctl.preemptions[k] += 1
    ctl.pre_prev_ev[k] = ev
    if pre >= 0 and t - ctl.pre_since[k] > ctl.max_hold[k] + _EPS:
        pre = -1  # held too long (a stuck vehicle): the strategy takes over again
    m = ctl.mode[k]
    cur = ctl.stage[k]
    if m == GREEN:
        target = -1
        g = ctl.t_mode[k]
        if pre >= 0:
            ps = ctl.pre_stage[pre]
            if not _serves(ctl, cur, pre - ctl.link_ptr[k]) and g >= ctl.min_green[k] - _EPS:
                target = ps
        else:
            target = _decide(k, t, dt, cur, g, ctl, det_last_on, roads)
        if target >= 0 and target != cur:
            _begin(k, cur, target, ctl)
    else:
        if pre >= 0:
            ps = ctl.pre_stage[pre]
            if ps != ctl.nxt[k] and _same_kept(ctl, cur, ctl.nxt[k], ps):
                ctl.nxt[k] = ps
        if m == CLEARING_YELLOW and ctl.t_mode[k] >= ctl.yellow[k] - _EPS:
            if ctl.all_red[k] > _EPS:
                ctl.mode[k] = CLEARING_RED
                ctl.t_mode[k] = 0.0
            else:
                _enter(k, ctl.nxt[k], ctl)
        elif m == CLEARING_RED and ctl.t_mode[k] >= ctl.all_red[k] - _EPS:
            _enter(k, _revert(k, cur, ctl.nxt[k], pre, ctl), ctl)
    ctl.t_mode[k] += dt


@njit
def _serves(ctl, s, link):
    return ctl.serves[ctl.codes_ptr[s] + link] != 0


@njit
def _same_kept(ctl, a, b, c):
    """Would a transition from ``a`` keep the same links green towards ``c`` as towards
    ``b``? (Only then may a transition be redirected: nothing that turned yellow returns.)"""
    n = ctl.codes_ptr[a + 1] - ctl.codes_ptr[a]
    pa, pb, pc = ctl.codes_ptr[a], ctl.codes_ptr[b], ctl.codes_ptr[c]
    for q in range(n):
        ga = _green(ctl.stage_codes[pa + q])
        if ga and (_green(ctl.stage_codes[pb + q]) != _green(ctl.stage_codes[pc + q])):
            return False
    return True


@njit
def _revert(k, a, b, pre, ctl):
    """The stage to enter at the end of the all-red of a transition from ``a`` to ``b``:
    ``b``, or the pre-emption stage of the requested link ``pre`` when ``b`` does not serve it
    and every link still green (green in ``a`` and ``b``) stays green in it. A red revert: the
    links that ended have shown their yellow and all-red in full and ``b`` never began, so no
    clearance or minimum green is cut short, and the request does not wait for a whole extra
    stage (clearance, ``b``'s minimum green, clearance again)."""
    if pre < 0 or _serves(ctl, b, pre - ctl.link_ptr[k]):
        return b
    c = ctl.pre_stage[pre]
    pa, pb, pc = ctl.codes_ptr[a], ctl.codes_ptr[b], ctl.codes_ptr[c]
    for q in range(ctl.codes_ptr[a + 1] - pa):
        if (_green(ctl.stage_codes[pa + q]) and _green(ctl.stage_codes[pb + q])
                and not _green(ctl.stage_codes[pc + q])):
            return b
    return c


@njit
def _begin(k, a, b, ctl):
    """Start the transition from stage ``a`` to ``b`` (straight to ``b`` if no link ends)."""
    n = ctl.codes_ptr[a + 1] - ctl.codes_ptr[a]
    pa, pb = ctl.codes_ptr[a], ctl.codes_ptr[b]
    ends = False
    for q in range(n):
        if _green(ctl.stage_codes[pa + q]) and not _green(ctl.stage_codes[pb + q]):
            ends = True
            break
    ctl.nxt[k] = b
    if ends:
        ctl.mode[k] = CLEARING_YELLOW
        ctl.t_mode[k] = 0.0
    else:
        _enter(k, b, ctl)


@njit
def _enter(k, s, ctl):
    ctl.stage[k] = s
    ctl.nxt[k] = s
    ctl.mode[k] = GREEN
    ctl.t_mode[k] = 0.0
    ctl.switches[k] += 1
    ctl.kappa[ctl.stage_base[s]] = 0.0
    if ctl.strategy[k] == MAX_PRESSURE:  # let the waiting queue leave before deciding again
        longest = 0
        lo = ctl.codes_ptr[s]
        for q in range(ctl.codes_ptr[s + 1] - lo):
            if _green(ctl.stage_codes[lo + q]):
                gl = ctl.link_ptr[k] + q
                for z in range(ctl.lconn_ptr[gl], ctl.lconn_ptr[gl + 1]):
                    longest = max(longest, ctl.q_app[ctl.lconn[z]])
        ctl.hold[k] = min(ctl.headway[k] * longest, ctl.max_green[k])


@njit
def _display(k, ctl, sig_codes):
    lo = ctl.ext_lo[k]
    a, b = ctl.codes_ptr[ctl.stage[k]], ctl.codes_ptr[ctl.nxt[k]]
    n = ctl.link_ptr[k + 1] - ctl.link_ptr[k]
    m = ctl.mode[k]
    for q in range(n):
        ca = ctl.stage_codes[a + q]
        if m == GREEN or (_green(ca) and _green(ctl.stage_codes[b + q])):
            out = ca
        elif _green(ca) and m == CLEARING_YELLOW:
            out = YELLOW
        else:
            out = RED
        sig_codes[lo + q] = out
