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
def _last_crossing(ax, ay, a0, a1, bx, by, b0, b1) -> float:
    """Geometric distance along polyline b (points b0..b1-1) to its last crossing with
    polyline a (points a0..a1-1); -1 if they do not cross."""
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
                best = max(best, along + t * seg)
        along += seg
    return best


@njit
def conflict_clearances(shape_ptr, shape_x, shape_y, lane_length, n_normal, conn_to_lane,
                        foe_ptr, foe) -> np.ndarray:
    """For each foe entry ``q`` of connection ``c`` (``f = foe[q]``): the position along
    ``f`` (in lane metres) that a vehicle's back on ``f`` must pass before ``c`` may be
    entered; :data:`MERGE` for a merge, :data:`NO_CONFLICT` when the paths share no point."""
    out = np.empty(foe.shape[0])
    for c in range(foe_ptr.shape[0] - 1):
        for q in range(foe_ptr[c], foe_ptr[c + 1]):
            f = foe[q]
            if conn_to_lane[c] == conn_to_lane[f]:
                out[q] = MERGE
                continue
            g = _last_crossing(shape_x, shape_y, shape_ptr[c], shape_ptr[c + 1],
                               shape_x, shape_y, shape_ptr[f], shape_ptr[f + 1])
            if g < 0.0:
                out[q] = NO_CONFLICT
                continue
            geo = 0.0
            for j in range(shape_ptr[f], shape_ptr[f + 1] - 1):
                geo += math.hypot(shape_x[j + 1] - shape_x[j], shape_y[j + 1] - shape_y[j])
            length = lane_length[n_normal + f]
            x = g * length / geo if geo > 0.0 else length
            out[q] = min(x + HALF_LANE_WIDTH, length)
    return out
