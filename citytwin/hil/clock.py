"""Pacing of the sim clock against the wall clock.

``fast`` runs ticks as fast as they compute; ``realtime`` keeps tick ``n`` from ending before
``start + n * dt / factor`` on the wall clock (absolute deadlines, so one slow tick does not
shift the ones after it) and counts every tick that ends after its deadline as an overrun;
``lockstep`` is paced by the devices (the bridge waits for their answers) and adds nothing here.
The wall clock and sleep are injected (SimPy's ``RealtimeEnvironment`` is the model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from citytwin.errors import BridgeError

log = logging.getLogger(__name__)

MODES = ("fast", "realtime", "lockstep")


class Pacer:
    """Paces ticks for a clock mode.

    Args:
        mode: ``fast``, ``realtime`` or ``lockstep``.
        dt: Sim seconds per tick.
        factor: Sim seconds per wall second in realtime mode.
        strict: In realtime mode, raise :class:`BridgeError` at the first overrun.
        wall: Monotonic wall clock, seconds.
        sleep: Sleep function.
    """

    def __init__(self, mode: str, dt: float, factor: float = 1.0, strict: bool = False,
                 wall: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if mode not in MODES:
            raise BridgeError(f"unknown clock mode {mode!r}; use one of {', '.join(MODES)}")
        if not factor > 0:
            raise BridgeError(f"the realtime factor must be > 0, got {factor}")
        self.mode, self.dt, self.factor, self.strict = mode, dt, factor, strict
        self._wall, self._sleep = wall, sleep
        self._t0 = 0.0
        self._tick0 = 0
        self.overruns = 0
        self.worst_lag = 0.0  # wall seconds the latest tick ended after its deadline

    def start(self, tick: int) -> None:
        """Start the wall clock at ``tick``."""
        self._t0, self._tick0 = self._wall(), tick

    def pace(self, tick: int) -> None:
        """Called when ``tick`` has been computed: wait for its deadline (realtime)."""
        if self.mode != "realtime":
            return
        deadline = self._t0 + (tick - self._tick0) * self.dt / self.factor
        lag = self._wall() - deadline
        if lag > 0:
            self.overruns += 1
            self.worst_lag = max(self.worst_lag, lag)
            log.warning("realtime overrun: tick %d ended %.1f ms after its deadline", tick,
                        lag * 1e3)
            if self.strict:
                raise BridgeError(f"realtime overrun at tick {tick}: {lag * 1e3:.1f} ms late "
                                  f"(--strict); lower --factor or the load")
        else:
            self._sleep(-lag)
