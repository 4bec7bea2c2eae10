"""ctfw_meter: a utility meter board (energy register, power, relay, curtailment).

Runs unchanged on MicroPython and CPython. The building's power follows a deterministic
profile drawn from the device id (a base load and three slow sinusoids, always within
2-8 kW), the stand-in for a real current transformer. Each sim ``CLOCK`` integrates the power
delivered since the previous one into the energy register (trapezoid rule, sim time); a
``state`` ``{"tick", "energy_wh", "power_w", "relay"}`` goes out on the first clock and then
every ``period`` sim seconds, or every tick when the board runs in lockstep.

Commands: ``curtail {"limit_w": number >= 0 | null}`` caps the power (null lifts the cap),
``relay {"state": "open" | "closed"}`` (open: no power); both take effect at once (acks
``accepted`` then ``done``).
"""

import math

import ctfw_wire as w
from ctfw_board import Board, CommandRejected


class Profile:
    """A building's power draw as a function of sim time, drawn from ``device_id``."""

    def __init__(self, device_id, low_w=2000.0, high_w=8000.0):
        state = [w.crc16(device_id.encode()) * 2654435761 + 12345]

        def uniform(a, b):  # a small LCG: the same id gives the same profile everywhere
            state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
            return a + (b - a) * state[0] / 0x7FFFFFFF

        span = high_w - low_w
        self.base_w = uniform(low_w + 0.35 * span, high_w - 0.35 * span)
        budget = 0.95 * min(self.base_w - low_w, high_w - self.base_w)
        weights = [uniform(0.2, 1.0) for _ in range(3)]
        total = sum(weights)
        self.waves = [(budget * wt / total, 2 * math.pi / uniform(1800.0, 14400.0),
                       uniform(0.0, 2 * math.pi)) for wt in weights]

    def power(self, t):
        p = self.base_w
        for a, omega, phase in self.waves:
            p += a * math.sin(omega * t + phase)
        return p


class MeterBoard(Board):
    """A smart meter board with a controllable relay."""

    kind = "meter"
    commands = ("curtail", "relay")

    def __init__(self, device_id, lockstep=False, period=5.0):
        Board.__init__(self, device_id, lockstep)
        self.period = period
        self.profile = Profile(device_id)
        self.energy_wh = 0.0
        self.relay = "closed"
        self.limit_w = None
        self._last_t = None
        self._next_report = None

    def hello(self):
        return {"caps": {"replies": "clock", "period_s": self.period, "relay": True,
                         "curtail": True, "commands": list(self.commands)}}

    def power_at(self, t):
        if self.relay == "open":
            return 0.0
        p = self.profile.power(t)
        return p if self.limit_w is None else min(p, self.limit_w)

    def on_clock(self, tick, t, dt, mode):
        self.see_time(t)
        if self._last_t is None or t < self._last_t or self._next_report is None:
            self._next_report = t  # first clock, or a new simulator session: report now
        else:
            span = t - self._last_t
            self.energy_wh += 0.5 * (self.power_at(self._last_t) + self.power_at(t)) * span \
                / 3600.0
        self._last_t = t
        if self.lockstep or t >= self._next_report - 1e-9:
            state = {"tick": tick, "energy_wh": round(self.energy_wh, 3),
                     "power_w": round(self.power_at(t), 3), "relay": self.relay}
            if self.link is not None:
                self.link.send_message(w.CH_STATE, state)
            while self._next_report <= t + 1e-9:
                self._next_report += self.period

    def execute(self, name, args):
        if name == "curtail":
            if "limit_w" not in args:
                raise CommandRejected("bad_args: limit_w: missing (null lifts the limit)")
            limit = args["limit_w"]
            if limit is None:
                self.limit_w = None
            elif isinstance(limit, (int, float)) and not isinstance(limit, bool) \
                    and 0 <= limit <= 1e8:
                self.limit_w = float(limit)
            else:
                raise CommandRejected("bad_args: limit_w: a number 0-1e8 or null")
            return True
        state = args.get("state")
        if state not in ("open", "closed"):
            raise CommandRejected("bad_args: state: open or closed")
        self.relay = state
        return True
