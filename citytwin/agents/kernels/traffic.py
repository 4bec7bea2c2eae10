"""Kernels of one traffic tick: look ahead, follow, move.

After the sort (:mod:`citytwin.agents.kernels.order`: vehicles by lane and position, so the
leader of ``order[k]`` is ``order[k+1]`` while both share a lane) the fleet calls, per tick
and in this order, :func:`prepass`, :func:`follow` (IDM car-following, stop lines, junction
right of way; chooses each vehicle's speed) and :func:`move` (positions, lane-to-lane
transitions, arrivals, teleports, statistics, loop detectors).
"""

from __future__ import annotations

import math

import numpy as np

from citytwin.agents.kernels._config import njit, njit_inline, njit_pipelined
from citytwin.agents.kernels.idm import (
    B_A,
    B_B,
    B_DELTA,
    B_FREE,
    B_GAP,
    B_LEAD,
    B_ROWS,
    B_S0,
    B_T,
    B_V,
    B_VLEAD,
    B_VMAX,
    BLOCK,
    defer_speed,
    defer_stop,
    idm_speeds,
)
from citytwin.agents.kernels.right_of_way import (
    CONFLICT_WINDOW,
    HALT_SPEED,
    blind_to_foes,
    exit_free,
    foes_inside,
    link_open,
    look_ahead,
    stops_for,
    wait_open,
)
from citytwin.agents.kernels.routes import find_conn
from citytwin.agents.kernels.state import N_BUSY, N_CONNS, N_TAILS
from citytwin.agents.roads import MAJOR, MINOR, RED

LOOKAHEAD = 250.0         # m; beyond this the road after the own lane counts as free
POSITION_EPS = 0.1        # m; SUMO's POSITION_EPS
RED_STOP_GAP = 1.0        # m; vehicles stop this far before a red or yellow light (SUMO's
#                           jmStoplineGap default), less if braking for it would be too hard
MINOR_STOP_GAP = POSITION_EPS  # m; and this far before a link they must yield at
STATS = 8                 # length of the per-tick stats vector of move()
S_ARRIVED, S_SPEED, S_HALTING, S_TELEPORTS, S_OUT, S_EMERGENCY, S_BLOCKED, S_MOVED = range(8)
B_SAFE, B_EMERGENCY = B_ROWS, B_ROWS + 1  # rows of follow()'s block after idm_speeds' rows


@njit_inline
def stop_gap(priority: bool, dist: float, v: float, b: float, dt: float) -> float:
    """How far before a closed link ``dist`` m ahead a vehicle at ``v`` stops (SUMO's
    laneStopOffset): :data:`RED_STOP_GAP` at a light or a priority link, :data:`MINOR_STOP_GAP`
    at a link it yields at; closer if stopping there would brake harder than ``b``."""
    gap = RED_STOP_GAP if priority else MINOR_STOP_GAP
    bdt = b * dt
    steps = math.floor(v / bdt)  # SUMO's brakeGap for one-step (Euler) braking
    brake = dt * (steps * v - bdt * steps * (steps + 1) / 2.0)
    if dist >= brake:
        gap = min(gap, dist - brake)
    return max(MINOR_STOP_GAP, gap)


@njit_inline
def mark_tail(lane_i, lane_length, tail_back, tail_speed, tails, counts):
    """Call before setting the tail of ``lane_i`` outside the prepass: lists the lane among
    those whose tail the next prepass resets (if it is not listed yet)."""
    if np.isinf(tail_speed[lane_i]) and tail_back[lane_i] == lane_length[lane_i]:
        tails[counts[N_TAILS]] = lane_i
        counts[N_TAILS] += 1


@njit_inline
def list_conn(c, listed, conns, counts):
    """Call before setting a figure of connection ``c`` (occupancy, back, approach): lists it
    among the connections whose figures the next prepass resets."""
    if not listed[c]:
        listed[c] = 1
        conns[counts[N_CONNS]] = c
        counts[N_CONNS] += 1


@njit_inline
def _room(lane_i, s, e, order, speed, pos, vtype, link_wait, length, min_gap, lane_length,
          room_out, standing_out, brutto_out):
    """``ls.room``, ``ls.standing`` and ``ls.brutto`` of a lane whose vehicles are
    ``order[s:e]``, rearmost first."""
    total = 0.0
    room = -1.0
    for k in range(s, e):
        i = order[k]
        ty = vtype[i]
        if room < 0.0 and speed[i] < HALT_SPEED:
            room = max(pos[i] - length[ty] - total, 0.0)
        total += length[ty] + min_gap[ty]
    brutto_out[lane_i] = total
    standing_out[lane_i] = room >= 0.0 or link_wait[order[s]] == 1
    room_out[lane_i] = room if room >= 0.0 else lane_length[lane_i] - total


@njit_pipelined
def prepass(order, n, veh, types, roads, ls, route_edges, dt):
    """Per-lane tails, junction occupancy, reserved space and approach times for this tick.

    Works through the busy lanes only (``ls.busy``, from the last :func:`index_lanes` of
    ``order[:n]``); what the last tick set elsewhere (``ls.tails``, ``ls.conns``) is reset.
    """
    n_normal = roads.n_normal
    busy, tails, counts = ls.busy, ls.tails, ls.counts
    listed, conns = ls.conn_listed, ls.conns
    for q in range(counts[N_TAILS]):
        lane_i = tails[q]
        ls.tail_back[lane_i] = roads.lane_length[lane_i]
        ls.tail_speed[lane_i] = np.inf
        ls.room[lane_i] = roads.lane_length[lane_i]
        ls.standing[lane_i] = 0
        ls.brutto[lane_i] = 0.0
    for q in range(counts[N_CONNS]):
        c = conns[q]
        listed[c] = 0
        ls.occ[c] = 0
        ls.min_back[c] = np.inf
        ls.occ_go[c] = 0
        ls.min_back_go[c] = np.inf
        ls.approach[c] = np.inf
        ls.approach_wait[c] = -1.0
        ls.reserved[roads.conn_to_lane[c]] = 0.0  # only vehicles on c reserve space there
    counts[N_CONNS] = 0
    for q in range(counts[N_BUSY]):
        lane_i = busy[q]
        tails[q] = lane_i
        s, e = ls.lane_span[lane_i, 0], ls.lane_span[lane_i, 1]
        j = order[s]
        ls.tail_back[lane_i] = veh.pos[j] - types.length[veh.vtype[j]]
        ls.tail_speed[lane_i] = veh.speed[j]
        _room(lane_i, s, e, order, veh.speed, veh.pos, veh.vtype, veh.link_wait, types.length,
              types.min_gap, roads.lane_length, ls.room, ls.standing, ls.brutto)
        if lane_i >= n_normal:
            c = lane_i - n_normal
            list_conn(c, listed, conns, counts)
            ls.occ[c] += e - s
            to = roads.conn_to_lane[c]
            w = roads.conn_wait[c]
            for k in range(s, e):
                i = order[k]
                ty = veh.vtype[i]
                back = veh.pos[i] - types.length[ty]
                ls.reserved[to] += types.length[ty] + types.min_gap[ty]
                ls.min_back[c] = min(ls.min_back[c], back)
                if not (veh.pos[i] <= w + 1e-9 and veh.speed[i] < HALT_SPEED):
                    ls.occ_go[c] += 1  # not waiting at (or queued before) the wait point
                    ls.min_back_go[c] = min(ls.min_back_go[c], back)
        else:
            for k in range(s, e):  # backs still inside the junction behind them
                i = order[k]
                inside = types.length[veh.vtype[i]] - veh.pos[i]
                if inside <= 0.0:
                    break
                # A back in the last half of its connection is left out: two vehicles
                # straddling short edges could otherwise block each other for ever.
                lc = veh.last_conn[i]
                if lc >= 0:
                    lc_len = roads.lane_length[n_normal + lc]
                    if inside > 0.5 * lc_len:
                        list_conn(lc, listed, conns, counts)
                        ls.min_back[lc] = min(ls.min_back[lc], lc_len - inside)
                        ls.min_back_go[lc] = min(ls.min_back_go[lc], lc_len - inside)
    counts[N_TAILS] = counts[N_BUSY]
    for q in range(counts[N_BUSY]):  # the lane fronts approaching links, once all is known
        lane_i = busy[q]
        if lane_i >= n_normal:
            break
        front = order[ls.lane_span[lane_i, 1] - 1]
        c = veh.next_conn[front]
        if c < 0 or ls.conn_state[c] == RED:
            continue
        st = ls.conn_state[c]
        dist = roads.lane_length[lane_i] - veh.pos[front]
        v = veh.speed[front]
        ty = veh.vtype[front]
        if stops_for(st, v, types.decel[ty], dist):
            continue  # will stop at the yellow
        if v < HALT_SPEED:
            # A standing vehicle that cannot enter now does not approach (SUMO's willPass):
            # those yielding to it need not wait for it, and cannot wait for each other.
            w = roads.conn_wait[c] if st == MINOR else -1.0
            to = roads.conn_to_lane[c]
            if foes_inside(c, 0.0, w if w >= 0.0 else np.inf, roads.conn_foe_ptr,
                           roads.conn_foe, roads.conn_foe_clear, roads.conn_foe_at,
                           roads.conn_foe_yields, ls.occ, ls.min_back, ls.occ_go,
                           ls.min_back_go, w >= 0.0 and roads.conn_tls[c] >= 0) or (
                    not exit_free(c, veh.ridx[front], veh.route_start[front],
                                  veh.route_len[front] - 1, dist,
                                  look_ahead(v + types.accel[ty] * dt, types.decel[ty], dt),
                                  types.length[ty] + types.min_gap[ty], n_normal,
                                  roads.lane_length, roads.conn_to_lane, roads.conn_to_edge,
                                  roads.lane_out_ptr, roads.lane_out, ls.conn_state, ls.room,
                                  ls.standing, ls.brutto, route_edges)):
                continue
        eta = dist / max(v, 1.0)
        if eta < ls.approach[c]:
            list_conn(c, listed, conns, counts)
            ls.approach[c] = eta
            ls.approach_wait[c] = veh.halt_cont[front] if v < HALT_SPEED else -1.0


@njit_pipelined
def follow(order, n, veh, types, roads, ls, route_edges, dt, speed_next, cap_out):
    """Choose every running vehicle's speed for this tick (IDM, stop lines, right of way).

    Writes ``speed_next`` and ``cap_out`` (``veh.speed_next`` and ``veh.cap``: the most the
    vehicle may drive this tick without reaching a stopped obstacle or a leader at its
    emergency deceleration). Every vehicle reads the tick's state and writes only its own
    row.

    It works through ``order`` in blocks of :data:`~citytwin.agents.kernels.idm.BLOCK`
    vehicles: each vehicle's limits are found first, the IDM speeds among them (free road,
    behind the leader, before a stop) listed, then computed for the whole block at once
    (:func:`~citytwin.agents.kernels.idm.idm_speeds`), and the least limit taken.
    """
    n_normal = roads.n_normal
    lane_speed, lane_length, conn_wait = roads.lane_speed, roads.lane_length, roads.conn_wait
    foe_ptr, foe, foe_clear = roads.conn_foe_ptr, roads.conn_foe, roads.conn_foe_clear
    foe_at, foe_yields = roads.conn_foe_at, roads.conn_foe_yields
    resp_ptr, resp, conn_to_lane = roads.conn_resp_ptr, roads.conn_resp, roads.conn_to_lane
    conn_tls = roads.conn_tls
    conn_state, occ, min_back, occ_go = ls.conn_state, ls.occ, ls.min_back, ls.occ_go
    min_back_go, approach, approach_wait = ls.min_back_go, ls.approach, ls.approach_wait
    room, standing, brutto = ls.room, ls.standing, ls.brutto
    all4 = True  # (idm_speeds: no call to pow)
    for ty in range(types.delta.shape[0]):
        all4 = all4 and types.delta[ty] == 4.0
    blk = np.empty((B_ROWS + 2, BLOCK))
    later = np.empty((B_ROWS, 2 * BLOCK))  # the block's other IDM speeds (defer_speed)
    later_q = np.empty(2 * BLOCK, np.int64)
    for k0 in range(0, n, BLOCK):  # in blocks: the IDM speeds of a block are computed at once
        m = min(BLOCK, n - k0)
        nd = 0
        for q in range(m):
            k = k0 + q
            i = order[k]
            ty = veh.vtype[i]
            a, b = types.accel[ty], types.decel[ty]
            s0, T, dl = types.min_gap[ty], types.tau[ty], types.delta[ty]
            length, v_type, sf = types.length[ty], types.max_speed[ty], types.speed_factor[ty]
            v, p, lane_i = veh.speed[i], veh.pos[i], veh.lane[i]
            halt = veh.halt_cont[i]
            vmax = min(v_type, lane_speed[lane_i] * sf)
            blk[B_V, q], blk[B_VMAX, q], blk[B_A, q], blk[B_B, q] = v, vmax, a, b
            blk[B_S0, q], blk[B_T, q], blk[B_DELTA, q] = s0, T, dl
            blk[B_GAP, q], blk[B_VLEAD, q] = np.inf, 0.0  # (no leader on the lane)
            vs = np.inf  # the least of the limits besides those two IDM speeds
            look = look_ahead(min(v + a * dt, vmax), b, dt)
            cap = np.inf
            waits = False  # stops at the wait point of the connection it is on
            held = False  # stops for a link or a wait point ahead, or waits on its connection
            if lane_i >= n_normal:
                c = lane_i - n_normal
                w = conn_wait[c]
                if w >= 0.0 and p <= w and conn_state[c] != MAJOR and blind_to_foes(v, w - p, b):
                    vs, nd = defer_speed(vs, q, v, vmax, w - p, 0.0, a, b, 0.0, T, dl, dt, later,
                                         later_q, nd)
                if w >= 0.0 and p <= w and conn_state[c] != MAJOR and not wait_open(
                        c, w - p, v, halt, length, a, v_type, sf, lane_length[lane_i],
                        lane_speed[lane_i], w, foe_ptr, foe, foe_clear, foe_at, foe_yields,
                        resp_ptr, resp, occ, min_back, occ_go, min_back_go, approach,
                        approach_wait):
                    vs, nd = defer_stop(vs, q, v, vmax, w - p - MINOR_STOP_GAP, a, b, T, dl, dt,
                                        later, later_q, nd)
                    cap = max(w - p - 1e-9, 0.0)
                    waits = held = True
            if k + 1 < n and veh.lane[order[k + 1]] == lane_i:
                j = order[k + 1]
                gap = veh.pos[j] - types.length[veh.vtype[j]] - p
                vj = veh.speed[j]
                blk[B_GAP, q], blk[B_VLEAD, q] = gap, vj
                ej = types.emergency_decel[veh.vtype[j]]
                cap = min(cap, gap + max(0.0, vj - ej * dt) * dt)
                c = veh.next_conn[i]  # a red light ahead holds it too, as it does in SUMO
                if lane_i < n_normal and c >= 0 and veh.ridx[i] < veh.route_len[i] - 1:
                    dist = lane_length[lane_i] - p
                    if stops_for(conn_state[c], v, b, dist):
                        vs, nd = defer_stop(vs, q, v, vmax, dist - stop_gap(True, dist, v, b, dt),
                                            a, b, T, dl, dt, later, later_q, nd)
            elif not waits:
                dist = lane_length[lane_i] - p
                cl = lane_i
                r = veh.ridx[i]
                last = veh.route_len[i] - 1
                rs = veh.route_start[i]
                first = True
                for _ in range(8):
                    if dist > LOOKAHEAD and not first:  # (the own lane's link counts, as in SUMO)
                        break
                    stop = -1.0  # distance to a wait point to stop at, on the lane entered now
                    if cl < n_normal:
                        if r >= last:
                            break  # arrives at the end of this lane: nothing ahead matters
                        if first:
                            c = veh.next_conn[i]
                        else:
                            n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
                            c = find_conn(cl, route_edges[rs + r + 1], n2, roads.lane_out_ptr,
                                          roads.lane_out, roads.conn_to_edge, conn_to_lane)
                        if c >= 0:
                            via = n_normal + c
                            # (link_open reads it only within the conflict window)
                            box_free = dist / max(v, 1.0) >= CONFLICT_WINDOW or exit_free(
                                c, r, rs, last, dist, look, length + s0, n_normal, lane_length,
                                conn_to_lane, roads.conn_to_edge, roads.lane_out_ptr,
                                roads.lane_out, conn_state, room, standing, brutto, route_edges)
                        if c < 0 or not link_open(
                                c, dist, v, halt, length, a, b, v_type, sf, lane_length[via],
                                lane_speed[via], conn_wait[c], box_free, conn_tls[c] >= 0, foe_ptr,
                                foe, foe_clear,
                                foe_at, foe_yields, resp_ptr, resp, conn_state, occ, min_back,
                                occ_go, min_back_go, approach, approach_wait):
                            to_stop = dist - stop_gap(c >= 0 and conn_state[c] != MINOR, dist,
                                                      v, b, dt)
                            vs, nd = defer_stop(vs, q, v, vmax, to_stop, a, b, T, dl, dt, later,
                                                later_q, nd)
                            cap = min(cap, max(dist - 1e-9, 0.0))
                            held = True
                            break
                        if conn_state[c] == MINOR and blind_to_foes(v, dist, b):
                            vs, nd = defer_speed(vs, q, v, vmax, dist, 0.0, a, b, 0.0, T, dl, dt,
                                                 later, later_q, nd)
                        cl = n_normal + c
                        w = conn_wait[c]
                        if w >= 0.0 and conn_state[c] != MAJOR and blind_to_foes(v, dist + w, b):
                            vs, nd = defer_speed(vs, q, v, vmax, dist + w, 0.0, a, b, 0.0, T, dl,
                                                 dt, later, later_q, nd)
                        if w >= 0.0 and conn_state[c] != MAJOR and not wait_open(
                                c, dist + w, v, halt, length, a, v_type, sf, lane_length[via],
                                lane_speed[via], w, foe_ptr, foe, foe_clear, foe_at, foe_yields,
                                resp_ptr, resp, occ, min_back, occ_go, min_back_go, approach,
                                approach_wait):
                            stop = dist + w
                    else:
                        cl = conn_to_lane[cl - n_normal]
                        r += 1
                    first = False
                    vn = min(v_type, lane_speed[cl] * sf)
                    if v > vn:  # slow down for a slower lane (turns), braking at b as late as
                        # one-step braking allows (as SUMO's vehicles do), not all along the way
                        bdt = b * dt
                        vs = min(vs, max(vn, np.sqrt(bdt * bdt + vn * vn + 2.0 * b * dist) - bdt))
                    if stop >= 0.0:
                        held = True
                        vs, nd = defer_stop(vs, q, v, vmax, stop - MINOR_STOP_GAP, a, b, T, dl,
                                            dt, later, later_q, nd)
                        cap = min(cap, max(stop - 1e-9, 0.0))
                    s, e = ls.lane_span[cl, 0], ls.lane_span[cl, 1]
                    if s < e:
                        j = order[s]
                        gap = dist + veh.pos[j] - types.length[veh.vtype[j]]
                        vs, nd = defer_speed(vs, q, v, vmax, gap, veh.speed[j], a, b, s0, T, dl,
                                             dt, later, later_q, nd)
                        ej = types.emergency_decel[veh.vtype[j]]
                        cap = min(cap, gap + max(0.0, veh.speed[j] - ej * dt) * dt)
                        break
                    if stop >= 0.0:
                        break
                    dist += lane_length[cl]
            j = veh.coop[i]  # a vehicle this one holds back for (lanechange: lets it in)
            veh.coop[i] = -1  # (for this tick only)
            if j >= 0 and veh.alive[j] and veh.pos[j] > p - length:
                gap = veh.pos[j] - types.length[veh.vtype[j]] - p
                if gap > 0.0:  # ahead: follow it as if it were on this lane
                    vs, nd = defer_speed(vs, q, v, vmax, gap, veh.speed[j], a, b, s0, T, dl, dt,
                                         later, later_q, nd)
                else:  # side by side: fall back at the comfortable deceleration
                    vs = min(vs, max(v - b * dt, 0.0))
            blk[B_SAFE, q], blk[B_EMERGENCY, q] = vs, types.emergency_decel[ty]
            cap_out[i] = cap
            veh.link_wait[i] = held
        idm_speeds(m, dt, all4, blk)  # for the whole block at once
        idm_speeds(nd, dt, all4, later, False)
        for e in range(nd):
            blk[B_SAFE, later_q[e]] = min(blk[B_SAFE, later_q[e]], later[B_LEAD, e])
        for q in range(m):
            i = order[k0 + q]
            vs = min(blk[B_SAFE, q], blk[B_FREE, q])
            if blk[B_GAP, q] < np.inf:
                vs = min(vs, blk[B_LEAD, q])
            v, vmax, cap = blk[B_V, q], blk[B_VMAX, q], cap_out[i]
            vn = max(vs, v - blk[B_EMERGENCY, q] * dt)
            vn = min(max(vn, 0.0), vmax if vmax > v else v)
            if vn * dt > cap:
                vn = max(cap, 0.0) / dt
            speed_next[i] = vn


@njit_inline
def _detect(lane_i, a, b, length, t_end, lane_ptr, by_lane, det_pos, counts, present,
            last_on):
    """Loop detectors on ``lane_i`` passed by a front moving from ``a`` to ``b`` (``a``
    negative for a front that entered the lane this tick: a loop at the lane's start counts
    it)."""
    for q in range(lane_ptr[lane_i], lane_ptr[lane_i + 1]):
        d = by_lane[q]
        x = det_pos[d]
        if a < x <= b:
            counts[d] += 1
            last_on[d] = t_end
        if b - length <= x <= b:
            present[d] = 1
            last_on[d] = t_end


@njit_pipelined
def move(order, n, veh, types, roads, ls, route_edges, trips, det, t, dt, ttt,
         junction_wait, junction_queue, junction_passed, edge_speed_sum, edge_count,
         arrived_out, stats):
    """Advance every running vehicle by its chosen speed; handle transitions, arrivals,
    teleports and statistics. Returns the number of arrived (or removed) slots written to
    ``arrived_out``."""
    n_normal = roads.n_normal
    conn_wait, conn_state = roads.conn_wait, ls.conn_state
    foe_ptr, foe, foe_clear = roads.conn_foe_ptr, roads.conn_foe, roads.conn_foe_clear
    foe_at, foe_yields = roads.conn_foe_at, roads.conn_foe_yields
    occ, min_back, occ_go, min_back_go = ls.occ, ls.min_back, ls.occ_go, ls.min_back_go
    listed, conns, counts = ls.conn_listed, ls.conns, ls.counts
    t_end = t + dt
    det.present[:] = 0
    stats[:] = 0.0
    n_out = 0
    for k in range(n):
        i = order[k]
        ty = veh.vtype[i]
        length = types.length[ty]
        lane_i = veh.lane[i]
        v_old, vn = veh.speed[i], veh.speed_next[i]
        if v_old - vn > types.emergency_decel[ty] * dt + 1e-9:
            stats[S_EMERGENCY] += 1
        vmax = min(types.max_speed[ty], roads.lane_speed[lane_i] * types.speed_factor[ty])
        veh.time_loss[i] += dt * max(0.0, 1.0 - vn / vmax)
        p = veh.pos[i]
        newp = p + vn * dt
        arrived = False
        entered = False  # onto a new lane this tick
        if lane_i >= n_normal:
            c = lane_i - n_normal
            w = conn_wait[c]
            if w >= 0.0 and p <= w < newp and conn_state[c] != MAJOR:
                if foes_inside(c, w, np.inf, foe_ptr, foe, foe_clear, foe_at, foe_yields,
                               occ, min_back, occ_go, min_back_go, False):
                    stats[S_BLOCKED] += 1  # hard stop at the wait point
                    newp = w
                    vn = 0.0
                else:  # it crosses now: it holds up the foes it yielded to
                    list_conn(c, listed, conns, counts)
                    occ_go[c] += 1
                    min_back_go[c] = min(min_back_go[c], p - length)
        while newp > roads.lane_length[lane_i]:
            ll = roads.lane_length[lane_i]
            if lane_i < n_normal:
                if veh.ridx[i] >= veh.route_len[i] - 1:
                    _detect(lane_i, p, ll, length, t_end, det.lane_ptr, det.by_lane, det.pos,
                            det.counts, det.present, det.last_on)
                    veh.dist[i] += ll - p
                    arrived = True
                    break
                c = veh.next_conn[i]
                w = conn_wait[c] if c >= 0 and conn_state[c] != MAJOR else -1.0
                blocked = c < 0 or conn_state[c] == RED or foes_inside(
                    c, 0.0, w if w >= 0.0 else np.inf, foe_ptr, foe, foe_clear, foe_at,
                    foe_yields, occ, min_back, occ_go, min_back_go,
                    w >= 0.0 and roads.conn_tls[c] >= 0)
                if blocked:  # hard stop at the line: never enter on red or into a foe
                    stats[S_BLOCKED] += 1
                    newp = ll
                    vn = 0.0
                    break
                back = newp - ll - length
                list_conn(c, listed, conns, counts)
                occ[c] += 1
                min_back[c] = min(min_back[c], back)
                occ_go[c] += 1
                min_back_go[c] = min(min_back_go[c], back)
                junction_passed[roads.conn_junction[c]] += 1
                veh.last_conn[i] = c
                _detect(lane_i, p, ll, length, t_end, det.lane_ptr, det.by_lane, det.pos,
                        det.counts, det.present, det.last_on)
                veh.dist[i] += ll - p
                newp -= ll
                p = 0.0
                entered = True
                lane_i = n_normal + c
                if w >= 0.0 and newp > w and foes_inside(
                        c, w, np.inf, foe_ptr, foe, foe_clear, foe_at, foe_yields, occ,
                        min_back, occ_go, min_back_go, False):
                    stats[S_BLOCKED] += 1  # entered, and stops at the wait point
                    newp = w
                    vn = 0.0
                    break
            else:
                veh.dist[i] += ll - p
                newp -= ll
                p = 0.0
                entered = True
                lane_i = roads.conn_to_lane[lane_i - n_normal]
                r = veh.ridx[i] + 1
                veh.ridx[i] = r
                veh.reach_lane[i] = -1  # the lane-change cache is per visit of a lane
                rs = veh.route_start[i]
                last = veh.route_len[i] - 1
                if r < last:
                    n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
                    veh.next_conn[i] = find_conn(lane_i, route_edges[rs + r + 1], n2,
                                                 roads.lane_out_ptr, roads.lane_out,
                                                 roads.conn_to_edge, roads.conn_to_lane)
                else:
                    veh.next_conn[i] = -1
        if arrived:
            _finish(i, veh.trip[i], 2, t_end, veh.dist, veh.waiting, veh.time_loss, veh.stops,
                    veh.alive, trips.state, trips.arrival, trips.route_length, trips.waiting,
                    trips.time_loss, trips.stops)
            arrived_out[n_out] = i
            n_out += 1
            stats[S_ARRIVED] += 1
            continue
        if lane_i >= n_normal or newp > p or entered:
            _detect(lane_i, -1.0 if entered else p, newp, length, t_end, det.lane_ptr,
                    det.by_lane, det.pos, det.counts, det.present, det.last_on)
        veh.dist[i] += max(newp - p, 0.0)
        veh.pos[i] = newp
        veh.lane[i] = lane_i
        veh.speed[i] = vn
        if veh.last_conn[i] >= 0 and lane_i < n_normal and newp >= length:
            veh.last_conn[i] = -1
        stats[S_SPEED] += vn
        stats[S_MOVED] += 1
        if vn < HALT_SPEED:
            if veh.halt_cont[i] == 0.0:
                veh.stops[i] += 1
            veh.halt_cont[i] += dt
            veh.waiting[i] += dt
            stats[S_HALTING] += 1
            if lane_i < n_normal:
                jn = roads.edge_to_junction[roads.lane_edge[lane_i]]
                junction_wait[jn] += dt
                junction_queue[jn] += 1
            front = not (k + 1 < n and veh.lane[order[k + 1]] == lane_i)
            if ttt > 0.0 and veh.halt_cont[i] >= ttt and front:
                stats[S_TELEPORTS] += 1
                if not _teleport(i, veh, types, roads, ls, route_edges):
                    _finish(i, veh.trip[i], 3, t_end, veh.dist, veh.waiting, veh.time_loss,
                            veh.stops, veh.alive, trips.state, trips.arrival,
                            trips.route_length, trips.waiting, trips.time_loss, trips.stops)
                    arrived_out[n_out] = i
                    n_out += 1
                    stats[S_OUT] += 1
                    continue
        else:
            veh.halt_cont[i] = 0.0
        if lane_i < n_normal:
            e = roads.lane_edge[lane_i]
            edge_speed_sum[e] += vn
            edge_count[e] += 1
    for d in range(det.present.shape[0]):
        if det.present[d]:
            det.occupied[d] += dt
    return n_out


@njit_inline
def _finish(i, tr, state, t_end, veh_dist, veh_waiting, veh_time_loss, veh_stops, alive,
            trip_state, arrival, route_length, waiting, time_loss, stops):
    """Close trip ``tr`` of slot ``i`` with ``state`` (arrived or teleported out)."""
    trip_state[tr] = state
    arrival[tr] = t_end
    route_length[tr] = veh_dist[i]
    waiting[tr] = veh_waiting[i]
    time_loss[tr] = veh_time_loss[i]
    stops[tr] = veh_stops[i]
    alive[i] = 0


@njit
def _teleport(i, veh, types, roads, ls, route_edges) -> bool:
    """Move a jammed vehicle to the first edge ahead on its route with room at its start,
    as SUMO does after ``--time-to-teleport``. False if no edge ahead has room."""
    ty = veh.vtype[i]
    need = types.length[ty] + types.min_gap[ty]
    rs, last = veh.route_start[i], veh.route_len[i] - 1
    for r in range(veh.ridx[i] + 1, last + 1):
        e = route_edges[rs + r]
        nxt = route_edges[rs + r + 1] if r < last else -1
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        best, best_c = -1, -1
        first = roads.edge_first_lane[e]
        for lane_i in range(first, first + roads.edge_num_lanes[e]):
            if ls.tail_back[lane_i] - ls.reserved[lane_i] < need:
                continue
            c = -1
            if nxt >= 0:
                c = find_conn(lane_i, nxt, n2, roads.lane_out_ptr, roads.lane_out,
                              roads.conn_to_edge, roads.conn_to_lane)
            if best < 0 or (c >= 0 and best_c < 0):
                best, best_c = lane_i, c
        if best >= 0:
            mark_tail(best, roads.lane_length, ls.tail_back, ls.tail_speed, ls.tails,
                      ls.counts)
            veh.lane[i] = best
            veh.pos[i] = types.length[ty]
            veh.speed[i] = 0.0
            veh.ridx[i] = r
            veh.next_conn[i] = best_c
            veh.last_conn[i] = -1
            veh.halt_cont[i] = 0.0
            veh.reach_lane[i] = -1
            ls.tail_back[best] = 0.0
            return True
    return False
