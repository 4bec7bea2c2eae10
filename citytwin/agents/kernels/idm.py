"""Kernels: the Intelligent Driver Model (Treiber et al.), as SUMO's IDM evaluates it.

Small helpers, compiled into the kernels that call them per vehicle.
"""

from __future__ import annotations

import math

from citytwin.agents.kernels._config import njit_inline, njit_vector

NUMERICAL_EPS = 0.001     # m, m/s; SUMO's floor for gaps and desired speeds in the IDM
IDM_STEPPING = 0.25       # s; SUMO's default IDM ``stepping``: the sub-step of one speed update


@njit_inline
def idm(v: float, v0: float, gap: float, dv: float, a: float, b: float, s0: float,
        T: float, delta: float) -> float:
    """IDM acceleration for speed ``v``, desired speed ``v0``, net gap ``gap`` to a leader
    closing at ``dv`` (own speed minus the leader's)."""
    s_star = s0 + max(0.0, v * T + v * dv / (2.0 * math.sqrt(a * b)))
    s = max(gap, 0.01)
    r = s_star / s
    return a * (1.0 - _pow(v / v0, delta) - r * r)


@njit_inline
def _pow(x: float, delta: float) -> float:
    """``x ** delta``, without a call to pow for IDM's usual exponent 4."""
    if delta == 4.0:
        x2 = x * x
        return x2 * x2
    return x ** delta


@njit_inline
def idm_free(v: float, v0: float, a: float, delta: float) -> float:
    """IDM acceleration on a free road."""
    return a * (1.0 - _pow(v / v0, delta))


@njit_inline
def idm_steps(dt: float) -> int:
    """How many sub-steps SUMO's IDM integrates a step of ``dt`` s in (its ``stepping``)."""
    return max(1, int(dt / IDM_STEPPING + 0.5))


@njit_inline
def idm_speed(v: float, v0: float, gap: float, v_lead: float, a: float, b: float, s0: float,
              T: float, delta: float, dt: float) -> float:
    """The speed after ``dt`` behind a leader ``gap`` m ahead driving at ``v_lead`` (``s0`` 0
    for a stop line, as SUMO's ``stopSpeed``).

    As SUMO's ``MSCFModel_IDM::_v``: Euler sub-steps of ``IDM_STEPPING`` s, the gap shrinking
    by what the vehicle closes in each with the leader's speed held; SUMO's floors keep the
    gap and the desired speed off zero.
    """
    n = idm_steps(dt)
    h = dt / n
    inv_2sqrt_ab = 0.5 / math.sqrt(a * b)
    inv_v0 = 1.0 / max(v0, NUMERICAL_EPS)
    ah = a * h
    for _ in range(n):
        s = s0 + max(0.0, v * T + v * (v - v_lead) * inv_2sqrt_ab)
        r = s / max(gap, NUMERICAL_EPS)
        v = max(0.0, v + ah * (1.0 - _pow(v * inv_v0, delta) - r * r))
        gap -= max(0.0, (v - v_lead) * h)
    return v


@njit_inline
def idm_free_speed(v: float, v0: float, a: float, delta: float, dt: float) -> float:
    """:func:`idm_speed` on a free road."""
    n = idm_steps(dt)
    ah = a * dt / n
    inv_v0 = 1.0 / max(v0, NUMERICAL_EPS)
    for _ in range(n):
        v = max(0.0, v + ah * (1.0 - _pow(v * inv_v0, delta)))
    return v


@njit_inline
def stop_speed(v: float, v0: float, gap: float, a: float, b: float, T: float, delta: float,
               dt: float) -> float:
    """The speed after ``dt`` for a stop ``gap`` m ahead (SUMO's ``MSCFModel_IDM::stopSpeed``:
    the IDM without minimum gap, nothing inside 0.01 m), never beyond the stop point."""
    if gap < 0.01:
        return 0.0
    return min(idm_speed(v, v0, gap, 0.0, a, b, 0.0, T, delta, dt), gap / dt)


#: Vehicles the car-following kernel takes per block: their IDM speeds are computed together
#: (:func:`idm_speeds`).
BLOCK = 256

# Rows of the scratch block :func:`idm_speeds` reads and writes.
(B_V, B_VMAX, B_A, B_B, B_S0, B_T, B_DELTA, B_GAP, B_VLEAD, B_FREE, B_LEAD, B_G, B_INV_V0,
 B_INV2, B_AH_FREE, B_AH_LEAD) = range(16)
B_ROWS = 16


@njit_inline
def defer_speed(vs, q, v, vmax, gap, v_lead, a, b, s0, T, delta, dt, d, dq, nd):
    """``(min(vs, idm_speed(...)), nd)`` for row ``q`` of a block, the IDM speed left to
    :func:`idm_speeds` on the block ``d`` of deferred speeds: lists its inputs in column
    ``nd`` of ``d`` (and ``q`` in ``dq[nd]``) and returns ``(vs, nd + 1)``; computes it now
    when ``d`` is full."""
    if nd == d.shape[1]:
        return min(vs, idm_speed(v, vmax, gap, v_lead, a, b, s0, T, delta, dt)), nd
    d[B_V, nd], d[B_VMAX, nd], d[B_A, nd], d[B_B, nd] = v, vmax, a, b
    d[B_S0, nd], d[B_T, nd], d[B_DELTA, nd] = s0, T, delta
    d[B_GAP, nd], d[B_VLEAD, nd] = gap, v_lead
    dq[nd] = q
    return vs, nd + 1


@njit_inline
def defer_stop(vs, q, v, vmax, gap, a, b, T, delta, dt, d, dq, nd):
    """:func:`defer_speed` for :func:`stop_speed`: its bound ``gap / dt`` now, its IDM speed
    later."""
    if gap < 0.01:
        return min(vs, 0.0), nd
    return defer_speed(min(vs, gap / dt), q, v, vmax, gap, 0.0, a, b, 0.0, T, delta, dt, d,
                       dq, nd)


@njit_vector
def idm_speeds(m: int, dt: float, all4: bool, w, free: bool = True) -> None:
    """:func:`idm_free_speed` and :func:`idm_speed` of the first ``m`` columns of a block
    (vehicles, or speeds deferred by :func:`defer_speed`) at once: the same arithmetic, value
    for value, with the sub-steps outside the loop over the columns, so that their independent
    chains run side by side in vector registers instead of one vehicle's sub-steps waiting on
    each other.

    ``w`` is a block of :data:`B_ROWS` rows: each column's speed, desired speed, IDM
    parameters, gap to and speed of its leader (an infinite gap without one) in the rows
    ``B_V`` to ``B_VLEAD``; writes the free-road speeds to ``w[B_FREE]`` (unless not
    ``free``) and the speeds behind the leaders to ``w[B_LEAD]``. ``all4``: every vehicle's
    ``delta`` is 4. (No divisor here is zero: accelerations and decelerations are positive,
    desired speeds and gaps floored.)
    """
    n = idm_steps(dt)
    h = dt / n
    v, vmax, a, b, s0, T = w[B_V], w[B_VMAX], w[B_A], w[B_B], w[B_S0], w[B_T]
    delta, gap, v_lead, vf, vl = w[B_DELTA], w[B_GAP], w[B_VLEAD], w[B_FREE], w[B_LEAD]
    g, inv_v0, inv2, ahf, ahl = w[B_G], w[B_INV_V0], w[B_INV2], w[B_AH_FREE], w[B_AH_LEAD]
    for k in range(m):
        inv_v0[k] = 1.0 / max(vmax[k], NUMERICAL_EPS)
        inv2[k] = 0.5 / math.sqrt(a[k] * b[k])
        ahf[k] = a[k] * dt / n
        ahl[k] = a[k] * h
        vf[k] = v[k]
        vl[k] = v[k]
        g[k] = gap[k]
    for _ in range(n):
        if free and all4:
            for k in range(m):
                x = vf[k] * inv_v0[k]
                x2 = x * x
                vf[k] = max(0.0, vf[k] + ahf[k] * (1.0 - x2 * x2))
        elif free:
            for k in range(m):
                vf[k] = max(0.0, vf[k] + ahf[k] * (1.0 - _pow(vf[k] * inv_v0[k], delta[k])))
        if all4:
            for k in range(m):
                u, ul = vl[k], v_lead[k]
                s = s0[k] + max(0.0, u * T[k] + u * (u - ul) * inv2[k])
                r = s / max(g[k], NUMERICAL_EPS)
                y = u * inv_v0[k]
                y2 = y * y
                u = max(0.0, u + ahl[k] * (1.0 - y2 * y2 - r * r))
                vl[k] = u
                g[k] -= max(0.0, (u - ul) * h)
        else:
            for k in range(m):
                u, ul = vl[k], v_lead[k]
                s = s0[k] + max(0.0, u * T[k] + u * (u - ul) * inv2[k])
                r = s / max(g[k], NUMERICAL_EPS)
                u = max(0.0, u + ahl[k] * (1.0 - _pow(u * inv_v0[k], delta[k]) - r * r))
                vl[k] = u
                g[k] -= max(0.0, (u - ul) * h)
