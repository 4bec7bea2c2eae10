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
    """The phase index a fixed-time program moves vehicles under in each tick before
    ``t_end``: the phase at the tick's end (dt, 2 dt, ...), as in SUMO's steps."""
    out = []
    durations = [p.duration for p in program.phases]
    into = (-program.offset) % sum(durations)
    for k in range(round(t_end / dt)):
        pos = (into + (k + 1) * dt) % sum(durations)
        acc = 0.0
        for q, d in enumerate(durations):
            if pos < acc + d - 1e-9:
                out.append(q)
                break
            acc += d
    return out


class StageMachine:
    """A signal controller's stages, transitions and strategies, written out plainly (the
    reference of ``kernels.control``). Stages are lists of letters ``G g r``."""

    def __init__(self, stages, base, pre, serves, link_conns, conn_to_lane, stage_dets, *,
                 strategy,
                 yellow, all_red, min_green, max_green=60.0, max_gap=3.0, theta=40.0, mu=3.0,
                 plan=None, max_hold=120.0, headway=0.0):
        self.stages, self.pre, self.serves = stages, pre, serves  # pre: link -> stage index
        self.link_conns, self.to_lane, self.dets = link_conns, conn_to_lane, stage_dets
        self.base = base  # per stage: the regular stage it derives from (itself if regular)
        self.n_reg = sum(1 for s, b in enumerate(base) if s == b)
        self.strategy, self.yellow, self.all_red = strategy, yellow, all_red
        self.min_green, self.max_green, self.max_gap = min_green, max_green, max_gap
        self.theta, self.mu, self.plan, self.max_hold = theta, mu, plan, max_hold
        self.headway, self.hold, self.q_app = headway, 0.0, None
        self.kappa = [0.0] * len(stages)
        self.mode, self.stage, self.nxt, self.t = "green", 0, 0, 0.0
        self.prev_ev, self.since = -1, 0.0

    @staticmethod
    def green(letter):
        return letter in "Gg"

    def sum_over(self, s, values, only_new_vs=None):
        total = 0
        for link, letter in enumerate(self.stages[s]):
            if not self.green(letter):
                continue
            if only_new_vs is not None and self.green(self.stages[only_new_vs][link]):
                continue
            total += sum(values[c] for c in self.link_conns[link])
        return total

    def step(self, t, dt, req_link, req_ev, q_app, q_near, n_start, blocked, last_on):
        """One tick; ``req_link``: the requested link or -1. Returns the letters shown."""
        self.q_app = q_app
        if req_ev >= 0 and req_ev != self.prev_ev:
            self.since = t
        self.prev_ev = req_ev
        if req_link >= 0 and t - self.since > self.max_hold + 1e-9:
            req_link = -1
        if self.mode == "green":
            target = None
            if req_link >= 0:
                if not self.serves[self.stage][req_link] and self.t >= self.min_green - 1e-9:
                    target = self.pre[req_link]
            else:
                target = self.decide(t, dt, q_app, q_near, n_start, blocked, last_on)
            if target is not None and target != self.stage:
                ends = any(self.green(a) and not self.green(b)
                           for a, b in zip(self.stages[self.stage], self.stages[target],
                                           strict=True))
                self.nxt = target
                if ends:
                    self.mode, self.t = "yellow", 0.0
                else:
                    self.enter(target)
        else:
            if req_link >= 0:
                ps = self.pre[req_link]
                same = all(not self.green(a) or self.green(b) == self.green(c) for a, b, c in
                           zip(self.stages[self.stage], self.stages[self.nxt], self.stages[ps],
                               strict=True))
                if ps != self.nxt and same:
                    self.nxt = ps
            if self.mode == "yellow" and self.t >= self.yellow - 1e-9:
                if self.all_red > 1e-9:
                    self.mode, self.t = "red", 0.0
                else:
                    self.enter(self.nxt)
            elif self.mode == "red" and self.t >= self.all_red - 1e-9:
                self.enter(self.revert(req_link))
        self.t += dt
        return self.shown()

    def revert(self, req_link):
        """At the end of an all-red: the requested link's pre-emption stage instead of the
        stage the transition led to, if that one does not serve it and nothing still green
        would have to end."""
        if req_link < 0 or self.serves[self.nxt][req_link]:
            return self.nxt
        ps = self.pre[req_link]
        kept = all(self.green(c) for a, b, c in
                   zip(self.stages[self.stage], self.stages[self.nxt], self.stages[ps],
                       strict=True) if self.green(a) and self.green(b))
        return ps if kept else self.nxt

    def enter(self, s):
        self.stage = self.nxt = s
        self.mode, self.t = "green", 0.0
        self.kappa[self.base[s]] = 0.0
        if self.strategy == "max-pressure":  # the queue waiting now may leave first
            queues = [self.q_app[c] for link, letter in enumerate(self.stages[s])
                      if self.green(letter) for c in self.link_conns[link]]
            self.hold = min(self.headway * max(queues, default=0), self.max_green)

    def shown(self):
        out = []
        for a, b in zip(self.stages[self.stage], self.stages[self.nxt], strict=True):
            if self.mode == "green" or (self.green(a) and self.green(b)):
                out.append(a)
            elif self.green(a) and self.mode == "yellow":
                out.append("y")
            else:
                out.append("r")
        return "".join(out)

    def next_with_call(self, q_app):
        b = self.base[self.stage]
        for j in range(1, self.n_reg + 1):
            x = (b + j) % self.n_reg
            if x != self.stage and self.sum_over(x, q_app, self.stage) > 0:
                return x
        return None

    def pressure(self, s, q_app, n_start, blocked):
        """Approaching minus exit-start vehicles over the stage's green links; a link whose
        exit is blocked adds nothing."""
        p = 0.0
        for link, letter in enumerate(self.stages[s]):
            if self.green(letter):
                for c in self.link_conns[link]:
                    if not blocked[self.to_lane[c]]:
                        p += q_app[c] - n_start[self.to_lane[c]]
        return p

    def decide(self, t, dt, q_app, q_near, n_start, blocked, last_on):
        g = self.t
        if self.strategy == "fixed":
            cycle, offset, greens = self.plan
            tau = (t - offset) % cycle
            start, target = 0.0, None
            inter = self.yellow + self.all_red
            last = 0
            for x, gr in enumerate(greens):
                if start <= tau + 1e-9:
                    last = x
                    if tau < start + gr - 1e-9:
                        target = x
                        break
                start += gr + inter
            if target is None:
                target = (last + 1) % len(greens)
            return target if target != self.stage and g >= self.min_green - 1e-9 else None
        if self.strategy == "sotl":
            for x in range(self.n_reg):
                if x == self.base[self.stage]:
                    self.kappa[x] = 0.0
                else:
                    self.kappa[x] += dt * self.sum_over(x, q_app, self.stage)
        if g < self.min_green - 1e-9:
            return None
        if self.strategy == "actuated":
            gapped = all(t - last_on[d] > self.max_gap + 1e-9
                         for d in self.dets[self.base[self.stage]])
            if not gapped and g < self.max_green - 1e-9:
                return None
            return self.next_with_call(q_app)
        if self.strategy == "max-pressure":
            if g >= self.max_green - 1e-9:
                return self.next_with_call(q_app)
            if g < self.hold - 1e-9:
                return None
            best, best_p = None, self.pressure(self.stage, q_app, n_start, blocked)
            for x in range(self.n_reg):
                if x != self.stage and self.pressure(x, q_app, n_start, blocked) > best_p + 1e-9:
                    best, best_p = x, self.pressure(x, q_app, n_start, blocked)
            return best
        others = [x for x in range(self.n_reg) if x != self.base[self.stage]]
        best = max(others, key=lambda x: (self.kappa[x], -x), default=None)
        if best is None or self.kappa[best] <= 0:
            return None
        for link, letter in enumerate(self.stages[self.stage]):
            if self.green(letter) and any(blocked[self.to_lane[c]]
                                          for c in self.link_conns[link]):
                return best
        if self.sum_over(self.stage, q_app) == 0:
            return best
        if self.kappa[best] >= self.theta - 1e-9:
            near = self.sum_over(self.stage, q_near)
            return None if 0 < near <= self.mu + 1e-9 else best
        return None
