"""The simulator's side of a device: what the city knows of it and does with its messages.

A :class:`Twin` is created per device of the scenario's ``[hil]`` table. The bridge hands it
validated messages (``birth``, ``avail``, ``state``) at a tick boundary and asks it, after every
tick, what to publish. Kinds: :class:`~citytwin.hil.signal_twin.SignalTwin`,
:class:`DroneTwin`, :class:`MeterTwin`. A twin raises
:class:`~citytwin.hil.protocol.Rejected` when a message must not change the city; it changes
nothing in that case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from citytwin.agents.buildings import Building
from citytwin.agents.drones import Drone
from citytwin.hil.protocol import Birth, DroneState, MeterState, Rejected
from citytwin.model.city import City

#: ``emit(kind, detail)``: log an event of this device (the bridge publishes and records it).
Emit = Callable[[str, str], None]
#: ``(channel, payload, retain)`` to publish to the device.
Outbound = tuple[str, dict[str, Any], bool]

#: Commands each kind accepts, with their required argument names.
COMMANDS: dict[str, dict[str, tuple[str, ...]]] = {
    "signal": {},
    "drone": {"goto": ("x", "y"), "patrol": ("points",), "return_home": (), "land": ()},
    "meter": {"curtail": ("limit_w",), "relay": ("state",)},
}


class Twin:
    """A device as the simulator sees it.

    Args:
        device_id: The device's id.
        lockstep: The scenario wants the clock to wait for this device every tick.
        emit: Where its events go.
    """

    kind = ""

    def __init__(self, device_id: str, lockstep: bool, emit: Emit) -> None:
        self.device_id = device_id
        self.lockstep = lockstep
        self.emit = emit
        self.online = False
        self.avail = ""  # the last availability the device (or its will) published
        self.births = 0
        self.fw = ""
        self.last_seq = -1
        self.last_state_t = -math.inf
        self.answered_tick = -1
        self.stepping = False  # device and scenario want lockstep
        self.waiting = False  # in lockstep: the clock waits for this device now
        self.in_seq = 0

    def config(self) -> dict[str, Any] | None:
        """The retained ``config`` payload for the device, if its kind has one."""
        return None

    def on_birth(self, msg: Birth, t: float) -> None:
        """A device (re)started a session."""
        self.births += 1
        self.online = True
        self.fw = msg.fw
        self.last_seq = -1
        self.last_state_t = t
        self.stepping = self.lockstep and msg.lockstep  # both want lockstep
        self.waiting = self.stepping
        self.emit("online", f"birth #{self.births}, fw {msg.fw!r}")

    def on_offline(self, t: float, why: str) -> None:
        """The device went away (last will, its own ``offline``, or silence)."""
        if self.online:
            self.online = False
            self.waiting = False
            self.emit("offline", why)
            self.fallback(t, why)

    def on_state(self, msg: Any, t: float) -> None:
        """Apply a validated state message at sim time ``t`` (raise Rejected to refuse)."""
        raise NotImplementedError

    def fallback(self, t: float, why: str) -> None:
        """Degrade safely (no device in control)."""

    def before_step(self, t: float) -> None:
        """Called once per tick before the city steps."""

    def outputs(self, city: City, tick: int, t: float) -> list[Outbound]:
        """What to publish to the device after a tick."""
        return []


class DroneTwin(Twin):
    """A drone device and its :class:`~citytwin.agents.drones.Drone` agent.

    Publishes, every tick while the drone flies, what its camera sees: vehicles in view and
    those halted (counts only).
    """

    kind = "drone"

    def __init__(self, device_id: str, lockstep: bool, emit: Emit, city: City,
                 home: tuple[float, float]) -> None:
        super().__init__(device_id, lockstep, emit)
        self.drone = Drone(city, device_id, home)
        xy = city.network.junction_xy
        margin = 500.0
        self.bounds = (float(xy[:, 0].min() - margin), float(xy[:, 1].min() - margin),
                       float(xy[:, 0].max() + margin), float(xy[:, 1].max() + margin))

    def config(self) -> dict[str, Any]:
        return {"home": list(self.drone.home), "bounds": list(self.bounds),
                "cruise_speed": 12.0, "climb_rate": 3.0, "cruise_alt": 60.0}

    def on_state(self, msg: DroneState, t: float) -> None:
        x0, y0, x1, y1 = self.bounds
        if not (x0 <= msg.x <= x1 and y0 <= msg.y <= y1):
            raise Rejected("out_of_range", f"position ({msg.x:.0f}, {msg.y:.0f}) is outside "
                           f"the city's bounds {self.bounds}")
        self.drone.report(t, msg.x, msg.y, msg.alt, msg.heading, msg.speed, msg.battery,
                          msg.mode)

    def before_step(self, t: float) -> None:
        self.drone.advance(t)

    def outputs(self, city: City, tick: int, t: float) -> list[Outbound]:
        if not self.online:
            return []
        fleet = city.fleet
        slots = fleet.order[:fleet.n_order]
        if self.drone.alt > 0 and slots.size:
            xy = city.network.positions(fleet.veh.lane[slots], fleet.veh.pos[slots])
            seen, halted = self.drone.count_in_view(xy, fleet.veh.speed[slots])
        else:
            seen = halted = 0
        return [("input", {"tick": tick, "t": t, "vehicles_in_view": seen,
                           "halted_in_view": halted,
                           "radius_m": round(self.drone.view_radius, 3)}, False)]


class MeterTwin(Twin):
    """A meter device and the :class:`~citytwin.agents.buildings.Building` it measures."""

    kind = "meter"

    def __init__(self, device_id: str, lockstep: bool, emit: Emit, city: City,
                 building_id: str, xy: tuple[float, float] | None, stale_after: float) -> None:
        super().__init__(device_id, lockstep, emit)
        self.building = Building(city, building_id, xy, stale_after)
        self.stale_events = 0
        self._was_stale = False

    def on_state(self, msg: MeterState, t: float) -> None:
        b = self.building
        if msg.energy_wh < b.energy_wh - 1e-6:
            raise Rejected("out_of_range", f"energy register went backwards "
                           f"({msg.energy_wh:g} Wh < {b.energy_wh:g} Wh)")
        b.reading(t, msg.energy_wh, msg.power_w, msg.relay)

    def before_step(self, t: float) -> None:
        if math.isfinite(self.building.read_at):
            stale = self.building.stale(t)
            if stale and not self._was_stale:
                self.stale_events += 1
                self.emit("stale", f"no reading for {self.building.stale_after:g} s; "
                                   f"load {self.building.load_w:g} W kept and marked stale")
            self._was_stale = stale

