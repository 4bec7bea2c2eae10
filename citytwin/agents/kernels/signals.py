"""Kernel: advance signal programs (fixed-time and actuated) and publish link states."""

from __future__ import annotations

from citytwin.agents.kernels._config import njit

STATIC, ACTUATED, HOLD = 0, 1, 2


@njit
def signals_step(t, dt, max_gap, cur, elapsed, kind, phase_ptr, ph_dur, ph_min, ph_max,
                 ph_green, ph_state_ptr, state_codes, ph_det_ptr, ph_det, det_last_on,
                 conn_tls, conn_link, tls_conns, conn_state, switched):
    """Advance every controller by one tick and write the state of every connection under one
    (``tls_conns``; the others keep their static state).

    A static phase ends after its duration. An actuated green phase ends at its max duration,
    or after its min duration once no vehicle has been over its detectors for ``max_gap``
    seconds (gap-out); its other phases end at their min duration (as in SUMO, a phase with
    min below max and no loops ends at min; a timed phase's min is its duration). ``HOLD``
    controllers keep their phase (an outside strategy sets it). ``switched[k]`` is 1 where
    controller ``k`` changed phase.
    """
    for k in range(cur.shape[0]):
        switched[k] = 0
        if kind[k] == HOLD:
            continue
        g = phase_ptr[k] + cur[k]
        adv = False
        if kind[k] == ACTUATED and not (ph_green[g] and ph_det_ptr[g + 1] > ph_det_ptr[g]):
            adv = elapsed[k] >= ph_min[g] - 1e-9
        elif kind[k] == ACTUATED:
            if elapsed[k] >= ph_max[g] - 1e-9:
                adv = True
            elif elapsed[k] >= ph_min[g] - 1e-9:
                last = -1e18
                for q in range(ph_det_ptr[g], ph_det_ptr[g + 1]):
                    last = max(last, det_last_on[ph_det[q]])
                adv = t - last > max_gap
        elif elapsed[k] >= ph_dur[g] - 1e-9:
            adv = True
        if adv:
            n_ph = phase_ptr[k + 1] - phase_ptr[k]
            cur[k] = (cur[k] + 1) % n_ph
            elapsed[k] = 0.0
            switched[k] = 1
        elapsed[k] += dt
    for c in tls_conns:
        k = conn_tls[c]
        g = phase_ptr[k] + cur[k]
        conn_state[c] = state_codes[ph_state_ptr[g] + conn_link[c]]
