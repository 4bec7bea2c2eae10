"""Kernels: right of way at junctions (foes inside, links to yield to, gap acceptance, room
to leave the junction, slowing for yielding links).

Small helpers, compiled into the car-following, prepass and move kernels
(:mod:`citytwin.agents.kernels.following`, :mod:`citytwin.agents.kernels.traffic`); like every helper called per vehicle they take the
arrays they read, not the bundles (see :mod:`citytwin.agents.kernels._config`).
"""

from __future__ import annotations

import math

import numpy as np

from citytwin.agents.kernels._config import njit_inline
from citytwin.agents.kernels.routes import find_conn
from citytwin.agents.roads import MINOR, RED, YELLOW

HALT_SPEED = 0.1          # m/s; SUMO counts a vehicle below this as halting
CONFLICT_WINDOW = 4.0     # s; a foe inside the junction matters when we arrive within this
IMPATIENCE = 20.0         # s; after waiting this long a minor vehicle accepts short gaps
MIN_GAP_TIME = 1.5        # s; the shortest gap an impatient vehicle accepts
VISIBILITY = 4.5          # m; from this close to a yielding link a driver sees its foes


@njit_inline
def foes_inside(c, lo, hi, foe_ptr, foe, foe_clear, foe_at, foe_yields, occ, min_back, occ_go,
                min_back_go, to_wait) -> bool:
    """Is a vehicle inside a foe of connection ``c`` and not yet past their conflict point
    (for a merging foe: still inside at all)? Only foes that ``c`` meets between ``lo`` and
    ``hi`` metres along it count; a vehicle standing at the wait point of a foe that yields to
    ``c`` there does not, unless ``to_wait``: the asking vehicle enters a signalised ``c`` to
    stand at its wait point (``hi``), where it would stand in that vehicle's way. It lets the
    vehicles left inside by the last stage clear first: two left turners of two stages, each
    standing in the other's way, would otherwise lock the junction (four of them in a ring).

    Like every helper called per vehicle, it takes the arrays it reads, not the bundles
    (see :mod:`citytwin.agents.kernels._config`).
    """
    for q in range(foe_ptr[c], foe_ptr[c + 1]):
        at = foe_at[q]
        if at < lo or at >= hi:
            continue
        f = foe[q]
        clear = foe_clear[q]
        o, mb = ((occ_go[f], min_back_go[f]) if foe_yields[q] and not to_wait
                 else (occ[f], min_back[f]))
        if clear == np.inf:
            if o > 0:
                return True
        elif clear >= 0.0 and mb < clear:  # clear < 0: no common point
            return True
    return False


@njit_inline
def yields_to_none(c, clear, mine, resp_ptr, resp, approach, approach_wait) -> bool:
    """Does no vehicle that link ``c`` must yield to arrive before ``clear`` seconds?
    ``mine``: how long the asking vehicle has stood (-1: it moves)."""
    for q in range(resp_ptr[c], resp_ptr[c + 1]):
        f = resp[q]
        if approach[f] < clear:
            # Yield cycles (mutual or round-robin yielding, common in SUMO's joined
            # junctions) would wait forever: among standing vehicles the one that has
            # waited longest goes (ties: the lower link). The move kernel's foe check
            # keeps two of them from entering in the same tick.
            w = approach_wait[f]
            if not (0.0 <= w < mine or (w == mine >= 0.0 and f > c)):
                return False
    return True


@njit_inline
def time_to_cover(d: float, v: float, a: float, vmax: float) -> float:
    """Seconds to drive ``d`` metres from speed ``v``, accelerating at ``a`` up to ``vmax``."""
    if v >= vmax:
        return d / max(v, 0.1)
    t_acc = (vmax - v) / a
    d_acc = v * t_acc + 0.5 * a * t_acc * t_acc
    if d <= d_acc:
        return (math.sqrt(v * v + 2.0 * a * d) - v) / a
    return t_acc + (d - d_acc) / vmax


@njit_inline
def clear_time(eta, d, v, halt, length, accel, max_speed, speed_factor, speed_through):
    """Seconds until a vehicle ``eta`` s from a conflict zone ``d`` m long has left it (an
    impatient one, halting for long, accepts a gap that makes the foe brake)."""
    if halt >= IMPATIENCE:
        return eta + MIN_GAP_TIME
    vmax = min(max_speed, speed_through * speed_factor)
    return eta + time_to_cover(d + length, v, accel, vmax) + 1.0


@njit_inline
def stops_for(st, v, decel, dist) -> bool:
    """Does a vehicle at ``v``, ``dist`` metres before a link in state ``st``, stop for its
    light: at red, and at yellow when it can stop comfortably (at ``decel``)?"""
    return st == RED or (st == YELLOW and v * v / (2.0 * decel) <= dist + 0.5)


@njit_inline
def link_open(c, dist, v, halt, length, accel, decel, max_speed, speed_factor, via_length,
               via_speed, wait, box_free, signalised, foe_ptr, foe, foe_clear, foe_at, foe_yields,
               resp_ptr, resp, conn_state, occ, min_back, occ_go, min_back_go, approach,
               approach_wait) -> bool:
    """May a vehicle (speed ``v``, halting for ``halt`` s, of the given type parameters),
    ``dist`` metres before the stop line of link ``c``, drive on?

    ``via_length``, ``via_speed`` and ``wait`` describe the connection's path through the
    junction; ``box_free``: its exit lane has room for the vehicle or is moving;
    ``signalised``: the link is under a signal controller. A yielding
    (minor) link with a wait point is entered once the foes met before that point are clear:
    the vehicle yields to the others at the wait point (:func:`wait_open`). (Helpers take at
    most 30 arguments: Python passes more as a tuple, which numba cannot inline.)
    """
    st = conn_state[c]
    if stops_for(st, v, decel, dist):
        return False
    eta = dist / max(v, 1.0)
    if eta < CONFLICT_WINDOW:
        inner = st == MINOR and wait >= 0.0
        if foes_inside(c, 0.0, wait if inner else np.inf, foe_ptr, foe, foe_clear, foe_at,
                       foe_yields, occ, min_back, occ_go, min_back_go, inner and signalised):
            return False
        if st == MINOR and not inner:
            clear = clear_time(eta, via_length, v, halt, length, accel, max_speed,
                                speed_factor, via_speed)
            if not yields_to_none(c, clear, halt if v < HALT_SPEED else -1.0, resp_ptr,
                                   resp, approach, approach_wait):
                return False
        if not box_free:  # do not block the box
            return False
    return True


@njit_inline
def wait_open(c, dist, v, halt, length, accel, max_speed, speed_factor, via_length, via_speed,
               wait, foe_ptr, foe, foe_clear, foe_at, foe_yields, resp_ptr, resp, occ,
               min_back, occ_go, min_back_go, approach, approach_wait) -> bool:
    """May a vehicle inside (or entering) connection ``c``, ``dist`` metres before its wait
    point ``wait``, drive past it: are the foes met beyond the point clear and does no vehicle
    it yields to arrive before it has crossed?"""
    eta = dist / max(v, 1.0)
    if eta >= CONFLICT_WINDOW:
        return True
    if foes_inside(c, wait, np.inf, foe_ptr, foe, foe_clear, foe_at, foe_yields, occ,
                   min_back, occ_go, min_back_go, False):
        return False
    clear = clear_time(eta, via_length - wait, v, halt, length, accel, max_speed,
                        speed_factor, via_speed)
    return yields_to_none(c, clear, halt if v < HALT_SPEED else -1.0, resp_ptr, resp,
                           approach, approach_wait)


@njit_inline
def blind_to_foes(v, dist, b):
    """Can a vehicle at ``v``, ``dist`` m before a yielding link, not see its foes yet (more
    than ``VISIBILITY`` m away) and still stop there (at ``b``)? Then it drives as if to stop
    there (the IDM without minimum gap), as SUMO's vehicles approach a minor link."""
    return dist > VISIBILITY and v * v < 2.0 * b * dist


@njit_inline
def look_ahead(v_next, decel, dt):
    """How far a vehicle that may reach ``v_next`` this tick looks ahead for links (SUMO:
    a tick's drive at that speed plus its braking distance)."""
    return v_next * dt + v_next * v_next / (2.0 * decel)


@njit_inline
def exit_free(c, r, rs, last, seen, look, need, n_normal, lane_length, conn_to_lane,
              conn_to_edge, lane_out_ptr, lane_out, conn_state, room, standing, brutto,
              route_edges) -> bool:
    """May a vehicle ``seen`` m before link ``c`` (on the ``r``-th edge of its route, which
    starts at ``route_edges[rs]`` and ends at index ``last``) enter the junction without
    blocking it? SUMO's rule (``MSVehicle::checkRewindLinkLanes``): it may, unless a
    standing vehicle or a red link lies within its look-ahead ``look`` (m, its braking
    distance), counted through the lanes ahead on its route, and the room before it, less
    the lengths with gap (``need`` its own) of the vehicles in between, is short of ``need``.
    ``room``, ``standing`` and ``brutto`` are the prepass's (``LaneState``).
    """
    via = n_normal + c
    space = -brutto[via]
    seen += lane_length[via]
    lane = conn_to_lane[c]
    for _ in range(8):
        space += room[lane]
        if standing[lane]:
            return space >= need
        seen += lane_length[lane]
        r += 1
        if seen > look or r >= last:
            return True
        n2 = route_edges[rs + r + 2] if r + 2 <= last else -1
        c2 = find_conn(lane, route_edges[rs + r + 1], n2, lane_out_ptr, lane_out,
                       conn_to_edge, conn_to_lane)
        if c2 < 0:
            return True
        if conn_state[c2] == RED:
            return space >= need
        space -= brutto[n_normal + c2]
        seen += lane_length[n_normal + c2]
        lane = conn_to_lane[c2]
    return True
