"""Kernel: insert waiting vehicles at the start of their first edge.

SUMO's rules: a vehicle departs when its depart time has come and its first edge has room;
otherwise it waits (its depart delay grows) and, per edge, later vehicles wait behind it. The
lane is the one with most room among those that follow the route furthest without a lane
change ("best"); the speed is the highest that is safe behind the lane's last vehicle
("max") or the requested depart speed if that is safe.
"""

from __future__ import annotations

import math

from citytwin.agents.kernels._config import njit, njit_inline
from citytwin.agents.kernels.right_of_way import HALT_SPEED, stops_for
from citytwin.agents.kernels.routes import REACH, find_conn, lane_reach
from citytwin.agents.kernels.traffic import POSITION_EPS, list_conn, mark_tail


@njit
def insert(backlog, nb, trips, veh, types, roads, ls, route_edges, free_slots, n_free,
           order, n_order, t, tick, inserted_out):
    """Try to insert every trip of ``backlog[:nb]`` (in order).

    Returns ``(nb, n_free, n_order, n_inserted)``: the trips that still wait are compacted to
    the front of ``backlog``; inserted slots are appended to ``order`` and listed in
    ``inserted_out``.
    """
    keep = 0
    n_ins = 0
    for q in range(nb):
        tr = backlog[q]
        rs = trips.route_start[tr]
        e = route_edges[rs]
        if ls.edge_stamp[e] == tick or n_free == 0:
            backlog[keep] = tr
            keep += 1
            continue
        ty = trips.vtype[tr]
        length, s0 = types.length[ty], types.min_gap[ty]
        rl = trips.route_len[tr]
        nxt = route_edges[rs + 1] if rl > 1 else -1
        n2 = route_edges[rs + 2] if rl > 2 else -1
        first, nl = roads.edge_first_lane[e], roads.edge_num_lanes[e]
        # SUMO's "best": of the lanes that follow the route furthest without a lane change
        # (up to REACH past this edge), the one with most room; any lane if none leads on
        best, best_c, best_room, best_reach = -1, -1, -1.0, -2.0
        for lane_i in range(first, first + nl):
            c = -1
            reach = REACH
            if nxt >= 0:
                c = find_conn(lane_i, nxt, n2, roads.lane_out_ptr, roads.lane_out,
                              roads.conn_to_edge, roads.conn_to_lane)
                reach = lane_reach(lane_i, 0, rs, rl - 1, route_edges, roads.lane_out_ptr,
                                   roads.lane_out, roads.conn_to_edge, roads.conn_to_lane,
                                   roads.lane_length)
            room = ls.tail_back[lane_i]
            if reach > best_reach or (reach == best_reach and room > best_room):
                best, best_c, best_room, best_reach = lane_i, c, room, reach
        # A lane shorter than the vehicle takes it when empty, front at the lane's end (SUMO
        # inserts there too; imported networks have edges of a few metres).
        short_free = (best >= 0 and roads.lane_length[best] < length + s0
                      and math.isinf(ls.tail_speed[best]) and ls.reserved[best] == 0.0)
        base = length + POSITION_EPS  # SUMO's departPos "base": the back just on the lane
        ok = best >= 0 and (best_room - base >= s0 or short_free)
        v = 0.0
        if ok:
            vmax = min(types.max_speed[ty], roads.lane_speed[best] * types.speed_factor[ty])
            vl = ls.tail_speed[best]
            if math.isinf(vl):
                v_safe = vmax
            else:
                b, T = types.decel[ty], types.tau[ty]
                gap = max(best_room - base - s0, 0.0)
                v_safe = -b * T + math.sqrt((b * T) ** 2 + vl * vl + 2.0 * b * gap)
            want = trips.depart_speed[tr]
            if want < 0.0:
                v = min(vmax, v_safe)
            elif want <= v_safe + 1e-9:
                v = min(want, vmax)
            else:
                ok = False
        if not ok:
            ls.edge_stamp[e] = tick
            backlog[keep] = tr
            keep += 1
            continue
        n_free -= 1
        i = free_slots[n_free]
        veh.alive[i] = 1
        veh.vtype[i] = ty
        veh.lane[i] = best
        veh.pos[i] = min(base, roads.lane_length[best])
        veh.speed[i] = v
        veh.speed_next[i] = v
        veh.route_start[i] = rs
        veh.route_len[i] = rl
        veh.ridx[i] = 0
        veh.next_conn[i] = best_c
        veh.last_conn[i] = -1
        veh.trip[i] = tr
        veh.dist[i] = 0.0
        veh.waiting[i] = 0.0
        veh.halt_cont[i] = 0.0
        veh.stops[i] = 0
        veh.time_loss[i] = 0.0
        veh.lc_time[i] = -1e9
        veh.coop[i] = -1
        veh.link_wait[i] = 0
        trips.state[tr] = 1
        trips.t_insert[tr] = t
        if math.isinf(ls.tail_speed[best]) and best_c >= 0:
            _approach(best_c, roads.lane_length[best] - veh.pos[i], v, types.decel[ty],
                      ls.conn_state, ls.approach, ls.approach_wait, ls.conn_listed, ls.conns,
                      ls.counts)
        mark_tail(best, roads.lane_length, ls.tail_back, ls.tail_speed, ls.tails, ls.counts)
        ls.tail_back[best] = veh.pos[i] - length
        ls.tail_speed[best] = v
        order[n_order] = i
        n_order += 1
        inserted_out[n_ins] = i
        n_ins += 1
    return keep, n_free, n_order, n_ins


@njit_inline
def _approach(c, dist, v, decel, conn_state, approach, approach_wait, listed, conns, counts):
    """An inserted vehicle that is alone on its lane approaches link ``c``: record it as
    :func:`~citytwin.agents.kernels.traffic.prepass` does for every lane's front vehicle, so
    that the prepass need not run again after insertion."""
    st = conn_state[c]
    if stops_for(st, v, decel, dist):
        return
    if v < HALT_SPEED:
        return  # a standing vehicle at the far end of its lane: the prepass would keep it
        #         only if it could enter now, which matters to nobody this far away
    eta = dist / max(v, 1.0)
    if eta < approach[c]:
        list_conn(c, listed, conns, counts)
        approach[c] = eta
        approach_wait[c] = -1.0
