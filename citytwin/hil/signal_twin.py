"""The simulator's side of a signal controller device.

The device sees the junction's detectors (``input`` every tick: presence this tick and counts)
and sends the heads it shows (``state``). Its states rule the junction only through the
junction's :class:`~citytwin.agents.conflict_monitor.ConflictMonitor`:

- **plan**: the junction runs its own program. The first state from an online device starts a
  *handover*: greens end in yellow, then all red for the clearance time, then the device rules.
- **external**: each state is checked and shown at once. A state the monitor refuses puts the
  junction into **flash** (every approach a stop sign, SUMO letter ``s``), logs an event and
  tells the device (``error`` with code ``conflict``). Flash holds at least ``flash_hold``
  seconds; the next state after that is shown after all red for the clearance time, if safe.
- **fallback**: when the device goes offline, falls silent for ``offline_after`` seconds, or
  misses its lockstep deadline, greens end in yellow, then all red, then the junction's own
  program starts again at phase 0.

The retained ``config`` describes the junction to the device: its links, detectors, the
links that must never be green together, timings and a NEMA dual-ring plan derived from the
junction's own program (one barrier group per green phase; its approaches split between the
two rings).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from citytwin.agents.conflict_monitor import ConflictMonitor, MonitorTiming, clearance
from citytwin.hil.protocol import Rejected, SignalState
from citytwin.hil.twin import Emit, Outbound, Twin
from citytwin.model.city import City
from citytwin.model.network import Network

FLASH = "s"


class SignalTwin(Twin):
    """A signal controller device ruling (or ready to rule) one signal controller of the city.

    Args:
        device_id: Device id.
        lockstep: The clock waits for this device every tick.
        emit: Event sink.
        city: The city.
        tls: Index of the signal controller in ``city.signals``.
        detectors: Indices (in ``city.detectors``) of the detectors the device sees.
        timing: What the monitor enforces.
        flash_hold: Least seconds of flash after a violation.
        offline_after: Seconds without a state after which the device is treated as gone.
        plan: ``max_green`` and ``passage`` for the derived controller plan.
    """

    kind = "signal"

    def __init__(self, device_id: str, lockstep: bool, emit: Emit, city: City, tls: int,
                 detectors: list[int], timing: MonitorTiming, flash_hold: float,
                 offline_after: float, plan: dict[str, float]) -> None:
        super().__init__(device_id, lockstep, emit)
        self.city = city
        self.tls = tls
        self.detectors = np.asarray(detectors, np.int64)
        self.timing = timing
        self.flash_hold = flash_hold
        self.offline_after = offline_after
        self.monitor = ConflictMonitor(city.network, tls, timing, city.signals.state_of(tls))
        self.n_links = self.monitor.n_links
        self.mode = "plan"
        self.pending: str | None = None
        self.violations = 0
        self.fallbacks = 0
        self._steps: list[tuple[str, float]] = []  # (state, until) shown by the simulator
        self._after = "plan"
        self._flash_until = -math.inf
        self._plan = plan

    # -- configuration ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        net, k = self.city.network, self.tls
        det_lanes = self.city.detectors.lane[self.detectors].tolist()
        return {
            "junction": net.tls_ids[k],
            "links": self.n_links,
            "detectors": [self.city.detectors.ids[d] for d in self.detectors.tolist()],
            "conflicts": self.monitor.conflict_lists(),
            "timing": {"min_green": self.timing.min_green, "max_green": self._plan["max_green"],
                       "passage": self._plan["passage"], "yellow": self.timing.yellow,
                       "red_clear": self.timing.red_clear},
            **dual_ring_plan(net, k, det_lanes),
        }

    # -- messages -----------------------------------------------------------------------------
    def on_state(self, msg: SignalState, t: float) -> None:
        heads = msg.heads
        if len(heads) != self.n_links:
            raise Rejected("out_of_range", f"junction {self.monitor.tls_id!r} has "
                           f"{self.n_links} links, got {len(heads)} heads")
        bad = sorted(set(heads) - set("ryGgoO"))
        if bad:
            raise Rejected("out_of_range", f"unknown head letter(s) {''.join(bad)!r}")
        self.last_state_t = t
        if self.mode == "external":
            if msg.tick is not None:
                # Judge the device by its own clock: states that queued up behind a stall of
                # the simulator arrive together, but the device decided them ticks apart.
                t = max(msg.tick * self.city.config.dt, self.monitor.last_commit)
            self._apply(heads, t)
            return
        self.pending = heads
        if self.mode == "plan":
            self.emit("handover", "the device takes the junction after clearance")
            self._transition(t, clearance(self.city.signals.state_of(self.tls)), "external")

    def before_step(self, t: float) -> None:
        if self._steps:
            while self._steps and t >= self._steps[0][1] - 1e-9:
                self._steps.pop(0)
                if self._steps:
                    self._show(self._steps[0][0], t)
            if self._steps:
                return
            if self._after == "plan":
                self.city.signals.release(self.tls)
                self.mode, self.pending = "plan", None
                self.emit("plan", "the junction runs its own program")
            else:
                self.mode = "external"
                if self.pending is not None:
                    self._apply(self.pending, t, handover=True)
            return
        if self.mode == "flash" and t >= self._flash_until and self.pending is not None:
            self._transition(t, FLASH * self.n_links, "external")
        elif self.mode == "external" and t - self.last_state_t > self.offline_after + 1e-9:
            self.emit("silent", f"no state for {self.offline_after:g} s")
            self.fallback(t, "the device fell silent")

    def fallback(self, t: float, why: str) -> None:
        if self.mode == "plan" or (self._steps and self._after == "plan"):
            return
        self.fallbacks += 1
        self.emit("fallback", f"{why}: the junction returns to its own program")
        self._transition(t, clearance(self.monitor.state), "plan")

    def outputs(self, city: City, tick: int, t: float) -> list[Outbound]:
        if not self.online:
            return []
        det = city.detectors.arrays
        return [("input", {"tick": tick, "t": t,
                           "calls": det.present[self.detectors].astype(int).tolist(),
                           "counts": det.counts[self.detectors].tolist()}, False)]

    # -- internals ----------------------------------------------------------------------------
    def _apply(self, heads: str, t: float, handover: bool = False) -> None:
        self.pending = None
        why = self.monitor.check(heads, t)
        if why is None:
            # at a handover the device's greens have been running during the clearance
            self._show(heads, t, greens_served=handover)
            return
        self.violations += 1
        self.mode = "flash"
        self._flash_until = t + self.flash_hold
        self._steps = []
        self._show(FLASH * self.n_links, t)
        self.emit("conflict", f"{why}; all-red flash for at least {self.flash_hold:g} s")
        raise Rejected("conflict", why)

    def _transition(self, t: float, first: str, after: str) -> None:
        """Show ``first`` (a clearance: yellow where anything was green) then all red, then
        hand the junction to ``after``."""
        steps = []
        until = t
        if any(ch != "r" for ch in first):
            if first == FLASH * self.n_links:
                first = "r" * self.n_links  # out of flash: straight to all red
            else:
                until += self.timing.yellow
                steps.append((first, until))
        until += self.timing.red_clear
        steps.append(("r" * self.n_links, until))
        self._steps, self._after = steps, after
        self.mode = "transition"
        self._show(steps[0][0], t)

    def _show(self, state: str, t: float, greens_served: bool = False) -> None:
        self.city.signals.hold(self.tls, state)
        self.monitor.commit(state, t, greens_served=greens_served)


def dual_ring_plan(net: Network, tls: int, det_lanes: list[int]) -> dict[str, Any]:
    """A NEMA-style dual-ring plan for signal controller ``tls`` from its own program.

    Each distinct green phase of the program becomes a barrier group; its green links are
    split by approach (incoming edge, in link order) alternately between ring 1 and ring 2.
    Phases are numbered from 1 in that order; each lists its green links with their letters and
    the detectors (indices into ``det_lanes``) on the lanes that feed them. The first group's
    phases have minimum recall, so the controller comes back to them.
    """
    program = net.programs[tls]
    conns = np.flatnonzero(net.conn_tls == tls)
    lane_of_link: dict[int, int] = {}
    for c in conns.tolist():
        lane_of_link.setdefault(int(net.conn_link[c]), int(net.conn_from_lane[c]))
    det_of_lane: dict[int, list[int]] = {}
    for i, lane in enumerate(det_lanes):
        det_of_lane.setdefault(lane, []).append(i)
    barriers: list[dict[str, Any]] = []
    phases: dict[str, Any] = {}
    seen: set[frozenset[tuple[int, str]]] = set()
    for ph in program.phases:
        if any(ch in "yY" for ch in ph.state):
            continue
        green = frozenset((i, ch) for i, ch in enumerate(ph.state)
                          if ch in "Gg" and i in lane_of_link)
        if not green or green in seen:
            continue
        seen.add(green)
        edges: list[int] = []
        for i, _ in sorted(green):
            e = int(net.lane_edge[lane_of_link[i]])
            if e not in edges:
                edges.append(e)
        rings: list[list[int]] = [[], []]
        for r in range(2):
            ring_edges = set(edges[r::2])
            links = {i: ch for i, ch in sorted(green)
                     if int(net.lane_edge[lane_of_link[i]]) in ring_edges}
            if not links:
                continue
            pid = len(phases) + 1
            dets = sorted({d for i in links for d in det_of_lane.get(lane_of_link[i], [])})
            phases[str(pid)] = {"green": {str(i): ch for i, ch in links.items()},
                                "detectors": dets, "recall": "min" if not barriers else "none"}
            rings[r].append(pid)
        barriers.append({"rings": rings})
    return {"barriers": barriers, "phases": phases}
