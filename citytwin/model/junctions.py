"""Where vehicles meet inside junctions: whether two paths cross, and where a yielding vehicle
waits inside its junction (SUMO's internal junction of a left turn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: A yielding vehicle waits inside its junction only if its wait point is at least this far
#: past the stop line (metres).
MIN_WAIT = 1.0
#: Distance kept to a conflict point by a vehicle waiting before it (metres).
STOP_GAP = 0.5


def _segments_cross(p1, p2, q1, q2) -> bool:
    def orient(a, b, c) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


def polylines_cross(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    """Do two polylines (junction paths) cross anywhere?"""
    return any(_segments_cross(a[i], a[i + 1], b[j], b[j + 1])
               for i in range(len(a) - 1) for j in range(len(b) - 1))


def wait_points(foe_ptr: np.ndarray, foe: np.ndarray, foe_at: np.ndarray,
                 resp_ptr: np.ndarray, resp: np.ndarray,
                 green_together: Callable[[int, int], bool],
                 given: Sequence[float | None] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Where a yielding vehicle waits inside its junction, and which waiting vehicles a foe
    may ignore.

    ``wait[c]``: just short of the first point where connection ``c`` meets a foe it must
    yield to and that can be green with it (SUMO's internal junction of a left turn): a
    vehicle with a gap to enter but not yet one to cross waits there, off its approach lane;
    -1 where that point is within :data:`MIN_WAIT` of the stop line (the vehicle waits at the
    stop line). Where ``given[c]`` is set (SUMO's internal junction of an imported network),
    that is the wait point.
    ``yields[q]`` for foe entry ``q`` of ``c`` (``f = foe[q]``): ``f`` yields to ``c`` and
    meets it beyond ``f``'s wait point, so a vehicle standing at that wait point does not
    hold ``c`` up.
    """
    n = foe_ptr.shape[0] - 1
    entry = {(c, int(foe[q])): q for c in range(n) for q in range(foe_ptr[c], foe_ptr[c + 1])}
    wait = np.full(n, -1.0)
    for c in range(n):
        w = min((foe_at[entry[c, int(r)]] for r in resp[resp_ptr[c]:resp_ptr[c + 1]]
                 if green_together(c, int(r))), default=np.inf) - STOP_GAP
        if given is not None and given[c] is not None:
            wait[c] = given[c]
        elif MIN_WAIT <= w < np.inf:
            wait[c] = w
    yields = np.zeros(foe.shape[0], dtype=np.uint8)
    for c in range(n):
        for q in range(foe_ptr[c], foe_ptr[c + 1]):
            f = int(foe[q])
            if wait[f] >= 0 and c in resp[resp_ptr[f]:resp_ptr[f + 1]] \
                    and foe_at[entry[f, c]] >= wait[f]:
                yields[q] = 1
    return wait, yields
