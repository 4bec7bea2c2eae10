"""Traffic signals: a :class:`SignalController` Mesa agent per signalised junction, and the
:class:`SignalFleet` that steps all their programs in one kernel call per tick.

Programs follow SUMO ``<tlLogic>``: phases of link-state strings. Static programs are
fixed-time; actuated ones extend their green phases while their detectors see traffic, between
the phases' min and max durations (gap-out). Offsets shift where a program starts.

A junction can instead run a pluggable strategy (``agent.controller``, see
:mod:`citytwin.agents.controllers`): its stage machine writes what it shows into the
junction's outside-controlled row, which a device over the HIL bridge can also take.
"""

from __future__ import annotations

from collections.abc import Sequence

import mesa
import numpy as np

from citytwin.agents.controllers import ControlFleet, Controller, Timing
from citytwin.agents.kernels.signals import ACTUATED, HOLD, STATIC, signals_step
from citytwin.agents.kernels.tick import SignalArrays
from citytwin.agents.roads import state_codes
from citytwin.model.network import Phase


class SignalController(mesa.Agent):
    """The controller of one traffic light; its state is row ``index`` of the fleet."""

    def __init__(self, model: mesa.Model, fleet: SignalFleet, index: int) -> None:
        super().__init__(model)
        self._fleet = fleet
        self.index = index
        self.tls_id: str = fleet.tls_ids[index]

    @property
    def phase(self) -> int:
        """Index of the current phase of its own program; -1 while held from outside."""
        return -1 if self._fleet.external[self.index] else int(self._fleet.cur[self.index])

    @property
    def state(self) -> str:
        """The current SUMO state string (one letter per link)."""
        return self._fleet.state_of(self.index)

    @property
    def kind(self) -> str:
        """``static``, ``actuated`` or ``hold`` (the phase is set from outside: a device or
        a strategy's stage machine)."""
        return {STATIC: "static", ACTUATED: "actuated", HOLD: "hold"}[
            int(self._fleet.kind[self.index])]

    @property
    def controller(self) -> Controller | None:
        """The strategy this junction runs (None: its network program)."""
        control = self._fleet.control
        return None if control is None else control.controllers[self.index]

    @controller.setter
    def controller(self, controller: Controller | None) -> None:
        self._fleet.set_controller(self.index, controller)

    @property
    def time_in_phase(self) -> float:
        """Seconds since the current phase began."""
        return float(self._fleet.elapsed[self.index])


class SignalFleet:
    """Every signal program of a city as flat arrays."""

    def __init__(self, programs: Sequence, detectors_of_phase: Sequence[Sequence[Sequence[int]]],
                 n_conns: int, dt: float = 1.0) -> None:
        """Args:
            programs: :class:`citytwin.model.network.SignalProgram` objects, by tls index.
            detectors_of_phase: per program, per phase, the detector indices that can extend it.
            n_conns: number of connections in the network.
            dt: the tick, s.
        """
        self.tls_ids = [p.tls_id for p in programs]
        self.states = [[ph.state for ph in p.phases] for p in programs]
        n_ph = [len(p.phases) for p in programs]
        self.phase_ptr = np.zeros(len(programs) + 1, np.int32)
        self.phase_ptr[1:] = np.cumsum(n_ph)
        # After every program's phases, one row per program that an outside controller writes
        # (see hold()): the kernel reads it like any phase while the controller is HOLD.
        n_links = [len(p.phases[0].state) for p in programs]
        self.ext_row = int(self.phase_ptr[-1]) + np.arange(len(programs), dtype=np.int32)
        phases = [ph for p in programs for ph in p.phases]
        phases += [Phase(1.0, "r" * n) for n in n_links]
        self.ph_dur = np.array([ph.duration for ph in phases], np.float64)
        self.ph_min = np.array([ph.bounds[0] for ph in phases], np.float64)
        self.ph_max = np.array([ph.bounds[1] for ph in phases], np.float64)
        self.ph_green = np.array([ph.is_green for ph in phases], np.bool_)
        widths = [len(ph.state) for ph in phases]
        self.ph_state_ptr = np.zeros(len(phases) + 1, np.int64)
        self.ph_state_ptr[1:] = np.cumsum(widths)
        self.state_codes = (np.concatenate([state_codes(ph.state) for ph in phases])
                            if phases else np.empty(0, np.uint8))
        dets = [list(d) for per_prog in detectors_of_phase for d in per_prog]
        dets += [[] for _ in programs]
        self.ph_det_ptr = np.zeros(len(phases) + 1, np.int32)
        self.ph_det_ptr[1:] = np.cumsum([len(d) for d in dets]) if dets else []
        self.ph_det = np.array([x for d in dets for x in d], np.int32)
        self._actuated = [p.kind == "actuated" for p in programs]
        self.kind = np.array([ACTUATED if a else STATIC for a in self._actuated], np.int8)
        self.plan_kind = self.kind.copy()
        self.external = np.zeros(len(programs), np.bool_)
        self._ext_states = ["r" * n for n in n_links]
        self.control: ControlFleet | None = None
        self.timing = Timing()
        self.max_hold = 120.0
        self.cur = np.zeros(len(programs), np.int32)
        self.elapsed = np.zeros(len(programs), np.float64)
        self.switched = np.zeros(len(programs), np.uint8)
        # SUMO: at time t a program is at (t - offset), and the step that ends at t moves the
        # vehicles under it; so the tick from 0 to dt moves them under the state at dt.
        for k, p in enumerate(programs):
            into = (dt - p.offset) % p.cycle
            for q, ph in enumerate(p.phases):
                if into < ph.duration:
                    self.cur[k], self.elapsed[k] = q, into
                    break
                into -= ph.duration

    def __len__(self) -> int:
        return len(self.tls_ids)

    def n_links(self, k: int) -> int:
        """Number of links (letters of a state string) of controller ``k``."""
        return len(self._ext_states[k])

    def state_of(self, k: int) -> str:
        """The state string controller ``k`` shows now."""
        if self.external[k]:
            return self._ext_states[k]
        if self.control is not None and self.control.is_staged(k):
            return self.control.shown(k)
        return self.states[k][int(self.cur[k])]

    def attach_control(self, control: ControlFleet) -> None:
        """Let ``control``'s stage machines run the junctions that get a controller."""
        self.control = control

    def set_controller(self, k: int, controller: Controller | None) -> None:
        """Run ``controller`` at junction ``k`` from the next tick on (None: its program).

        Raises:
            ValueError: no control fleet is attached.
        """
        if self.control is None:
            raise ValueError("this signal fleet has no control fleet attached")
        self.control.set_controller(k, controller, self.timing, self.max_hold)
        if self.external[k]:
            return  # a device rules it; the new plan starts when it lets go
        if controller is None:
            self.kind[k] = self.plan_kind[k] = (ACTUATED if self._actuated[k] else STATIC)
            self.cur[k], self.elapsed[k] = 0, 0.0
        else:
            self.kind[k] = self.plan_kind[k] = HOLD
            self.cur[k] = self.ext_row[k] - self.phase_ptr[k]
            self._write_row(k, self.control.shown(k))

    def hold(self, k: int, state: str) -> None:
        """Show ``state`` at controller ``k`` from the next tick on, until :meth:`release`
        (an outside strategy or device rules the junction; check it first, e.g. with a
        :class:`~citytwin.agents.conflict_monitor.ConflictMonitor`).

        Raises:
            ValueError: ``state`` has the wrong length or a letter that is not a link state.
        """
        if len(state) != self.n_links(k):
            raise ValueError(f"signal {self.tls_ids[k]!r} has {self.n_links(k)} links, "
                             f"got a state of {len(state)}")
        self._write_row(k, state)
        self._ext_states[k] = state
        if not self.external[k]:
            self.external[k] = True
            self.kind[k] = HOLD
            self.cur[k] = self.ext_row[k] - self.phase_ptr[k]
            self.elapsed[k] = 0.0

    def _write_row(self, k: int, state: str) -> None:
        lo = int(self.ph_state_ptr[int(self.ext_row[k])])
        self.state_codes[lo:lo + len(state)] = state_codes(state)

    def state_row(self, k: int) -> int:
        """Offset of controller ``k``'s outside-controlled row in :attr:`state_codes`."""
        return int(self.ph_state_ptr[int(self.ext_row[k])])

    def release(self, k: int) -> None:
        """Give controller ``k`` back to its own program, which starts again at phase 0 (a
        strategy: at its first stage, the clearance being over)."""
        if self.external[k]:
            self.external[k] = False
            self.kind[k] = self.plan_kind[k]
            self.elapsed[k] = 0.0
            if self.control is not None and self.control.is_staged(k):
                self.control.restart(k)
                self._write_row(k, self.control.shown(k))
            else:
                self.cur[k] = 0

    def step(self, t: float, dt: float, max_gap: float, det_last_on: np.ndarray,
             conn_tls: np.ndarray, conn_link: np.ndarray, tls_conns: np.ndarray,
             conn_state: np.ndarray) -> None:
        """Advance every program by one tick and write the link states of the connections
        ``tls_conns`` under them (the city's tick kernel does this itself)."""
        signals_step(t, dt, max_gap, self.cur, self.elapsed, self.kind, self.phase_ptr,
                     self.ph_dur, self.ph_min, self.ph_max, self.ph_green, self.ph_state_ptr,
                     self.state_codes, self.ph_det_ptr, self.ph_det, det_last_on, conn_tls,
                     conn_link, tls_conns, conn_state, self.switched)

    @property
    def arrays(self) -> SignalArrays:
        """The arrays the tick kernel takes (views of this fleet's state)."""
        return SignalArrays(self.cur, self.elapsed, self.kind, self.phase_ptr, self.ph_dur,
                            self.ph_min, self.ph_max, self.ph_green, self.ph_state_ptr,
                            self.state_codes, self.ph_det_ptr, self.ph_det, self.switched,
                            self.external)
