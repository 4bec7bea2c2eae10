"""Kernels: read routes out of Dijkstra predecessor trees; the connection a route takes."""

from __future__ import annotations

import numpy as np

from citytwin.agents.kernels._config import njit, njit_inline

REACH = 150.0         # m past its end within which a lane must lead on along the route
REACH_DEPTH = 6       # edges looked at for that (chains of short edges in imported nets)


@njit
def extract_paths(pred: np.ndarray, row_of: np.ndarray, origins: np.ndarray,
                  dests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paths from ``origins[k]`` to ``dests[k]`` through tree ``pred[row_of[k]]``.

    ``pred`` is scipy's predecessor matrix (-9999 where there is none). Returns the CSR
    ``(ptr, edges)`` of the paths, origin first; an unreachable destination gives an empty
    path; an origin equal to its destination gives the origin alone.
    """
    n = origins.shape[0]
    lengths = np.zeros(n, dtype=np.int64)
    for k in range(n):
        o, d, row = origins[k], dests[k], row_of[k]
        if o == d:
            lengths[k] = 1
            continue
        m = 1
        x = d
        while x != o:
            x = pred[row, x]
            if x < 0:
                m = 0
                break
            m += 1
        lengths[k] = m
    ptr = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        ptr[k + 1] = ptr[k] + lengths[k]
    edges = np.empty(ptr[n], dtype=np.int32)
    for k in range(n):
        m = lengths[k]
        if m == 0:
            continue
        x = dests[k]
        for j in range(m - 1, -1, -1):
            edges[ptr[k] + j] = x
            if j > 0:
                x = pred[row_of[k], x]
    return ptr, edges


@njit
def apply_routes(slots, ptr, edges, lane, pos, route_start, route_len, ridx, next_conn,
                 reach_lane, route_edges, n_route, lane_length, lane_out_ptr, lane_out,
                 conn_to_edge, conn_to_lane):
    """Give vehicles ``slots[k]`` the new routes ``edges[ptr[k]:ptr[k+1]]`` (starting at
    their current edge) where they differ from what is left of the old route.

    A new route whose next edge cannot be reached from the current lane is refused within
    50 m of the lane's end (too late to change lanes). Returns ``(changed, n_route)``.
    ``reach_lane``: the vehicles' lane-change caches, forgotten for every changed route.
    """
    changed = 0
    for k in range(slots.shape[0]):
        i = slots[k]
        s, e = ptr[k], ptr[k + 1]
        m = e - s
        if m < 2:
            continue
        rs, r = route_start[i], ridx[i]
        same = route_len[i] - r == m
        if same:
            for q in range(m):
                if route_edges[rs + r + q] != edges[s + q]:
                    same = False
                    break
        if same:
            continue
        n2 = edges[s + 2] if m > 2 else -1
        c = find_conn(lane[i], edges[s + 1], n2, lane_out_ptr, lane_out, conn_to_edge,
                      conn_to_lane)
        if c < 0 and lane_length[lane[i]] - pos[i] < 50.0:
            continue
        route_edges[n_route:n_route + m] = edges[s:e]
        route_start[i] = n_route
        route_len[i] = m
        ridx[i] = 0
        next_conn[i] = c
        reach_lane[i] = -1  # its lane-change cache was for the old route
        n_route += m
        changed += 1
    return changed, n_route


@njit_inline
def find_conn(lane: int, next_edge: int, next2_edge: int, lane_out_ptr: np.ndarray,
              lane_out: np.ndarray, conn_to_edge: np.ndarray, conn_to_lane: np.ndarray) -> int:
    """The connection from ``lane`` into ``next_edge``, preferring one whose target lane
    continues into ``next2_edge``; -1 if the lane has none."""
    first = -1
    for k in range(lane_out_ptr[lane], lane_out_ptr[lane + 1]):
        c = lane_out[k]
        if conn_to_edge[c] != next_edge:
            continue
        if next2_edge < 0:
            return c
        if first < 0:
            first = c
        tl = conn_to_lane[c]
        for q in range(lane_out_ptr[tl], lane_out_ptr[tl + 1]):
            if conn_to_edge[lane_out[q]] == next2_edge:
                return c
    return first


@njit_inline
def lane_reach(lane_i, r, rs, last, route_edges, lane_out_ptr, lane_out, conn_to_edge,
               conn_to_lane, lane_length):
    """How far past the end of ``lane_i`` (on route edge ``r``) the vehicle can follow its
    route without another lane change, capped at ``REACH`` (also when the route ends);
    -1 when the lane has no connection to the next route edge."""
    d = 0.0
    cl = lane_i
    for _ in range(REACH_DEPTH):
        if r >= last:
            return REACH
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        c = find_conn(cl, route_edges[rs + r + 1], n2, lane_out_ptr, lane_out, conn_to_edge,
                      conn_to_lane)
        if c < 0:
            return d if cl != lane_i else -1.0
        cl = conn_to_lane[c]
        d += lane_length[cl]
        r += 1
        if d >= REACH:
            return REACH
    return REACH
