"""Slow, obviously correct references for the kernels (compared in tests, never shipped)."""

from __future__ import annotations

import math

import numpy as np


def sort_by_lane(order, alive, lane, pos, n_lanes):
    """Running slots ordered by (lane, position), ties by previous order; lane CSR."""
    slots = [i for i in order if alive[i]]
    rank = {s: k for k, s in enumerate(slots)}
    slots.sort(key=lambda i: (lane[i], pos[i], rank[i]))
    start = np.zeros(n_lanes + 1, dtype=np.int64)
    for i in slots:
        start[lane[i] + 1] += 1
    return np.array(slots, dtype=np.int64), np.cumsum(start)


def idm(v, v0, gap, dv, a, b, s0, T, delta):
    """Treiber's IDM acceleration as printed in Treiber & Kesting, eq. 11.3."""
    s_star = s0 + max(0.0, v * T + v * dv / (2 * math.sqrt(a * b)))
    return a * (1 - (v / v0) ** delta - (s_star / max(gap, 0.01)) ** 2)


def find_conn(net, lane, next_edge, next2_edge):
    """Connection of ``lane`` into ``next_edge``, preferring one that continues to
    ``next2_edge``."""
    cands = [c for c in range(net.n_connections)
             if net.conn_from_lane[c] == lane and net.conn_to_edge[c] == next_edge]
    if not cands:
        return -1
    if next2_edge >= 0:
        for c in cands:
            to = net.conn_to_lane[c]
            if any(net.conn_from_lane[q] == to and net.conn_to_edge[q] == next2_edge
                   for q in range(net.n_connections)):
                return c
    return cands[0]


def signal_states(program, t_end, dt=1.0):
    """The phase index of a fixed-time program at every tick 0, dt, ... < t_end."""
    out = []
    durations = [p.duration for p in program.phases]
    into = (-program.offset) % sum(durations)
    for k in range(round(t_end / dt)):
        pos = (into + k * dt) % sum(durations)
        acc = 0.0
        for q, d in enumerate(durations):
            if pos < acc + d - 1e-9:
                out.append(q)
                break
            acc += d
    return out
