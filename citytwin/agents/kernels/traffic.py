"""Kernels of one traffic tick around the car-following: prepass and move.

After the sort (:mod:`citytwin.agents.kernels.order`: vehicles by lane and position, so the
leader of ``order[k]`` is ``order[k+1]`` while both share a lane) the fleet calls, per tick
and in this order, :func:`prepass` (lane tails, junction occupancy, approach times),
:func:`~citytwin.agents.kernels.following.follow` (IDM car-following, stop lines, junction
right of way; chooses each vehicle's speed) and :func:`move` (positions, lane-to-lane
transitions, arrivals, teleports, statistics, loop detectors).
"""

from __future__ import annotations

import numpy as np

from citytwin.agents.kernels._config import njit, njit_inline, njit_pipelined
from citytwin.agents.kernels.right_of_way import (
    HALT_SPEED,
    exit_free,
    foes_inside,
    look_ahead,
    stops_for,
)
from citytwin.agents.kernels.routes import find_conn
from citytwin.agents.kernels.state import N_BUSY, N_CONNS, N_TAILS
from citytwin.agents.roads import MAJOR, MINOR, RED

POSITION_EPS = 0.1        # m; SUMO's POSITION_EPS
STATS = 8                 # length of the per-tick stats vector of move()
S_ARRIVED, S_SPEED, S_HALTING, S_TELEPORTS, S_OUT, S_EMERGENCY, S_BLOCKED, S_MOVED = range(8)


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
