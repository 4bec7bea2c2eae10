"""Kernel helpers: the signal strategies of the stage machine (see
:mod:`citytwin.agents.kernels.control`): where a junction in green goes next, or -1 to stay.
"""

from __future__ import annotations

from citytwin.agents.kernels._config import njit, njit_inline
from citytwin.agents.roads import MINOR

#: Strategies (``ControlArrays.strategy``).
FIXED, ACTUATED, MAX_PRESSURE, SOTL = 0, 1, 2, 3
_EPS = 1e-9


@njit_inline
def _green(code):
    return code >= MINOR


@njit
def _decide(k, t, dt, cur, g, ctl, det_last_on, roads):
    """The stage the strategy wants next, or -1 to stay."""
    st = ctl.strategy[k]
    if st == FIXED:
        target = _plan_stage(k, t, ctl)
        if target != cur and g >= ctl.min_green[k] - _EPS:
            return target
        return -1
    if st == SOTL:
        _sotl_count(k, cur, ctl, dt)
    if g < ctl.min_green[k] - _EPS:
        return -1
    if st == ACTUATED:
        return _actuated(k, t, cur, g, ctl, det_last_on)
    if st == MAX_PRESSURE:
        return _max_pressure(k, cur, g, ctl, roads)
    return _sotl(k, cur, ctl, roads)


@njit
def _plan_stage(k, t, ctl):
    """The plan's stage at time ``t``: the one whose green window holds it, or during an
    intergreen the one that comes next."""
    s0, n = ctl.stage_ptr[k], ctl.n_regular[k]
    tau = (t - ctl.offset[k]) % ctl.cycle[k]
    last = 0
    for x in range(n):
        start = ctl.plan_start[s0 + x]
        if start <= tau + _EPS:
            last = x
            if tau < start + ctl.plan_green[s0 + x] - _EPS:
                return s0 + x
    return s0 + (last + 1) % n


@njit
def _link_sum(ctl, k, s, cur, q_arr, only_new):
    """Sum of ``q_arr`` over the connections of the links green in stage ``s`` of controller
    ``k`` (with ``only_new``: only links not green in stage ``cur``)."""
    k_lo = ctl.codes_ptr[s]
    n = ctl.codes_ptr[s + 1] - k_lo
    lc = ctl.codes_ptr[cur]
    link0 = ctl.link_ptr[k]
    total = 0
    for q in range(n):
        if not _green(ctl.stage_codes[k_lo + q]):
            continue
        if only_new and _green(ctl.stage_codes[lc + q]):
            continue
        gl = link0 + q
        for z in range(ctl.lconn_ptr[gl], ctl.lconn_ptr[gl + 1]):
            total += q_arr[ctl.lconn[z]]
    return total


@njit
def _next_with_call(k, cur, ctl):
    """The next regular stage after ``cur`` (in cyclic order) with a vehicle approaching one
    of the links it would turn green; -1 if none."""
    s0, n = ctl.stage_ptr[k], ctl.n_regular[k]
    base = ctl.stage_base[cur] - s0
    for j in range(1, n + 1):
        x = s0 + (base + j) % n
        if x == cur:
            continue
        if _link_sum(ctl, k, x, cur, ctl.q_app, True) > 0:
            return x
    return -1


@njit
def _actuated(k, t, cur, g, ctl, det_last_on):
    base = ctl.stage_base[cur]
    gapped = True
    for q in range(ctl.det_ptr[base], ctl.det_ptr[base + 1]):
        if t - det_last_on[ctl.det[q]] <= ctl.max_gap[k] + _EPS:
            gapped = False
            break
    if not gapped and g < ctl.max_green[k] - _EPS:
        return -1
    return _next_with_call(k, cur, ctl)


@njit
def _pressure(ctl, k, s, roads):
    """Pressure of stage ``s``: over its green links, vehicles approaching minus vehicles at
    the start of the exit lane; a link whose exit is blocked (a halted vehicle at its start)
    serves nobody while green and adds nothing."""
    k_lo = ctl.codes_ptr[s]
    n = ctl.codes_ptr[s + 1] - k_lo
    link0 = ctl.link_ptr[k]
    p = 0.0
    for q in range(n):
        if not _green(ctl.stage_codes[k_lo + q]):
            continue
        gl = link0 + q
        for z in range(ctl.lconn_ptr[gl], ctl.lconn_ptr[gl + 1]):
            c = ctl.lconn[z]
            to = roads.conn_to_lane[c]
            if not ctl.blocked[to]:
                p += ctl.q_app[c] - ctl.n_start[to]
    return p


@njit
def _max_pressure(k, cur, g, ctl, roads):
    if g >= ctl.max_green[k] - _EPS:
        return _next_with_call(k, cur, ctl)
    if g < ctl.hold[k] - _EPS:
        return -1
    s0, n = ctl.stage_ptr[k], ctl.n_regular[k]
    p_cur = _pressure(ctl, k, cur, roads)
    best, best_p = -1, p_cur
    for x in range(s0, s0 + n):
        if x == cur:
            continue
        p = _pressure(ctl, k, x, roads)
        if p > best_p + _EPS:
            best, best_p = x, p
    return best


@njit
def _sotl_count(k, cur, ctl, dt):
    """Add the vehicles approaching each stage's red links to its counter."""
    s0, n = ctl.stage_ptr[k], ctl.n_regular[k]
    base = ctl.stage_base[cur]
    for x in range(s0, s0 + n):
        if x == base:
            ctl.kappa[x] = 0.0
        else:
            ctl.kappa[x] += dt * _link_sum(ctl, k, x, cur, ctl.q_app, True)


@njit
def _sotl(k, cur, ctl, roads):
    s0, n = ctl.stage_ptr[k], ctl.n_regular[k]
    base = ctl.stage_base[cur]
    best, best_k = -1, 0.0
    for x in range(s0, s0 + n):
        if x != base and ctl.kappa[x] > best_k:
            best, best_k = x, ctl.kappa[x]
    if best < 0:
        return -1
    # exit of the current green blocked: its green is wasted
    k_lo = ctl.codes_ptr[cur]
    link0 = ctl.link_ptr[k]
    for q in range(ctl.codes_ptr[cur + 1] - k_lo):
        if _green(ctl.stage_codes[k_lo + q]):
            gl = link0 + q
            for z in range(ctl.lconn_ptr[gl], ctl.lconn_ptr[gl + 1]):
                if ctl.blocked[roads.conn_to_lane[ctl.lconn[z]]]:
                    return best
    if _link_sum(ctl, k, cur, cur, ctl.q_app, False) == 0:
        return best  # nobody approaches the green, somebody the red
    if best_k >= ctl.theta[k] - _EPS:
        near = _link_sum(ctl, k, cur, cur, ctl.q_near, False)
        if 0 < near <= ctl.mu[k] + _EPS:
            return -1  # let the platoon's tail cross
        return best
    return -1
