"""Kernel: lane changes (strategic, cooperative and for speed gain).

A vehicle whose lane has no connection to its next edge changes towards a lane that has one;
near the end of its lane it accepts smaller gaps and, if still blocked, asks the follower in the
target lane to make room (that follower treats it as a leader in :func:`follow`). A vehicle that
could drive faster in a neighbouring lane that also leads on along its route changes when the
IDM advantage exceeds a threshold (a one-sided MOBIL without politeness). Every change must be
safe for the new follower and for the vehicle itself, and at most one vehicle enters a lane per
tick, so changes never create overlaps.
"""

from __future__ import annotations

from citytwin.agents.kernels._config import njit, njit_inline
from citytwin.agents.kernels.traffic import find_conn, idm, idm_free

COOLDOWN = 3.0        # s between two changes of one vehicle
GAIN = 0.6            # m/s^2 of IDM advantage that makes a speed-gain change worth it
NO_TACTICAL = 40.0    # m before a lane end in which only strategic changes happen
TACTICAL_EVERY = 4    # ticks between two looks for a faster lane (staggered by slot)
URGENT = 60.0         # m before a lane end from which a strategic change accepts smaller gaps
REACH = 150.0         # m past its end within which a lane must lead on along the route
REACH_DEPTH = 6       # edges looked at for that (chains of short edges in imported nets)


@njit_inline
def _slot_after(lane_i, p, order, ls, pos):
    """Index in ``order`` of the first vehicle on ``lane_i`` at or ahead of position ``p``."""
    lo, hi = ls.lane_start[lane_i], ls.lane_start[lane_i + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if pos[order[mid]] < p:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit_inline
def _reach(lane_i, r, rs, last, route_edges, roads):
    """How far past the end of ``lane_i`` (on route edge ``r``) the vehicle can follow its
    route without another lane change, capped at ``REACH`` (also when the route ends);
    -1 when the lane has no connection to the next route edge."""
    d = 0.0
    cl = lane_i
    for _ in range(REACH_DEPTH):
        if r >= last:
            return REACH
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        c = find_conn(cl, route_edges[rs + r + 1], n2, roads.lane_out_ptr, roads.lane_out,
                      roads.conn_to_edge, roads.conn_to_lane)
        if c < 0:
            return d if cl != lane_i else -1.0
        cl = roads.conn_to_lane[c]
        d += roads.lane_length[cl]
        r += 1
        if d >= REACH:
            return REACH
    return REACH


@njit_inline
def _accel_on(i, lane_i, order, veh, types, roads, ls):
    """IDM acceleration of vehicle ``i`` if it were on ``lane_i`` (own lane: leader only)."""
    ty = veh.vtype[i]
    v, p = veh.speed[i], veh.pos[i]
    vmax = min(types.max_speed[ty], roads.lane_speed[lane_i] * types.speed_factor[ty])
    acc = idm_free(v, vmax, types.accel[ty], types.delta[ty])
    q = _slot_after(lane_i, p + 1e-9, order, ls, veh.pos)
    if q < ls.lane_start[lane_i + 1]:
        j = order[q]
        if j == i:
            q += 1
            if q >= ls.lane_start[lane_i + 1]:
                return acc
            j = order[q]
        gap = veh.pos[j] - types.length[veh.vtype[j]] - p
        acc = min(acc, idm(v, vmax, gap, v - veh.speed[j], types.accel[ty], types.decel[ty],
                           types.min_gap[ty], types.tau[ty], types.delta[ty]))
    return acc


@njit_inline
def _safe(i, tl, relaxed, order, veh, types, roads, ls, dt):
    """Can vehicle ``i`` move sideways into lane ``tl`` now? Returns (ok, follower slot)."""
    ty = veh.vtype[i]
    v, p, length = veh.speed[i], veh.pos[i], types.length[ty]
    bsafe = types.emergency_decel[ty] * 0.5 if relaxed else types.decel[ty]
    s_min = 0.5 if relaxed else types.min_gap[ty]
    q = _slot_after(tl, p, order, ls, veh.pos)
    follower = order[q - 1] if q > ls.lane_start[tl] else -1
    if q < ls.lane_start[tl + 1]:
        j = order[q]
        gap = veh.pos[j] - types.length[veh.vtype[j]] - p
        if gap < s_min:
            return False, follower
        vmax = min(types.max_speed[ty], roads.lane_speed[tl] * types.speed_factor[ty])
        acc = idm(v, vmax, gap, v - veh.speed[j], types.accel[ty], types.decel[ty],
                  types.min_gap[ty], types.tau[ty], types.delta[ty])
        if max(acc, -v / dt) < -bsafe:  # a standing vehicle needs no braking to stay
            return False, follower
    if follower >= 0:
        f = follower
        tf = veh.vtype[f]
        gap = p - length - veh.pos[f]
        if gap < s_min:
            return False, follower
        vmaxf = min(types.max_speed[tf], roads.lane_speed[tl] * types.speed_factor[tf])
        vf = veh.speed[f]
        acc = idm(vf, vmaxf, gap, vf - v, types.accel[tf], types.decel[tf],
                  types.min_gap[tf], types.tau[tf], types.delta[tf])
        if max(acc, -vf / dt) < -bsafe:
            return False, follower
    return True, follower


@njit
def lane_change(order, n, veh, types, roads, ls, route_edges, t, tick, dt):
    """Decide and carry out lane changes for this tick. Returns the number of changes."""
    n_normal = roads.n_normal
    changes = 0
    for k in range(n):
        veh.coop[order[k]] = -1
    for k in range(n):
        i = order[k]
        lane_i = veh.lane[i]
        if lane_i >= n_normal:
            continue
        e = roads.lane_edge[lane_i]
        nl = roads.edge_num_lanes[e]
        if nl < 2:
            continue
        ty = veh.vtype[i]
        if veh.pos[i] < min(types.length[ty] + 1.0, 0.5 * roads.lane_length[lane_i]):
            continue  # still entering the lane
        first = roads.edge_first_lane[e]
        r, last, rs = veh.ridx[i], veh.route_len[i] - 1, veh.route_start[i]
        nxt = route_edges[rs + r + 1] if r < last else -1
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        to_end = roads.lane_length[lane_i] - veh.pos[i]
        own = REACH
        if nxt >= 0:  # the reach of a lane depends only on the lane and the route ahead
            if veh.reach_lane[i] != lane_i or veh.reach_at[i] != rs + r:
                veh.reach[i] = _reach(lane_i, r, rs, last, route_edges, roads)
                veh.reach_lane[i] = lane_i
                veh.reach_at[i] = rs + r
            own = veh.reach[i]
        if own < REACH:
            # Strategic: head for the nearest lane that leads on furthest (SUMO's best lanes).
            best, best_q, best_d = -1, own, 1 << 30
            for tl in range(first, first + nl):
                q = _reach(tl, r, rs, last, route_edges, roads)
                d = abs(tl - lane_i)
                if q > best_q or (q == best_q and q > own and d < best_d):
                    best, best_q, best_d = tl, q, d
            if best >= 0:
                tl = lane_i + (1 if best > lane_i else -1)
                if ls.lc_stamp[tl] == tick:
                    continue
                urgent = to_end + max(own, 0.0) < URGENT
                ok, follower = _safe(i, tl, urgent, order, veh, types, roads, ls, dt)
                if ok:
                    _do_change(i, tl, nxt, n2, t, tick, veh, roads, ls)
                    changes += 1
                elif _swap(i, lane_i, tl, order, veh, types, roads, ls, route_edges, t, tick):
                    changes += 2
                elif follower >= 0 and urgent:
                    _ask_room(i, tl, order, veh, types, ls)
                continue
            if own < 0:
                continue  # the edge cannot lead on: the vehicle will be teleported
        if (tick + i) % TACTICAL_EVERY or t - veh.lc_time[i] < COOLDOWN or to_end < NO_TACTICAL:
            continue
        here = _accel_on(i, lane_i, order, veh, types, roads, ls)
        if here > 0.0 and veh.speed[i] > 0.9 * roads.lane_speed[lane_i]:
            continue
        for step in (1, -1):  # overtake on the left first
            tl = lane_i + step
            if tl < first or tl >= first + nl or ls.lc_stamp[tl] == tick:
                continue
            if nxt >= 0 and _reach(tl, r, rs, last, route_edges, roads) < min(own, REACH):
                continue  # would lead less far along the route
            there = _accel_on(i, tl, order, veh, types, roads, ls)
            if there > here + GAIN:
                ok, _ = _safe(i, tl, False, order, veh, types, roads, ls, dt)
                if ok:
                    _do_change(i, tl, nxt, n2, t, tick, veh, roads, ls)
                    changes += 1
                    break
    return changes


@njit
def _fits(x, lane_i, p, length, skip1, skip2, order, veh, types, ls):
    """Would a vehicle of ``length`` with its front at ``p`` on ``lane_i`` keep 0.5 m from the
    vehicles there (ignoring ``skip1`` and ``skip2``)?"""
    for q in range(ls.lane_start[lane_i], ls.lane_start[lane_i + 1]):
        j = order[q]
        if j in (skip1, skip2, x):
            continue
        pj = veh.pos[j]
        if pj >= p:
            if pj - types.length[veh.vtype[j]] - p < 0.5:
                return False
            break
        if p - length - pj < 0.5:
            return False
    return True


@njit
def _swap(i, lane_i, tl, order, veh, types, roads, ls, route_edges, t, tick) -> bool:
    """Swap places with a vehicle beside ``i`` on ``tl`` that needs ``i``'s lane (two
    vehicles side by side at a stop line, each in the other's turning lane)."""
    if ls.lc_stamp[lane_i] == tick:
        return False
    p, li = veh.pos[i], types.length[veh.vtype[i]]
    for q in range(ls.lane_start[tl], ls.lane_start[tl + 1]):
        j = order[q]
        lj = types.length[veh.vtype[j]]
        if abs(veh.pos[j] - p) > 0.5 * min(li, lj) or veh.next_conn[j] >= 0:
            continue
        rj, lastj, rsj = veh.ridx[j], veh.route_len[j] - 1, veh.route_start[j]
        if rj >= lastj:
            continue
        nj = route_edges[rsj + rj + 1]
        n2j = route_edges[rsj + rj + 2] if rj + 2 <= lastj else -1
        if find_conn(lane_i, nj, n2j, roads.lane_out_ptr, roads.lane_out, roads.conn_to_edge,
                     roads.conn_to_lane) < 0:
            continue
        if not (_fits(i, tl, p, li, i, j, order, veh, types, ls)
                and _fits(j, lane_i, veh.pos[j], lj, i, j, order, veh, types, ls)):
            return False
        r, last, rs = veh.ridx[i], veh.route_len[i] - 1, veh.route_start[i]
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        _do_change(i, tl, route_edges[rs + r + 1], n2, t, tick, veh, roads, ls)
        _do_change(j, lane_i, nj, n2j, t, tick, veh, roads, ls)
        return True
    return False


@njit
def _ask_room(i, tl, order, veh, types, ls):
    """Ask the first vehicle on ``tl`` wholly behind ``i`` to hold back and open a gap
    (vehicles beside ``i`` cannot help: they drive on and free the place)."""
    back = veh.pos[i] - types.length[veh.vtype[i]]
    q = _slot_after(tl, veh.pos[i], order, ls, veh.pos) - 1
    while q >= ls.lane_start[tl] and veh.pos[order[q]] > back - 0.5:
        q -= 1
    if q >= ls.lane_start[tl]:
        f = order[q]
        if veh.coop[f] < 0:
            veh.coop[f] = i


@njit
def _do_change(i, tl, nxt, n2, t, tick, veh, roads, ls):
    veh.lane[i] = tl
    veh.lc_time[i] = t
    ls.lc_stamp[tl] = tick
    if nxt >= 0:
        veh.next_conn[i] = find_conn(tl, nxt, n2, roads.lane_out_ptr, roads.lane_out,
                                     roads.conn_to_edge, roads.conn_to_lane)
    else:
        veh.next_conn[i] = -1

