"""The emulated utility meter: a building's deterministic load, an energy register, a relay.

Power follows a :class:`LoadProfile`: a base load plus three slow sinusoids (periods of 30 min
to 4 h), drawn once from a random generator seeded with the device id and ``seed`` (so two
meters differ, and the same meter repeats itself), always within 2-8 kW. Each ``clock``
integrates the power delivered since the previous one into the energy register (trapezoid rule,
sim time); a ``state`` ``{"seq","tick","energy_wh","power_w","relay"}`` goes out on the first
clock and then every ``period`` sim seconds.

Commands: ``curtail {"limit_w": number >= 0 | null}`` caps the power (null lifts the cap) and
``relay {"state": "open" | "closed"}`` (open: no power); both take effect at once (``accepted``
then ``done``) and apply from the next integration on. No I/O.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from citytwin.hil.emulated.commands import Command
from citytwin.hil.emulated.device import Device
from citytwin.hil.emulated.payload import PayloadError, choice, number

__all__ = ["LoadProfile", "MeterDevice"]

_COMPONENTS = 3


class LoadProfile:
    """A building's power draw as a deterministic function of sim time.

    Args:
        device_id: Mixed into the seed, so every meter has its own profile.
        seed: The run's seed (>= 0).
        low_w: Least power, W.
        high_w: Greatest power, W.
    """

    def __init__(self, device_id: str, seed: int = 0, *, low_w: float = 2000.0,
                 high_w: float = 8000.0) -> None:
        if seed < 0 or not 0 <= low_w < high_w:
            raise ValueError(f"LoadProfile needs seed >= 0 and 0 <= low_w < high_w, got "
                             f"seed={seed}, low_w={low_w}, high_w={high_w}")
        salt = int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big")
        rng = np.random.default_rng([seed, salt])
        span = high_w - low_w
        #: Mean power, W.
        self.base_w = float(rng.uniform(low_w + 0.35 * span, high_w - 0.35 * span))
        budget = 0.95 * min(self.base_w - low_w, high_w - self.base_w)
        amplitudes = budget * rng.dirichlet(np.ones(_COMPONENTS))
        omegas = 2.0 * math.pi / rng.uniform(1800.0, 14400.0, _COMPONENTS)
        phases = rng.uniform(0.0, 2.0 * math.pi, _COMPONENTS)
        self._waves = tuple(zip(amplitudes.tolist(), omegas.tolist(), phases.tolist(),
                                strict=True))

    def power(self, t: float) -> float:
        """Power drawn at sim time ``t``, W."""
        return self.base_w + sum(a * math.sin(w * t + p) for a, w, p in self._waves)


class MeterDevice(Device):
    """An emulated smart meter with a controllable relay.

    Args:
        device_id: The device id.
        site: The site id.
        lockstep: Announce lockstep in ``birth``.
        seed: Seed of its load profile (with the device id).
        period: Sim seconds between ``state`` messages.
        memory: How many command ids to remember against redelivery.
    """

    kind = "meter"
    commands = ("curtail", "relay")

    def __init__(self, device_id: str, *, site: str = "lab", lockstep: bool = False,
                 seed: int = 0, period: float = 5.0, memory: int = 1024) -> None:
        super().__init__(device_id, site=site, lockstep=lockstep, memory=memory)
        if not period > 0:
            raise ValueError(f"period must be > 0 s, got {period}")
        self.period = period
        self.profile = LoadProfile(device_id, seed)
        #: Energy delivered, Wh (never decreases).
        self.energy_wh = 0.0
        #: ``closed`` (power flows) or ``open``.
        self.relay = "closed"
        #: Power cap, W, or None.
        self.limit_w: float | None = None
        self._last_t: float | None = None
        self._next_report: float | None = None

    def capabilities(self) -> dict[str, Any]:
        """Reporting period and which message its ``state`` answers."""
        return {"replies": "clock", "period_s": self.period, "relay": True, "curtail": True}

    def power_at(self, t: float) -> float:
        """Power delivered at sim time ``t`` with the current relay and cap, W."""
        if self.relay == "open":
            return 0.0
        p = self.profile.power(t)
        return p if self.limit_w is None else min(p, self.limit_w)

    def _on_clock(self, tick: int, t: float, data: dict[str, Any]) -> None:
        if self._last_t is None or t < self._last_t or self._next_report is None:
            self._next_report = t  # first clock, or a new simulator session: report now
        else:
            dt = t - self._last_t
            self.energy_wh += 0.5 * (self.power_at(self._last_t) + self.power_at(t)) * dt / 3600
        self._last_t = t
        if t >= self._next_report - 1e-9:
            self._state({"tick": tick, "energy_wh": self.energy_wh,
                         "power_w": self.power_at(t), "relay": self.relay})
            while self._next_report <= t + 1e-9:
                self._next_report += self.period

    def _execute(self, cmd: Command) -> bool:
        if cmd.name == "curtail":
            if "limit_w" not in cmd.args:
                raise PayloadError("limit_w: missing (null lifts the limit)")
            limit = cmd.args["limit_w"]
            self.limit_w = None if limit is None else number(cmd.args, "limit_w", lo=0.0,
                                                             hi=1e8)
        else:
            self.relay = choice(cmd.args, "state", ("open", "closed"))
        return True

