"""An actuated NEMA-style dual-ring signal controller as pure logic: calls in, head letters out.

A :class:`NemaController` runs a :class:`~citytwin.hil.emulated.nema_config.NemaConfig` (the
simulator's retained signal ``config``). It is stepped once per ``input`` with the sim time
and the detector presence of that tick and returns one SUMO letter per link (``G``/``g``
green, ``y`` yellow, ``r`` red). No I/O, no wall clock, no randomness: the same inputs give the
same heads.

How it times, per ring (each ring runs its own phases; the rings of one barrier group time
concurrently):

- **Calls.** A detector actuation on a phase that is not green places a call that stays until
  the phase is served (locking memory); on a green phase it extends the green (and places a
  call if the phase ends in that same step). ``min`` and ``max`` recall keep a call on a phase
  whenever it is not green. A phase without a call is skipped.
- **Green.** At least ``min_green``. After that the phase ends, if some other phase is waiting
  for it to end (a *conflicting call*), by **gap-out** (no actuation for ``passage`` s; each
  actuation restarts that timer) or **max-out**. The max timer starts when a conflicting call
  first exists during the green (at green start if one is already waiting), as NEMA TS 2
  does, and ends the green ``max_green`` s later. ``max`` recall disables gap-out, so the phase
  holds to max-out. With no conflicting call, a phase rests in green.
- **Change.** ``yellow`` then ``red_clear`` (red clearance), then the next called phase of the
  ring in the same group.
- **Barrier.** A ring with no further called phase in the group whose phase has ended rests
  in that phase's green; once it has ended it stays ended (no re-extension). The barrier is
  crossed only when every ring is ready; then all rings time yellow and red clearance together
  and the controller enters the next barrier group that has a call (cyclically). A ring with no
  called phase in a group stays dark (all red) and can start a phase if one is called later.
- **Start.** The first step enters the first group with a call; with no call anywhere, it
  rests in the first phase of each ring of group 0.
- **Letters.** A link green in an active phase shows its ``G``/``g``, ``y`` during that
  phase's yellow, else ``r``; a link active in several rings shows the strongest
  (``G`` > ``g`` > ``y`` > ``r``).
- **Conflict monitor.** Before every output, if two links that conflict (per ``conflicts``)
  would both be non-red (green *or* yellow), the output is all red instead and
  :attr:`NemaController.conflicts_prevented` counts it.

Intervals change at the first step whose sim time reaches their end, so with 1 s ticks a 3 s
yellow shows on exactly 3 ticks; with coarser ticks durations round up to the tick grid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from citytwin.hil.emulated.nema_config import NemaConfig

__all__ = ["DARK", "GREEN", "RED", "YELLOW", "NemaController"]

#: Ring intervals.
GREEN, YELLOW, RED, DARK = "green", "yellow", "red", "dark"
_EPS = 1e-9
_STRENGTH = {"r": 0, "y": 1, "g": 2, "G": 3}


@dataclass
class _Ring:
    """One ring's timing state within the current barrier group."""

    phases: tuple[str, ...] = ()
    pos: int = -1
    interval: str = DARK
    elapsed: float = 0.0
    gap: float = 0.0
    max_run: float | None = None
    done: bool = False
    crossing: bool = False

    @property
    def phase(self) -> str | None:
        return self.phases[self.pos] if 0 <= self.pos < len(self.phases) else None


class NemaController:
    """An actuated dual-ring (or n-ring) controller; see the module docstring for its rules.

    Args:
        config: The junction's configuration.
    """

    def __init__(self, config: NemaConfig) -> None:
        self.config = config
        #: Steps whose heads were replaced by all red because two conflicting links were lit.
        self.conflicts_prevented = 0
        #: How phases ended: ``gap_out`` and ``max_out`` counts.
        self.terminations: Counter[str] = Counter()
        self._where = {p: config.locate(p) for p in config.phases}
        by_detector: list[list[str]] = [[] for _ in config.detectors]
        for pid, spec in config.phases.items():
            for d in spec.detectors:
                by_detector[d].append(pid)
        self._by_detector = tuple(tuple(ps) for ps in by_detector)
        self._recalled = tuple(p for p, s in config.phases.items() if s.recall != "none")
        self._rings = [_Ring() for _ in config.groups[0]]
        self._group = 0
        self._crossing = False
        self._calls: set[str] = set()
        self._t: float | None = None
        self._heads = "r" * config.links

    # -- views --------------------------------------------------------------------------------
    @property
    def group(self) -> int:
        """Index of the current barrier group."""
        return self._group

    @property
    def rings(self) -> tuple[tuple[str | None, str], ...]:
        """Per ring: ``(phase or None, interval)`` with interval one of green, yellow, red,
        dark."""
        return tuple((r.phase, r.interval) for r in self._rings)

    @property
    def green_phases(self) -> frozenset[str]:
        """Phases showing green now."""
        return frozenset(r.phase for r in self._rings if r.interval == GREEN and r.phase)

    @property
    def calls(self) -> frozenset[str]:
        """Phases with a call waiting."""
        return frozenset(self._calls)

    @property
    def heads(self) -> str:
        """The letters of the last step."""
        return self._heads

    # -- stepping -----------------------------------------------------------------------------
    def place_call(self, phase: str) -> None:
        """Call a phase (as a push button would); a green phase is extended instead.

        Raises:
            KeyError: No such phase.
        """
        if phase not in self.config.phases:
            raise KeyError(phase)
        self._actuate(phase)

    def step(self, t: float, calls: Sequence[object] = ()) -> str:
        """Advance to sim time ``t`` with this tick's detector presence; return the heads.

        Args:
            t: Sim time, seconds; a step back restarts timing from there (no time passes).
            calls: Presence per detector (truthy = actuated), or empty for none.

        Returns:
            One letter per link (``r``, ``y``, ``G``, ``g``).

        Raises:
            ValueError: ``calls`` is neither empty nor one entry per detector.
        """
        if calls and len(calls) != len(self.config.detectors):
            raise ValueError(f"calls has {len(calls)} entries; the junction has "
                             f"{len(self.config.detectors)} detectors")
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        started = self._t is not None
        self._t = t
        for ring in self._rings:
            ring.elapsed += dt
            if ring.interval == GREEN:
                ring.gap += dt
                if ring.max_run is not None:
                    ring.max_run += dt
        actuated = {p for d, present in enumerate(calls) if present
                    for p in self._by_detector[d]}
        for phase in sorted(actuated):
            self._actuate(phase)
        for phase in self._recalled:
            if phase not in self.green_phases:
                self._calls.add(phase)
        if not started:
            self._start()
        for _ in range(8 * (len(self._rings) + 2)):
            if not self._advance():
                break
        # a vehicle that arrived as its phase ended waits for the next cycle
        self._calls.update(actuated - self.green_phases)
        self._heads = self._letters()
        return self._heads

    # -- internals ----------------------------------------------------------------------------
    def _actuate(self, phase: str) -> None:
        g, r, _ = self._where[phase]
        ring = self._rings[r]
        if g == self._group and ring.phase == phase and ring.interval == GREEN:
            ring.gap = 0.0
        else:
            self._calls.add(phase)

    def _start(self) -> None:
        n = len(self.config.groups)
        first = next((g for g in range(n) if self._group_called(g)), None)
        self._enter(0 if first is None else first)
        if first is None:
            for ring in self._rings:
                if ring.phases:
                    self._begin_green(ring, 0)

    def _enter(self, group: int) -> None:
        self._group, self._crossing = group, False
        for ring, phases in zip(self._rings, self.config.groups[group], strict=True):
            ring.phases, ring.pos, ring.interval = phases, -1, DARK
            ring.done = ring.crossing = False

    def _begin_green(self, ring: _Ring, pos: int) -> None:
        ring.pos, ring.interval = pos, GREEN
        ring.elapsed = ring.gap = 0.0
        ring.max_run, ring.done, ring.crossing = None, False, False
        self._calls.discard(ring.phases[pos])

    def _group_called(self, group: int) -> bool:
        return any(p in self._calls for ring in self.config.groups[group] for p in ring)

    def _next_in_ring(self, ring: _Ring) -> int | None:
        for i in range(ring.pos + 1, len(ring.phases)):
            if ring.phases[i] in self._calls:
                return i
        return None

    def _crossing_demand(self) -> bool:
        """A call that cannot be served without crossing the barrier."""
        for phase in self._calls:
            g, r, i = self._where[phase]
            ring = self._rings[r]
            if g != self._group or i < ring.pos or (i == ring.pos and ring.interval != GREEN):
                return True
        return False

    def _wants_change(self, ring: _Ring) -> bool:
        return self._next_in_ring(ring) is not None or self._crossing_demand()

    def _ready(self, ring: _Ring) -> bool:
        if self._next_in_ring(ring) is not None:
            return False
        return ring.interval == DARK or (ring.interval == GREEN and ring.done)

    def _advance(self) -> bool:
        """One pass of every ring's and the barrier's transitions; True if anything moved."""
        changed = False
        for ring in self._rings:
            changed |= self._advance_ring(ring)
        if self._crossing:
            if all(ring.interval == DARK for ring in self._rings):
                self._enter(self._next_group())
                changed = True
        elif self._crossing_demand() and all(self._ready(ring) for ring in self._rings):
            self._crossing = True
            for ring in self._rings:
                if ring.interval == GREEN:
                    ring.interval, ring.elapsed, ring.crossing = YELLOW, 0.0, True
            changed = True
        return changed

    def _advance_ring(self, ring: _Ring) -> bool:
        phase = ring.phase
        if ring.interval == DARK:
            nxt = None if self._crossing else self._next_in_ring(ring)
            if nxt is None:
                return False
            self._begin_green(ring, nxt)
            return True
        if phase is None:  # only a dark ring has no phase
            return False
        spec = self.config.phases[phase]
        timing = spec.timing
        if ring.interval == GREEN:
            changed = False
            wants = self._wants_change(ring)
            if ring.max_run is None and wants:
                ring.max_run = 0.0
            if not ring.done and wants and ring.elapsed >= timing.min_green - _EPS:
                maxed = ring.max_run is not None and ring.max_run >= timing.max_green - _EPS
                gapped = spec.recall != "max" and ring.gap >= timing.passage - _EPS
                if maxed or gapped:
                    ring.done = changed = True
                    self.terminations["gap_out" if gapped else "max_out"] += 1
            if ring.done and not self._crossing and self._next_in_ring(ring) is not None:
                ring.interval, ring.elapsed, ring.crossing = YELLOW, 0.0, False
                changed = True
            return changed
        if ring.interval == YELLOW:
            if ring.elapsed < timing.yellow - _EPS:
                return False
            ring.interval, ring.elapsed = RED, 0.0
            return True
        if ring.elapsed < timing.red_clear - _EPS:  # red clearance
            return False
        nxt = None if ring.crossing else self._next_in_ring(ring)
        if nxt is None:
            ring.interval = DARK
        else:
            self._begin_green(ring, nxt)
        return True

    def _next_group(self) -> int:
        n = len(self.config.groups)
        for k in range(1, n + 1):
            if self._group_called((self._group + k) % n):
                return (self._group + k) % n
        return (self._group + 1) % n

    def _letters(self) -> str:
        letters = ["r"] * self.config.links
        for ring in self._rings:
            if ring.interval not in (GREEN, YELLOW) or ring.phase is None:
                continue
            for link, letter in self.config.phases[ring.phase].green:
                shown = letter if ring.interval == GREEN else "y"
                if _STRENGTH[shown] > _STRENGTH[letters[link]]:
                    letters[link] = shown
        for i, row in enumerate(self.config.conflicts):
            if letters[i] != "r" and any(letters[j] != "r" for j in row):
                self.conflicts_prevented += 1
                return "r" * self.config.links
        return "".join(letters)
