"""Kernel: lane changes (strategic, cooperative and for speed gain).

A vehicle whose lane has no connection to its next edge changes towards a lane that has one;
near the end of its lane it accepts smaller gaps and, if still blocked, asks the follower in the
target lane to make room (that follower treats it as a leader in :func:`follow`). A vehicle that
could drive faster in a neighbouring lane that also leads on along its route changes when the
IDM advantage exceeds a threshold (a one-sided MOBIL without politeness). Every change must be
safe for the new follower and for the vehicle itself, and at most one vehicle enters a lane per
tick, so changes never create overlaps.

Drivers make way for emergency vehicles (types with ``priority > 0``), as they do for blue
lights and a siren (SUMO's bluelight device and its reaction distance): a vehicle with an
emergency vehicle close behind it on its lane (within that vehicle's comfortable stopping
distance plus ``BLUELIGHT_REACH``) moves to a neighbouring lane that leads on as far along its
route, when that is safe; no vehicle changes into a lane just in front of a close emergency
vehicle, nor asks one to make room for it. An emergency vehicle itself takes the neighbouring
lane whose traffic ahead (within ``EV_LOOK``) moves faster by ``EV_GAIN``, when that lane leads
on as far and the change is safe: it leaves a lane held up by a queue of turning vehicles for
one that flows.
"""

from __future__ import annotations

import numpy as np

from citytwin.agents.kernels._config import njit_inline, njit_pipelined
from citytwin.agents.kernels.idm import idm, idm_free
from citytwin.agents.kernels.right_of_way import HALT_SPEED
from citytwin.agents.kernels.routes import REACH, find_conn, lane_reach
from citytwin.agents.kernels.state import N_CHANGED

COOLDOWN = 3.0        # s between two changes of one vehicle
GAIN = 0.6            # m/s^2 of IDM advantage that makes a speed-gain change worth it
NO_TACTICAL = 10.0    # m before a lane end in which only strategic changes happen
TACTICAL_EVERY = 4    # ticks between two looks for a faster lane (staggered by slot)
URGENT = 60.0         # m before a lane end from which a strategic change accepts smaller gaps
BLUELIGHT_REACH = 25.0  # m beyond an emergency vehicle's stopping distance within which other
                        # drivers react to it (SUMO's device.bluelight.reactiondist)
EV_LOOK = 200.0       # m an emergency vehicle's driver looks ahead to choose the clearer lane
EV_GAIN = 2.0         # m/s faster traffic ahead that makes an emergency vehicle change lanes


@njit_inline
def _slot_after(lane_i, p, order, span, pos):
    """Index in ``order`` of the first vehicle on ``lane_i`` at or ahead of position ``p``.

    Hot helpers here take the arrays they read, never the array bundles (see
    :func:`~citytwin.agents.kernels.right_of_way.foes_inside`).
    """
    lo, hi = span[lane_i, 0], span[lane_i, 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if pos[order[mid]] < p:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit_inline
def _bluelight_near(gap, v, decel):
    """Is a vehicle ``gap`` metres ahead of an emergency vehicle (speed ``v``, comfortable
    deceleration ``decel``) close enough to react to it?"""
    return gap < v * v / (2.0 * decel) + BLUELIGHT_REACH


@njit_inline
def _slowest_ahead(lane_i, p, look, order, span, pos, speed):
    """Lowest speed of the vehicles on ``lane_i`` from ``p`` to ``p + look`` (inf: none)."""
    slowest = np.inf
    for q in range(_slot_after(lane_i, p + 1e-9, order, span, pos), span[lane_i, 1]):
        j = order[q]
        if pos[j] > p + look:
            break
        slowest = min(slowest, speed[j])
    return slowest


@njit_inline
def _may_enter(tl, step, first, nl, lc_stamp, tick, nxt, own, reach_left, reach_right):
    """May a vehicle on lane ``tl - step`` (reach ``own``) consider lane ``tl``: it exists,
    nobody entered it this tick, and it leads on as far along the route (up to ``REACH``)?"""
    if tl < first or tl >= first + nl or lc_stamp[tl] == tick:
        return False
    if nxt < 0:
        return True
    return (reach_left if step == 1 else reach_right) >= min(own, REACH)


@njit_inline
def _short(lane_i, ty, lane_length, t_length):
    """Is ``lane_i`` too short for a vehicle of type ``ty`` to be wholly on it?"""
    return lane_length[lane_i] < t_length[ty] + 1.0


@njit_inline
def _accel_on(i, lane_i, order, span, vtype, speed, pos, lane_speed, t_length, t_min_gap,
              t_accel, t_decel, t_max_speed, t_tau, t_delta, t_speed_factor):
    """IDM acceleration of vehicle ``i`` if it were on ``lane_i`` (own lane: leader only)."""
    ty = vtype[i]
    v, p = speed[i], pos[i]
    vmax = min(t_max_speed[ty], lane_speed[lane_i] * t_speed_factor[ty])
    acc = idm_free(v, vmax, t_accel[ty], t_delta[ty])
    q = _slot_after(lane_i, p + 1e-9, order, span, pos)
    if q < span[lane_i, 1]:
        j = order[q]
        if j == i:
            q += 1
            if q >= span[lane_i, 1]:
                return acc
            j = order[q]
        gap = pos[j] - t_length[vtype[j]] - p
        acc = min(acc, idm(v, vmax, gap, v - speed[j], t_accel[ty], t_decel[ty],
                           t_min_gap[ty], t_tau[ty], t_delta[ty]))
    return acc


@njit_inline
def _safe(i, tl, relaxed, order, span, vtype, speed, pos, lane_speed, t_length,
          t_min_gap, t_accel, t_decel, t_emergency_decel, t_max_speed, t_tau, t_delta,
          t_speed_factor, t_priority, dt):
    """Can vehicle ``i`` move sideways into lane ``tl`` now? Returns (ok, follower slot).
    Never in front of a close emergency vehicle (unless ``i`` is one)."""
    ty = vtype[i]
    v, p, length = speed[i], pos[i], t_length[ty]
    bsafe = t_emergency_decel[ty] * 0.5 if relaxed else t_decel[ty]
    s_min = 0.5 if relaxed else t_min_gap[ty]
    q = _slot_after(tl, p, order, span, pos)
    follower = order[q - 1] if q > span[tl, 0] else -1
    if q < span[tl, 1]:
        j = order[q]
        gap = pos[j] - t_length[vtype[j]] - p
        if gap < s_min:
            return False, follower
        vmax = min(t_max_speed[ty], lane_speed[tl] * t_speed_factor[ty])
        acc = idm(v, vmax, gap, v - speed[j], t_accel[ty], t_decel[ty], t_min_gap[ty],
                  t_tau[ty], t_delta[ty])
        if max(acc, -v / dt) < -bsafe:  # a standing vehicle needs no braking to stay
            return False, follower
    if follower >= 0:
        f = follower
        tf = vtype[f]
        gap = p - length - pos[f]
        if gap < s_min:
            return False, follower
        if t_priority[tf] > 0 and t_priority[ty] <= 0 and _bluelight_near(gap, speed[f],
                                                                            t_decel[tf]):
            return False, follower
        vmaxf = min(t_max_speed[tf], lane_speed[tl] * t_speed_factor[tf])
        vf = speed[f]
        acc = idm(vf, vmaxf, gap, vf - v, t_accel[tf], t_decel[tf], t_min_gap[tf], t_tau[tf],
                  t_delta[tf])
        if max(acc, -vf / dt) < -bsafe:
            return False, follower
    return True, follower


@njit_pipelined
def lane_change(order, n, veh, types, roads, ls, route_edges, t, tick, dt):
    """Decide and carry out lane changes for this tick. Returns the number of changes."""
    n_normal = roads.n_normal
    vtype, speed, pos = veh.vtype, veh.speed, veh.pos
    lane_speed, span = roads.lane_speed, ls.lane_span
    t_length, t_min_gap, t_accel, t_decel = types.length, types.min_gap, types.accel, types.decel
    t_emergency, t_max_speed, t_tau = types.emergency_decel, types.max_speed, types.tau
    t_delta, t_speed_factor, t_priority = types.delta, types.speed_factor, types.priority
    lane_out_ptr, lane_out = roads.lane_out_ptr, roads.lane_out
    conn_to_edge, conn_to_lane = roads.conn_to_edge, roads.conn_to_lane
    changes = 0
    ls.counts[N_CHANGED] = 0
    any_ev = False  # (a city without emergency vehicle types skips their checks)
    for ty in range(t_priority.shape[0]):
        any_ev = any_ev or t_priority[ty] > 0
    for k in range(n):
        i = order[k]
        lane_i = veh.lane[i]
        if lane_i >= n_normal:
            continue
        # Make way for an emergency vehicle right behind (still on this lane this tick)?
        clear = False
        if any_ev and k > span[lane_i, 0] and t_priority[vtype[i]] <= 0:
            j = order[k - 1]
            tj = vtype[j]
            clear = (t_priority[tj] > 0 and veh.lane[j] == lane_i and _bluelight_near(
                pos[i] - t_length[vtype[i]] - pos[j], speed[j], t_decel[tj]))
        ev = any_ev and t_priority[vtype[i]] > 0
        if not clear and not ev and veh.reach_lane[i] == lane_i and veh.reach_best[i] < 0 and (
                veh.reach[i] < 0.0 or (tick + i) % TACTICAL_EVERY):
            continue  # cached for this visit of the lane: no better lane, no look for speed
        e = roads.lane_edge[lane_i]
        nl = roads.edge_num_lanes[e]
        if nl < 2:
            continue
        ty = vtype[i]
        if not _short(lane_i, ty, roads.lane_length, t_length) and pos[i] < min(
                t_length[ty] + 1.0, 0.5 * roads.lane_length[lane_i]):
            continue  # still entering the lane (a lane shorter than the vehicle: from
            #           anywhere on it, as SUMO's vehicles change lanes; imported networks
            #           have lanes of 0.2 m a vehicle may have to leave to follow its route)
        first = roads.edge_first_lane[e]
        r, last, rs = veh.ridx[i], veh.route_len[i] - 1, veh.route_start[i]
        nxt = route_edges[rs + r + 1] if r < last else -1
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        to_end = roads.lane_length[lane_i] - pos[i]
        own = REACH
        if nxt >= 0:
            # The reach of a lane depends only on the lane and the route ahead: computed once
            # per lane and route position, with the best lane to head for and the reach of the
            # lanes on either side.
            if veh.reach_lane[i] != lane_i or veh.reach_at[i] != rs + r:
                _cache_reach(i, lane_i, first, nl, r, rs, last, route_edges, lane_out_ptr,
                             lane_out, conn_to_edge, conn_to_lane, roads.lane_length, veh.reach,
                             veh.reach_best, veh.reach_left, veh.reach_right, veh.reach_lane,
                             veh.reach_at)
            own = veh.reach[i]
        if clear:
            moved = False
            for step in (-1, 1):  # pull over to the right first
                tl = lane_i + step
                if not _may_enter(tl, step, first, nl, ls.lc_stamp, tick, nxt, own,
                                  veh.reach_left[i], veh.reach_right[i]):
                    continue  # (it may need its lane for its route)
                ok, follower = _safe(i, tl, False, order, span, vtype, speed, pos,
                                     lane_speed, t_length, t_min_gap, t_accel, t_decel,
                                     t_emergency, t_max_speed, t_tau, t_delta, t_speed_factor,
                                     t_priority, dt)
                if ok:
                    _do_change(i, tl, nxt, n2, t, tick, veh.lane, veh.lc_time, ls.lc_stamp,
                               ls.changed, ls.counts, veh.next_conn, lane_out_ptr, lane_out,
                               conn_to_edge, conn_to_lane)
                    changes += 1
                    moved = True
                    break
                _let_in(i, tl, follower, order, span, speed, pos, vtype, veh.coop,
                        t_length, t_priority)
            if moved:
                continue
        if own < REACH:
            # Strategic: head for the nearest lane that leads on furthest (SUMO's best lanes).
            best = veh.reach_best[i]
            if best >= 0:
                tl = lane_i + (1 if best > lane_i else -1)
                if ls.lc_stamp[tl] == tick:
                    continue
                if _short(tl, ty, roads.lane_length, t_length) and ls.reserved[tl] > 0.0:
                    continue  # a vehicle inside the junction behind is about to enter it
                urgent = to_end + max(own, 0.0) < URGENT
                ok, follower = _safe(i, tl, urgent, order, span, vtype, speed, pos,
                                     lane_speed, t_length, t_min_gap, t_accel, t_decel,
                                     t_emergency, t_max_speed, t_tau, t_delta, t_speed_factor,
                                     t_priority, dt)
                if ok:
                    _do_change(i, tl, nxt, n2, t, tick, veh.lane, veh.lc_time, ls.lc_stamp,
                               ls.changed, ls.counts, veh.next_conn, lane_out_ptr, lane_out,
                               conn_to_edge, conn_to_lane)
                    changes += 1
                elif _swap(i, lane_i, tl, order, span, ls.lc_stamp, ls.changed, ls.counts,
                           veh.lane, veh.lc_time, pos, vtype, veh.next_conn, veh.ridx,
                           veh.route_len, veh.route_start, t_length, route_edges,
                           lane_out_ptr, lane_out, conn_to_edge, conn_to_lane, t, tick):
                    changes += 2
                elif follower >= 0 and urgent:
                    _ask_room(i, tl, order, span, pos, vtype, veh.coop, t_length,
                              t_priority)
                continue
            if own < 0:
                continue  # the edge cannot lead on: the vehicle will be teleported
        if ev:
            if t - veh.lc_time[i] >= COOLDOWN and to_end >= NO_TACTICAL:
                look = min(EV_LOOK, to_end)
                want = _slowest_ahead(lane_i, pos[i], look, order, span, pos, speed) + EV_GAIN
                best = -1
                for step in (1, -1):
                    tl = lane_i + step
                    if not _may_enter(tl, step, first, nl, ls.lc_stamp, tick, nxt, own,
                                      veh.reach_left[i], veh.reach_right[i]):
                        continue
                    there = _slowest_ahead(tl, pos[i], look, order, span, pos, speed)
                    if there > want:
                        best, want = tl, there
                if best >= 0:
                    ok, _ = _safe(i, best, False, order, span, vtype, speed, pos, lane_speed,
                                  t_length, t_min_gap, t_accel, t_decel, t_emergency,
                                  t_max_speed, t_tau, t_delta, t_speed_factor, t_priority, dt)
                    if ok:
                        _do_change(i, best, nxt, n2, t, tick, veh.lane, veh.lc_time,
                                   ls.lc_stamp, ls.changed, ls.counts, veh.next_conn,
                                   lane_out_ptr, lane_out, conn_to_edge, conn_to_lane)
                        changes += 1
            continue
        if (tick + i) % TACTICAL_EVERY or t - veh.lc_time[i] < COOLDOWN or to_end < NO_TACTICAL:
            continue
        here = _accel_on(i, lane_i, order, span, vtype, speed, pos, lane_speed, t_length,
                         t_min_gap, t_accel, t_decel, t_max_speed, t_tau, t_delta,
                         t_speed_factor)
        if here > 0.0 and speed[i] > 0.9 * min(t_max_speed[ty],
                                               lane_speed[lane_i] * t_speed_factor[ty]):
            continue  # accelerating and near its own desired speed (not the limit's)
        for step in (1, -1):  # overtake on the left first
            tl = lane_i + step
            if not _may_enter(tl, step, first, nl, ls.lc_stamp, tick, nxt, own,
                              veh.reach_left[i], veh.reach_right[i]):
                continue  # (it would lead less far along the route)
            there = _accel_on(i, tl, order, span, vtype, speed, pos, lane_speed,
                              t_length, t_min_gap, t_accel, t_decel, t_max_speed, t_tau,
                              t_delta, t_speed_factor)
            if there > here + GAIN:
                ok, _ = _safe(i, tl, False, order, span, vtype, speed, pos, lane_speed,
                              t_length, t_min_gap, t_accel, t_decel, t_emergency, t_max_speed,
                              t_tau, t_delta, t_speed_factor, t_priority, dt)
                if ok:
                    _do_change(i, tl, nxt, n2, t, tick, veh.lane, veh.lc_time, ls.lc_stamp,
                               ls.changed, ls.counts, veh.next_conn, lane_out_ptr, lane_out,
                               conn_to_edge, conn_to_lane)
                    changes += 1
                    break
    return changes


@njit_inline
def _cache_reach(i, lane_i, first, nl, r, rs, last, route_edges, lane_out_ptr, lane_out,
                 conn_to_edge, conn_to_lane, lane_length, reach, reach_best, reach_left,
                 reach_right, reach_lane, reach_at):
    """Fill vehicle ``i``'s reach cache for ``lane_i`` at route position ``r``: the reach of
    its lane, the lane to head for when that is short (-1: none better) and the reaches of the
    lanes to its left and right (-2 where there is no lane). The cache is valid while the
    vehicle stays on this lane (:func:`~citytwin.agents.kernels.traffic.move`, teleports and
    rerouting forget it)."""
    own = lane_reach(lane_i, r, rs, last, route_edges, lane_out_ptr, lane_out, conn_to_edge,
                     conn_to_lane, lane_length)
    best, best_q, best_d = -1, own, 1 << 30
    left = right = -2.0
    for tl in range(first, first + nl):
        q = own if tl == lane_i else lane_reach(tl, r, rs, last, route_edges, lane_out_ptr,
                                                lane_out, conn_to_edge, conn_to_lane,
                                                lane_length)
        if tl == lane_i + 1:
            left = q
        elif tl == lane_i - 1:
            right = q
        if own < REACH:
            d = abs(tl - lane_i)
            if q > best_q or (q == best_q and q > own and d < best_d):
                best, best_q, best_d = tl, q, d
    reach[i] = own
    reach_best[i] = best
    reach_left[i] = left
    reach_right[i] = right
    reach_lane[i] = lane_i
    reach_at[i] = rs + r


@njit_inline
def _fits(x, lane_i, p, length, skip1, skip2, order, span, pos, vtype, t_length):
    """Would a vehicle of ``length`` with its front at ``p`` on ``lane_i`` keep 0.5 m from the
    vehicles there (ignoring ``skip1`` and ``skip2``)?"""
    for q in range(span[lane_i, 0], span[lane_i, 1]):
        j = order[q]
        if j in (skip1, skip2, x):
            continue
        pj = pos[j]
        if pj >= p:
            if pj - t_length[vtype[j]] - p < 0.5:
                return False
            break
        if p - length - pj < 0.5:
            return False
    return True


@njit_inline
def _swap(i, lane_i, tl, order, span, lc_stamp, changed, counts, lane, lc_time, pos, vtype,
          next_conn, ridx, route_len, route_start, t_length, route_edges, lane_out_ptr,
          lane_out, conn_to_edge, conn_to_lane, t, tick) -> bool:
    """Swap places with a vehicle beside ``i`` on ``tl`` that needs ``i``'s lane (two
    vehicles side by side at a stop line, each in the other's turning lane)."""
    if lc_stamp[lane_i] == tick:
        return False
    p, li = pos[i], t_length[vtype[i]]
    for q in range(span[tl, 0], span[tl, 1]):
        j = order[q]
        lj = t_length[vtype[j]]
        if abs(pos[j] - p) > 0.5 * min(li, lj) or next_conn[j] >= 0:
            continue
        rj, lastj, rsj = ridx[j], route_len[j] - 1, route_start[j]
        if rj >= lastj:
            continue
        nj = route_edges[rsj + rj + 1]
        n2j = route_edges[rsj + rj + 2] if rj + 2 <= lastj else -1
        if find_conn(lane_i, nj, n2j, lane_out_ptr, lane_out, conn_to_edge, conn_to_lane) < 0:
            continue
        if not (_fits(i, tl, p, li, i, j, order, span, pos, vtype, t_length)
                and _fits(j, lane_i, pos[j], lj, i, j, order, span, pos, vtype,
                          t_length)):
            return False
        r, last, rs = ridx[i], route_len[i] - 1, route_start[i]
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        _do_change(i, tl, route_edges[rs + r + 1], n2, t, tick, lane, lc_time, lc_stamp,
                   changed, counts, next_conn, lane_out_ptr, lane_out, conn_to_edge,
                   conn_to_lane)
        _do_change(j, lane_i, nj, n2j, t, tick, lane, lc_time, lc_stamp, changed, counts,
                   next_conn, lane_out_ptr, lane_out, conn_to_edge, conn_to_lane)
        return True
    return False


@njit_inline
def _ask_room(i, tl, order, span, pos, vtype, coop, t_length, t_priority):
    """Ask the first vehicle on ``tl`` wholly behind ``i`` to hold back and open a gap
    (vehicles beside ``i`` cannot help: they drive on and free the place); never an
    emergency vehicle."""
    back = pos[i] - t_length[vtype[i]]
    q = _slot_after(tl, pos[i], order, span, pos) - 1
    while q >= span[tl, 0] and pos[order[q]] > back - 0.5:
        q -= 1
    if q >= span[tl, 0]:
        f = order[q]
        if coop[f] < 0 and t_priority[vtype[f]] <= 0:
            coop[f] = i


@njit_inline
def _let_in(i, tl, follower, order, span, speed, pos, vtype, coop, t_length,
            t_priority):
    """``i``, moving over for an emergency vehicle, finds ``tl`` blocked: a vehicle beside
    it and ahead there makes ``i`` fall back behind it; else its follower there (never an
    emergency vehicle) falls back or holds back to let it in, as drivers do for one making
    way. A standing vehicle asks nobody: two standing side by side, each held back for the
    other, would wait for ever."""
    if speed[i] < HALT_SPEED:
        return
    q = _slot_after(tl, pos[i], order, span, pos)
    if q < span[tl, 1] and pos[order[q]] - t_length[vtype[order[q]]] < pos[i]:
        if coop[i] < 0:
            coop[i] = order[q]
    elif follower >= 0 and coop[follower] < 0 and t_priority[vtype[follower]] <= 0:
        coop[follower] = i


@njit_inline
def _do_change(i, tl, nxt, n2, t, tick, lane, lc_time, lc_stamp, changed, counts, next_conn,
               lane_out_ptr, lane_out, conn_to_edge, conn_to_lane):
    """Move ``i`` to lane ``tl`` (and list ``tl`` among the lanes changed into this tick:
    nobody has entered it yet, see ``lc_stamp``)."""
    lane[i] = tl
    lc_time[i] = t
    lc_stamp[tl] = tick
    changed[counts[N_CHANGED]] = tl
    counts[N_CHANGED] += 1
    if nxt >= 0:
        next_conn[i] = find_conn(tl, nxt, n2, lane_out_ptr, lane_out, conn_to_edge,
                                 conn_to_lane)
    else:
        next_conn[i] = -1
