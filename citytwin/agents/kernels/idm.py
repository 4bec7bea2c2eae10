"""Kernels: the Intelligent Driver Model (Treiber et al.), as SUMO's IDM evaluates it.

Small helpers, compiled into the kernels that call them per vehicle.
"""

from __future__ import annotations

import math

from citytwin.agents.kernels._config import njit_inline

NUMERICAL_EPS = 0.001     # m, m/s; SUMO's floor for gaps and desired speeds in the IDM


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
def idm_speed(v: float, v0: float, gap: float, v_lead: float, a: float, b: float, s0: float,
              T: float, delta: float, dt: float) -> float:
    """The speed after ``dt`` behind a leader ``gap`` m ahead driving at ``v_lead`` (one
    Euler step of the IDM; ``s0`` 0 for a stop line, as SUMO's ``stopSpeed``). SUMO's floors
    keep the gap and the desired speed off zero."""
    s = s0 + max(0.0, v * T + v * (v - v_lead) / (2.0 * math.sqrt(a * b)))
    r = s / max(gap, NUMERICAL_EPS)
    return max(0.0, v + a * (1.0 - _pow(v / max(v0, NUMERICAL_EPS), delta) - r * r) * dt)


@njit_inline
def idm_free_speed(v: float, v0: float, a: float, delta: float, dt: float) -> float:
    """:func:`idm_speed` on a free road."""
    return max(0.0, v + a * (1.0 - _pow(v / max(v0, NUMERICAL_EPS), delta)) * dt)
