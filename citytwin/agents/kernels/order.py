"""Kernels: vehicles ordered by lane and position, and the lane index over that order.

Vehicles are kept ordered by lane and, within a lane, by position (ascending), so the leader
of ``order[k]`` is ``order[k+1]`` while both share a lane. Each lane's vehicles are
``order[span[l, 0]:span[l, 1]]`` (``LaneState.lane_span``), and the lanes with vehicles are
listed (``LaneState.busy``), so the kernels that follow work through those only.
"""

from __future__ import annotations

import numpy as np

from citytwin.agents.kernels._config import njit
from citytwin.agents.kernels.state import N_BUSY, N_CHANGED


@njit
def sort_by_lane(order: np.ndarray, n: int, alive: np.ndarray, lane: np.ndarray,
                 pos: np.ndarray, tmp: np.ndarray, ls) -> int:
    """Reorder ``order[:n]`` by (lane, position), dropping dead slots, and index the lanes
    (:func:`index_lanes`). Returns the new count.

    Ties keep the order they had (the sort is stable). Most vehicles are still on the lane
    they were on when the lanes were last indexed ("stayers": in order already, up to the odd
    overtaking fixed by an insertion sort); the others ("movers": they entered a lane or
    changed lanes) are sorted apart and merged in. The cost grows with the vehicles and the
    movers, not with the size of the network.
    """
    span = ls.lane_span
    top = tmp.shape[0] - 1
    ns = nm = 0
    for k in range(n):
        i = order[k]
        if not alive[i]:
            continue
        if span[lane[i], 0] <= k < span[lane[i], 1]:
            tmp[ns] = i
            ns += 1
        else:  # movers go to the front of order (read already), their old index to tmp's end
            order[nm] = i
            tmp[top - nm] = k
            nm += 1
    for a in range(1, ns):  # stayers: by position within each lane
        x = tmp[a]
        lx, px = lane[x], pos[x]
        b = a - 1
        while b >= 0 and lane[tmp[b]] == lx and pos[tmp[b]] > px:
            tmp[b + 1] = tmp[b]
            b -= 1
        tmp[b + 1] = x
    if nm == 0:  # the usual tick on long roads: nobody entered or changed a lane
        order[:ns] = tmp[:ns]
        index_lanes(order, ns, lane, ls)
        return ns
    movers = order[:nm].copy()
    old_k = tmp[top - nm + 1:top + 1][::-1].copy()
    perm = _by_lane_and_pos(movers, lane, pos)
    a = b = 0
    for out in range(ns + nm):  # merge; on a tie the one that came first before comes first
        mover = b < nm
        if mover and a < ns:
            x, y = tmp[a], movers[perm[b]]
            if lane[y] != lane[x]:
                mover = lane[y] < lane[x]
            elif pos[y] != pos[x]:
                mover = pos[y] < pos[x]
            else:  # the mover was before the stayer's lane, or after it
                mover = old_k[perm[b]] < span[lane[x], 0]
        if mover:
            order[out] = movers[perm[b]]
            b += 1
        else:
            order[out] = tmp[a]
            a += 1
    index_lanes(order, ns + nm, lane, ls)
    return ns + nm


@njit
def _by_lane_and_pos(slots: np.ndarray, lane: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The stable sorting permutation of ``slots`` by (lane, position)."""
    m = slots.shape[0]
    if m <= 16:
        perm = np.arange(m)
        for a in range(1, m):
            x = perm[a]
            lx, px = lane[slots[x]], pos[slots[x]]
            b = a - 1
            while b >= 0 and (lane[slots[perm[b]]] > lx or (
                    lane[slots[perm[b]]] == lx and pos[slots[perm[b]]] > px)):
                perm[b + 1] = perm[b]
                b -= 1
            perm[b + 1] = x
        return perm
    by_pos = np.argsort(pos[slots], kind="mergesort")
    return by_pos[np.argsort(lane[slots[by_pos]], kind="mergesort")]


@njit
def index_lanes(order: np.ndarray, n: int, lane: np.ndarray, ls) -> None:
    """Point ``ls.lane_span`` at each lane's vehicles in the sorted ``order[:n]`` and list
    the lanes with vehicles in ``ls.busy``; only lanes busy before or now are written."""
    span, busy, c = ls.lane_span, ls.busy, ls.counts
    for q in range(c[N_BUSY]):
        span[busy[q], 0] = 0
        span[busy[q], 1] = 0
    nb = 0
    k = 0
    while k < n:
        lane_i = lane[order[k]]
        e = k + 1
        while e < n and lane[order[e]] == lane_i:
            e += 1
        span[lane_i, 0] = k
        span[lane_i, 1] = e
        busy[nb] = lane_i
        nb += 1
        k = e
    c[N_BUSY] = nb


@njit
def sort_changed(order: np.ndarray, lane: np.ndarray, pos: np.ndarray, tmp: np.ndarray, ls,
                 lane_edge: np.ndarray, edge_first_lane: np.ndarray,
                 edge_num_lanes: np.ndarray) -> bool:
    """What :func:`sort_by_lane` does after the lane changes of a tick, on the edges they
    happened on only (``ls.changed``: the lanes changed into). False, with nothing done, on
    a network with an edge of more than 64 lanes changed on: sort it all.

    A change keeps the vehicle on its edge, and the vehicles on an edge's lanes are one run of
    ``order``: that run is sorted again (stably, by lane and position: on a tie the vehicle
    that came first before comes first, as in the whole sort), its lanes indexed again, and
    the lanes that became busy or empty added to or dropped from ``ls.busy``.
    """
    span, c = ls.lane_span, ls.counts
    for q in range(c[N_CHANGED]):
        if edge_num_lanes[lane_edge[ls.changed[q]]] > 64:
            return False
    added = np.empty(c[N_CHANGED], np.int32)  # only a lane changed into can become busy
    n_added = 0
    emptied = False
    for q in range(c[N_CHANGED]):
        e = lane_edge[ls.changed[q]]
        first, last = edge_first_lane[e], edge_first_lane[e] + edge_num_lanes[e]
        lo, hi = order.shape[0], 0
        was = np.uint64(0)  # the edge's busy lanes, one bit each
        for lane_i in range(first, last):
            if span[lane_i, 1] > span[lane_i, 0]:
                lo = min(lo, span[lane_i, 0])
                hi = max(hi, span[lane_i, 1])
                was |= np.uint64(1) << np.uint64(lane_i - first)
            span[lane_i, 0] = 0
            span[lane_i, 1] = 0
        for a in range(lo + 1, hi):  # insertion sort: stable, and the run is short
            x = order[a]
            lx, px = lane[x], pos[x]
            b = a - 1
            while b >= lo and (lane[order[b]] > lx or (lane[order[b]] == lx
                                                         and pos[order[b]] > px)):
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = x
        now = np.uint64(0)
        k = lo
        while k < hi:
            lane_i = lane[order[k]]
            end = k + 1
            while end < hi and lane[order[end]] == lane_i:
                end += 1
            span[lane_i, 0] = k
            span[lane_i, 1] = end
            bit = np.uint64(1) << np.uint64(lane_i - first)
            now |= bit
            if not was & bit:
                added[n_added] = lane_i
                n_added += 1
            k = end
        emptied = emptied or (was & ~now) != 0
    if n_added or emptied:
        _merge_busy(ls.busy, c, span, added[:n_added], tmp)
    return True


@njit
def _merge_busy(busy, c, span, added, tmp):
    """``busy`` (ascending) without the lanes that are empty now, with ``added``."""
    m = added.shape[0]
    for a in range(1, m):  # few
        x = added[a]
        b = a - 1
        while b >= 0 and added[b] > x:
            added[b + 1] = added[b]
            b -= 1
        added[b + 1] = x
    out = 0
    b = 0
    for q in range(c[N_BUSY]):
        lane_i = busy[q]
        while b < m and added[b] < lane_i:
            tmp[out] = added[b]
            out += 1
            b += 1
        if span[lane_i, 1] > span[lane_i, 0]:
            tmp[out] = lane_i
            out += 1
    while b < m:
        tmp[out] = added[b]
        out += 1
        b += 1
    busy[:out] = tmp[:out]
    c[N_BUSY] = out


@njit
def merge_inserted(order: np.ndarray, n: int, n_ins: int, lane: np.ndarray, tmp: np.ndarray,
                   ls) -> None:
    """Move the ``n_ins`` slots appended to the sorted ``order[:n]`` to the starts of their
    lanes and index the lanes: what :func:`sort_by_lane` would do, for vehicles just inserted
    behind everything on their lanes (at most one per lane), without a full sort."""
    ins = order[n:n + n_ins].copy()
    for a in range(1, n_ins):  # by lane (few)
        x = ins[a]
        b = a - 1
        while b >= 0 and lane[ins[b]] > lane[x]:
            ins[b + 1] = ins[b]
            b -= 1
        ins[b + 1] = x
    src = 0
    for q in range(n_ins):  # each goes before the first vehicle on its lane or a later one
        lq = lane[ins[q]]
        while src < n and lane[order[src]] < lq:
            tmp[src + q] = order[src]
            src += 1
        tmp[src + q] = ins[q]
    tmp[src + n_ins:n + n_ins] = order[src:n]
    order[:n + n_ins] = tmp[:n + n_ins]
    index_lanes(order, n + n_ins, lane, ls)
