"""Conflict points of crossing junction connections, from their shapes (run once per network).

Two connections of a junction that are foes either cross (their paths meet at a point), merge
(they end on the same lane) or, in SUMO's joined junctions, are foes without sharing any point.
A vehicle on a crossing foe only matters until its back has passed the conflict point: SUMO
checks foes there too (``MSLink`` "lengths behind crossing"), which is what lets two turns
whose paths never meet, or meet early, flow side by side.
"""

from __future__ import annotations

import math

import numpy as np

from citytwin.agents.kernels._config import njit

#: Half the width of a lane: a back this far past the crossing centre has left the conflict.
HALF_LANE_WIDTH = 1.6
#: ``conn_foe_clear`` value of a foe that shares no point with the connection.
NO_CONFLICT = -1.0
#: ``conn_foe_clear`` value of a foe that merges into the same lane (blocks while inside).
MERGE = np.inf


@njit
def _crossing(ax, ay, a0, a1, bx, by, b0, b1, last) -> float:
    """Geometric distance along polyline b (points b0..b1-1) to its last (``last``) or first
    crossing with polyline a (points a0..a1-1); -1 if they do not cross."""
    best = -1.0
    along = 0.0
    for j in range(b0, b1 - 1):
        px, py = bx[j], by[j]
        rx, ry = bx[j + 1] - px, by[j + 1] - py
        seg = math.sqrt(rx * rx + ry * ry)
        for i in range(a0, a1 - 1):
            qx, qy = ax[i], ay[i]
            sx, sy = ax[i + 1] - qx, ay[i + 1] - qy
            den = rx * sy - ry * sx
            if den == 0.0:
                continue  # parallel
            t = ((qx - px) * sy - (qy - py) * sx) / den  # along b's segment
            u = ((qx - px) * ry - (qy - py) * rx) / den  # along a's segment
            if 0.0 < t < 1.0 and 0.0 < u < 1.0:
                x = along + t * seg
                if best < 0.0 or (x > best if last else x < best):
                    best = x
        along += seg
    return best


@njit
def _geo_length(x, y, p0, p1) -> float:
    total = 0.0
    for j in range(p0, p1 - 1):
        total += math.hypot(x[j + 1] - x[j], y[j + 1] - y[j])
    return total


@njit
def conflict_points(shape_ptr, shape_x, shape_y, lane_length, n_normal, conn_to_lane,
                    foe_ptr, foe) -> tuple[np.ndarray, np.ndarray]:
    """Where each pair of foes conflicts, in lane metres. For each foe entry ``q`` of
    connection ``c`` (``f = foe[q]``):

    - ``clear[q]``: the position along ``f`` that a vehicle's back on ``f`` must pass before
      ``c`` may be entered (the last crossing plus half a lane); :data:`MERGE` for a merge,
      :data:`NO_CONFLICT` when the paths share no point;
    - ``at[q]``: the position along ``c`` where a front on ``c`` reaches the conflict with
      ``f`` (the first crossing less half a lane, at least 0; for a merge half a lane before
      the end of ``c``; ``inf`` when the paths share no point).
    """
    clear = np.empty(foe.shape[0])
    at = np.empty(foe.shape[0])
    for c in range(foe_ptr.shape[0] - 1):
        len_c = lane_length[n_normal + c]
        geo_c = _geo_length(shape_x, shape_y, shape_ptr[c], shape_ptr[c + 1])
        for q in range(foe_ptr[c], foe_ptr[c + 1]):
            f = foe[q]
            if conn_to_lane[c] == conn_to_lane[f]:
                clear[q] = MERGE
                at[q] = max(len_c - HALF_LANE_WIDTH, 0.0)
                continue
            g = _crossing(shape_x, shape_y, shape_ptr[c], shape_ptr[c + 1],
                          shape_x, shape_y, shape_ptr[f], shape_ptr[f + 1], True)
            if g < 0.0:
                clear[q] = NO_CONFLICT
                at[q] = np.inf
                continue
            geo = _geo_length(shape_x, shape_y, shape_ptr[f], shape_ptr[f + 1])
            length = lane_length[n_normal + f]
            x = g * length / geo if geo > 0.0 else length
            clear[q] = min(x + HALF_LANE_WIDTH, length)
            h = _crossing(shape_x, shape_y, shape_ptr[f], shape_ptr[f + 1],
                          shape_x, shape_y, shape_ptr[c], shape_ptr[c + 1], False)
            x = h * len_c / geo_c if geo_c > 0.0 else 0.0
            at[q] = max(x - HALF_LANE_WIDTH, 0.0)
    return clear, at
