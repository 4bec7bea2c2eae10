"""Kernel: the car-following of one tick (IDM, stop lines, junction right of way).

:func:`follow` runs between :func:`~citytwin.agents.kernels.traffic.prepass`, whose lane and
junction figures it reads, and :func:`~citytwin.agents.kernels.traffic.move`, which drives
the speeds it chooses.
"""

from __future__ import annotations

import math

import numpy as np

from citytwin.agents.kernels._config import njit_inline, njit_pipelined
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
    blind_to_foes,
    exit_free,
    link_open,
    look_ahead,
    stops_for,
    wait_open,
)
from citytwin.agents.kernels.routes import find_conn
from citytwin.agents.kernels.traffic import POSITION_EPS
from citytwin.agents.roads import MAJOR, MINOR

LOOKAHEAD = 250.0         # m; beyond this the road after the own lane counts as free
RED_STOP_GAP = 1.0        # m; vehicles stop this far before a red or yellow light (SUMO's
#                           jmStoplineGap default), less if braking for it would be too hard
MINOR_STOP_GAP = POSITION_EPS  # m; and this far before a link they must yield at
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
