"""Pluggable signal strategies for :class:`~citytwin.agents.signals.SignalController` agents,
and the :class:`ControlFleet` that holds every staged controller's state as arrays.

A controller object says *which* strategy a junction runs and with what parameters
(:class:`FixedTime` with a plan, :class:`Actuated`, :class:`MaxPressure`, :class:`Sotl`);
assigning one to ``agent.controller`` writes those parameters into the fleet's arrays. The
per-tick work is done for all junctions at once by the kernel
:func:`citytwin.agents.kernels.control.control_step`. A junction without a controller object
runs its network program (:func:`~citytwin.agents.kernels.signals.signals_step`), and a device
over the HIL bridge can take any junction (``SignalFleet.hold``).

Stages are the distinct green phases of the junction's program, in program order. For each
link there is also a pre-emption stage: the first stage that gives the link priority (``G``;
else one that gives it ``g``), with the link protected and every link crossing it red.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from citytwin.agents.kernels import control as kc
from citytwin.agents.roads import MAJOR, MINOR, RED, YELLOW, state_code
from citytwin.model.network import Network

_LETTER = {RED: "r", YELLOW: "y", MINOR: "g", MAJOR: "G"}


@dataclass(frozen=True)
class Timing:
    """Safety timings every staged controller honours, in seconds."""

    yellow: float = 3.0
    all_red: float = 2.0
    min_green: float = 5.0


@dataclass(frozen=True)
class Plan:
    """A fixed-time plan: cycle, offset, and one green time per stage (in stage order; each
    green is followed by the intergreen ``yellow + all_red``)."""

    cycle: float
    offset: float
    greens: tuple[float, ...]


class Controller:
    """Base of the strategies: a name, a kernel strategy code and its parameters."""

    name: ClassVar[str] = ""
    strategy: ClassVar[int] = -1

    def install(self, fleet: ControlFleet, k: int) -> None:
        """Write this controller's parameters into row ``k`` of ``fleet``."""
        raise NotImplementedError


@dataclass(frozen=True)
class FixedTime(Controller):
    """Fixed-time control by a :class:`Plan` (Webster's, or a green wave's)."""

    plan: Plan
    name: ClassVar[str] = "fixed"
    strategy: ClassVar[int] = kc.FIXED

    def install(self, fleet: ControlFleet, k: int) -> None:
        a = fleet.arrays
        s0, n = int(a.stage_ptr[k]), int(a.n_regular[k])
        if len(self.plan.greens) != n:
            raise ValueError(f"signal {fleet.tls_ids[k]!r}: a plan of {len(self.plan.greens)} "
                             f"greens for {n} stages")
        inter = float(a.yellow[k] + a.all_red[k])
        start = 0.0
        for x, g in enumerate(self.plan.greens):
            a.plan_start[s0 + x], a.plan_green[s0 + x] = start, g
            start += g + inter
        a.cycle[k], a.offset[k] = self.plan.cycle, self.plan.offset
        # Start where the plan is at t = 0.
        tau = (-self.plan.offset) % self.plan.cycle
        for x, g in enumerate(self.plan.greens):
            begin = float(a.plan_start[s0 + x])
            if tau < begin + g:
                a.mode[k], a.stage[k], a.nxt[k], a.t_mode[k] = kc.GREEN, s0 + x, s0 + x, \
                    max(tau - begin, 0.0)
                return
            if tau < begin + g + inter:
                into = tau - begin - g
                a.stage[k], a.nxt[k] = s0 + x, s0 + (x + 1) % n
                if into < a.yellow[k]:
                    a.mode[k], a.t_mode[k] = kc.CLEARING_YELLOW, into
                else:
                    a.mode[k], a.t_mode[k] = kc.CLEARING_RED, into - a.yellow[k]
                return


@dataclass(frozen=True)
class Actuated(Controller):
    """Gap-out actuated control: greens between ``min_green`` and ``max_green``; a green
    ends once its detectors saw no vehicle for ``max_gap`` s; rests in green without calls."""

    min_green: float = 10.0
    max_green: float = 60.0
    max_gap: float = 3.0
    name: ClassVar[str] = "actuated"
    strategy: ClassVar[int] = kc.ACTUATED

    def install(self, fleet: ControlFleet, k: int) -> None:
        a = fleet.arrays
        a.min_green[k] = max(self.min_green, a.min_green[k])
        a.max_green[k], a.max_gap[k] = self.max_green, self.max_gap
        _start_green(fleet, k)


@dataclass(frozen=True)
class MaxPressure(Controller):
    """Max-pressure control (Varaiya): after ``min_green``, and once the queue that waited at
    the start of the green had ``headway`` seconds per vehicle to leave, the stage of highest
    pressure; ``max_green`` bounds a green when others are waiting."""

    min_green: float = 6.0
    max_green: float = 60.0
    headway: float = 3.0
    name: ClassVar[str] = "max-pressure"
    strategy: ClassVar[int] = kc.MAX_PRESSURE

    def install(self, fleet: ControlFleet, k: int) -> None:
        a = fleet.arrays
        a.min_green[k] = max(self.min_green, a.min_green[k])
        a.max_green[k], a.headway[k], a.hold[k] = self.max_green, self.headway, 0.0
        _start_green(fleet, k)


@dataclass(frozen=True)
class Sotl(Controller):
    """Self-organising traffic lights (SOTL-platoon, Cools et al. 2008)."""

    min_green: float = 5.0
    theta: float = 100.0
    mu: float = 3.0
    name: ClassVar[str] = "sotl"
    strategy: ClassVar[int] = kc.SOTL

    def install(self, fleet: ControlFleet, k: int) -> None:
        a = fleet.arrays
        a.min_green[k] = max(self.min_green, a.min_green[k])
        a.theta[k], a.mu[k] = self.theta, self.mu
        _start_green(fleet, k)


def _start_green(fleet: ControlFleet, k: int) -> None:
    a = fleet.arrays
    s0 = int(a.stage_ptr[k])
    a.mode[k], a.stage[k], a.nxt[k], a.t_mode[k] = kc.GREEN, s0, s0, 0.0


class ControlFleet:
    """Stages, links and state of every signal controller, for the control kernel.

    Args:
        network: The road network.
        det_of_lane: Loop detector index per incoming lane (actuated control reads them).
        state_rows: Per controller, the offset of its outside-controlled row in the signal
            fleet's state codes (where the kernel writes what it shows).
        detection_range: Length of the lane-area detection before stop lines and after exit
            lane starts, m.
        near: SOTL's platoon distance before the stop line, m.
        block: A halted vehicle this close to an exit lane's start blocks it, m.
    """

    def __init__(self, network: Network, det_of_lane: dict[int, int],
                 state_rows: Sequence[int], detection_range: float = 100.0,
                 near: float = 25.0, block: float = 10.0) -> None:
        net = network
        self.network = net
        self.tls_ids = list(net.tls_ids)
        n_tls = len(net.programs)
        stages: list[list[np.ndarray]] = []
        n_regular, n_links = [], []
        links_conns: list[list[int]] = []
        base_of: list[int] = []
        pre_stage: list[int] = []
        serves: list[np.ndarray] = []
        dets: list[list[int]] = []
        g0 = 0
        for k, prog in enumerate(net.programs):
            nl = prog.n_links
            conns = np.flatnonzero(net.conn_tls == k)
            per_link: list[list[int]] = [[] for _ in range(nl)]
            for c in conns.tolist():
                per_link[int(net.conn_link[c])].append(c)
            links_conns.extend(per_link)
            foe = _link_foes(net, per_link)
            regular: list[np.ndarray] = []
            for ph in prog.phases:
                if ph.is_green:
                    codes = np.array([state_code(ch) for ch in ph.state], np.uint8)
                    codes[(codes != MAJOR) & (codes != MINOR)] = RED
                    if not any(np.array_equal(codes, r) for r in regular):
                        regular.append(codes)
            if not regular:  # a program without greens (always off): one all-red stage
                regular.append(np.zeros(nl, np.uint8))
            mine = list(regular)
            for link in range(nl):
                best = next((x for x, r in enumerate(regular) if r[link] == MAJOR),
                            next((x for x, r in enumerate(regular) if r[link] == MINOR), -1))
                if best < 0:
                    pre_stage.append(-1)
                    mine.append(regular[0].copy())
                    base_of_pre = 0
                else:
                    p = regular[best].copy()
                    p[foe[link]] = RED
                    p[link] = MAJOR
                    pre_stage.append(g0 + len(mine))
                    mine.append(p)
                    base_of_pre = best
                base_of.append(-1 - base_of_pre)  # resolved below
            for s in mine:
                green = (s == MAJOR) | (s == MINOR)
                serves.append(((s == MAJOR) & ~(foe & green[None, :]).any(axis=1)
                               ).astype(np.uint8))
            for _x, r in enumerate(regular):
                lanes = {int(net.conn_from_lane[c]) for link in np.flatnonzero(r >= MINOR)
                         for c in per_link[link]}
                dets.append(sorted(det_of_lane[la] for la in lanes if la in det_of_lane))
            dets.extend([] for _ in range(nl))
            stages.append(mine)
            n_regular.append(len(regular))
            n_links.append(nl)
            g0 += len(mine)
        stage_ptr = np.zeros(n_tls + 1, np.int32)
        stage_ptr[1:] = np.cumsum([len(s) for s in stages])
        base: list[int] = []
        for k in range(n_tls):
            s0 = int(stage_ptr[k])
            base.extend(range(s0, s0 + n_regular[k]))
            base.extend(s0 + (-1 - b) for b in base_of[sum(n_links[:k]):sum(n_links[:k + 1])])
        flat = [s for per in stages for s in per]
        codes_ptr = np.zeros(len(flat) + 1, np.int64)
        codes_ptr[1:] = np.cumsum([s.size for s in flat])
        link_ptr = np.zeros(n_tls + 1, np.int32)
        link_ptr[1:] = np.cumsum(n_links)
        lconn_ptr = np.zeros(len(links_conns) + 1, np.int32)
        lconn_ptr[1:] = np.cumsum([len(x) for x in links_conns])
        det_ptr = np.zeros(len(flat) + 1, np.int32)
        det_ptr[1:] = np.cumsum([len(d) for d in dets])
        f8, i4 = np.float64, np.int32
        self._ranges = (detection_range, near, block)
        self.arrays = kc.ControlArrays(
            mode=np.full(n_tls, kc.NOT_STAGED, np.int8), strategy=np.zeros(n_tls, np.int8),
            stage=stage_ptr[:-1].copy(), nxt=stage_ptr[:-1].copy(), t_mode=np.zeros(n_tls),
            stage_ptr=stage_ptr, n_regular=np.array(n_regular, i4), link_ptr=link_ptr,
            ext_lo=np.asarray(state_rows, np.int64).reshape(n_tls),
            yellow=np.full(n_tls, 3.0), all_red=np.full(n_tls, 2.0),
            min_green=np.full(n_tls, 5.0), max_green=np.full(n_tls, 60.0),
            max_gap=np.full(n_tls, 3.0), headway=np.zeros(n_tls), hold=np.zeros(n_tls),
            theta=np.zeros(n_tls), mu=np.zeros(n_tls),
            cycle=np.ones(n_tls), offset=np.zeros(n_tls), max_hold=np.full(n_tls, 120.0),
            switches=np.zeros(n_tls, np.int64), preemptions=np.zeros(n_tls, np.int64),
            pre_link=np.full(n_tls, -1, i4), pre_eta=np.full(n_tls, np.inf),
            pre_ev=np.full(n_tls, -1, i4), pre_prev_ev=np.full(n_tls, -1, i4),
            pre_since=np.zeros(n_tls),
            codes_ptr=codes_ptr,
            stage_codes=np.concatenate(flat) if flat else np.zeros(0, np.uint8),
            serves=np.concatenate(serves) if serves else np.zeros(0, np.uint8),
            stage_base=np.array(base, i4), plan_start=np.zeros(len(flat), f8),
            plan_green=np.zeros(len(flat), f8), kappa=np.zeros(len(flat), f8),
            det_ptr=det_ptr, det=np.array([d for x in dets for d in x], i4),
            lconn_ptr=lconn_ptr, lconn=np.array([c for x in links_conns for c in x], i4),
            pre_stage=np.array(pre_stage, i4),
            in_range=np.zeros(net.n_lanes, f8), out_range=np.zeros(net.n_lanes, f8),
            q_app=np.zeros(net.n_connections, i4), q_near=np.zeros(net.n_connections, i4),
            n_start=np.zeros(net.n_lanes, i4), blocked=np.zeros(net.n_lanes, np.uint8),
            watch_conns=np.zeros(0, i4), watch_lanes=np.zeros(0, i4),
            params=np.array([0.0, near, block, 0.0]))
        self.controllers: list[Controller | None] = [None] * n_tls

    def __len__(self) -> int:
        return len(self.tls_ids)

    def n_regular(self, k: int) -> int:
        """Number of regular stages of controller ``k``."""
        return int(self.arrays.n_regular[k])

    def stage_states(self, k: int) -> list[str]:
        """The state strings of controller ``k``'s regular stages."""
        a = self.arrays
        s0 = int(a.stage_ptr[k])
        return [self._letters(s) for s in range(s0, s0 + self.n_regular(k))]

    def _letters(self, s: int) -> str:
        a = self.arrays
        lo, hi = int(a.codes_ptr[s]), int(a.codes_ptr[s + 1])
        return "".join(_LETTER[int(c)] for c in a.stage_codes[lo:hi])

    def set_controller(self, k: int, controller: Controller | None, timing: Timing,
                       max_hold: float = 120.0) -> None:
        """Run ``controller`` at junction ``k`` (None: its network program)."""
        a = self.arrays
        self.controllers[k] = controller
        if controller is None:
            a.mode[k] = kc.NOT_STAGED
        else:
            a.strategy[k] = controller.strategy
            a.yellow[k], a.all_red[k] = timing.yellow, timing.all_red
            a.min_green[k], a.max_hold[k] = timing.min_green, max_hold
            s0, s1 = int(a.stage_ptr[k]), int(a.stage_ptr[k + 1])
            a.kappa[s0:s1] = 0.0
            controller.install(self, k)
        self._watch()

    def is_staged(self, k: int) -> bool:
        return bool(self.arrays.mode[k] != kc.NOT_STAGED)

    def restart(self, k: int) -> None:
        """After an outside controller let go (it cleared the junction first, as the HIL
        bridge does): the first stage's green starts now."""
        _start_green(self, k)

    def shown(self, k: int) -> str:
        """The letters controller ``k``'s stage machine shows now."""
        a = self.arrays
        cur, nxt, m = int(a.stage[k]), int(a.nxt[k]), int(a.mode[k])
        lo_a, lo_b = int(a.codes_ptr[cur]), int(a.codes_ptr[nxt])
        out = []
        for q in range(int(a.link_ptr[k + 1] - a.link_ptr[k])):
            ca, cb = int(a.stage_codes[lo_a + q]), int(a.stage_codes[lo_b + q])
            if m == kc.GREEN or (ca >= MINOR and cb >= MINOR):
                out.append(_LETTER[ca])
            elif ca >= MINOR and m == kc.CLEARING_YELLOW:
                out.append("y")
            else:
                out.append("r")
        return "".join(out)

    def _watch(self) -> None:
        """Lane-area detection on the lanes of staged controllers only: ``detection_range``
        before stop lines and after exit-lane starts, or the whole lane for max-pressure
        (Varaiya's pressure is over the queues of whole links)."""
        a, net = self.arrays, self.network
        rng, _, _ = self._ranges
        staged = np.flatnonzero(a.mode != kc.NOT_STAGED)
        conns = np.flatnonzero(np.isin(net.conn_tls, staged)).astype(np.int32)
        a.in_range[:] = 0.0
        a.out_range[:] = 0.0
        whole = a.strategy[net.conn_tls[conns]] == kc.MAX_PRESSURE
        for lanes, out in ((net.conn_from_lane[conns], a.in_range),
                           (net.conn_to_lane[conns], a.out_range)):
            out[lanes] = np.where(whole, net.lane_length[lanes] + 1.0, rng)
        lanes = np.unique(net.conn_to_lane[conns]).astype(np.int32)
        self.arrays = a._replace(watch_conns=conns, watch_lanes=lanes)
        self.arrays.params[0] = float(staged.size)


def _link_foes(net: Network, per_link: list[list[int]]) -> np.ndarray:
    """Per pair of links of one controller: do any of their connections conflict?"""
    n = len(per_link)
    link_of = {c: link for link, cs in enumerate(per_link) for c in cs}
    foe = np.zeros((n, n), bool)
    for link, cs in enumerate(per_link):
        for c in cs:
            for q in range(int(net.conn_foe_ptr[c]), int(net.conn_foe_ptr[c + 1])):
                f = link_of.get(int(net.conn_foe[q]))
                if f is not None and f != link:
                    foe[link, f] = foe[f, link] = True
    return foe
