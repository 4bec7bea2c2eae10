"""The emulated drone: point-mass kinematics on sim time, missions by command, failsafes.

The simulator's retained ``config`` gives home, bounds and performance; the drone starts landed
at home with a full battery. Each ``clock`` advances it by the sim time elapsed since the last
one and is answered with a ``state`` (position, heading clockwise from north with x east and y
north, ground speed, battery, mode). Horizontal motion is at ``cruise_speed`` and vertical at
``climb_rate``, both at once; from the ground it first climbs vertically. Time left over when a
waypoint is reached carries on to the next one.

Commands: ``goto {"x","y","alt"?}``, ``patrol {"points":[[x,y],...],"alt"?,"loops"}``,
``return_home {}`` and ``land {}``: ``accepted``, then ``done`` when reached or landed. A new
mission replaces a running one, whose command is answered ``rejected`` ``superseded``.

Failsafes: below 20 % battery new missions are rejected (``low_battery``) and the drone returns
home and lands; at 0 % it lands where it is. With no simulator message for ``link_timeout``
wall seconds, or the simulator's ``avail`` offline, it returns home and lands on the wall clock
(the only wall-clock use); a drone on the ground stays there. No I/O.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from citytwin.hil.emulated.commands import Command, CommandRejected
from citytwin.hil.emulated.device import Device
from citytwin.hil.emulated.payload import PayloadError, integer, number

__all__ = ["LOW_BATTERY", "DroneConfig", "DroneDevice", "View"]

_log = logging.getLogger(__name__)

#: Battery percentage below which missions are refused and the drone returns home.
LOW_BATTERY = 20.0
_MAX_ALT = 500.0


@dataclass(frozen=True)
class DroneConfig:
    """The drone's retained ``config``: home, bounds (metres) and performance."""

    home: tuple[float, float]
    bounds: tuple[float, float, float, float]
    cruise_speed: float = 12.0
    climb_rate: float = 3.0
    cruise_alt: float = 60.0
    drain_per_s: float = 0.05

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> DroneConfig:
        """Read and check a drone ``config`` payload.

        Raises:
            PayloadError: A field is missing, of the wrong type, or inconsistent.
        """
        home = _pair(data.get("home"), "home")
        bounds = data.get("bounds")
        if not isinstance(bounds, list) or len(bounds) != 4:
            raise PayloadError("bounds: expected [xmin, ymin, xmax, ymax]")
        b = tuple(number({"bounds": v}, "bounds") for v in bounds)
        if not (b[0] < b[2] and b[1] < b[3]):
            raise PayloadError("bounds: need xmin < xmax and ymin < ymax")
        config = cls(home=home, bounds=(b[0], b[1], b[2], b[3]),
                     cruise_speed=number(data, "cruise_speed", default=12.0, lo=0.0,
                                         lo_open=True, hi=60.0),
                     climb_rate=number(data, "climb_rate", default=3.0, lo=0.0, lo_open=True,
                                       hi=50.0),
                     cruise_alt=number(data, "cruise_alt", default=60.0, lo=0.0, lo_open=True,
                                       hi=_MAX_ALT),
                     drain_per_s=number(data, "drain_per_s", default=0.05, lo=0.0, hi=100.0))
        if not config.inside(*home):
            raise PayloadError("home: outside bounds")
        return config

    def inside(self, x: float, y: float) -> bool:
        """True if ``(x, y)`` lies within the bounds."""
        xmin, ymin, xmax, ymax = self.bounds
        return xmin <= x <= xmax and ymin <= y <= ymax


@dataclass(frozen=True)
class View:
    """What the simulator says the drone's camera sees (its latest ``input``)."""

    tick: int
    t: float
    vehicles_in_view: int
    halted_in_view: int
    radius_m: float


class DroneDevice(Device):
    """An emulated multirotor drone.

    Args:
        device_id: The device id.
        site: The site id.
        lockstep: Announce lockstep in ``birth``.
        link_timeout: Wall seconds without a simulator message before the link-loss failsafe.
        memory: How many command ids to remember against redelivery.
    """

    kind = "drone"
    commands = ("goto", "patrol", "return_home", "land")

    def __init__(self, device_id: str, *, site: str = "lab", lockstep: bool = False,
                 link_timeout: float = 3.0, memory: int = 1024) -> None:
        super().__init__(device_id, site=site, lockstep=lockstep, memory=memory)
        if not link_timeout > 0:
            raise ValueError(f"link_timeout must be > 0 s, got {link_timeout}")
        self.link_timeout = link_timeout
        #: Performance and home, None until the first valid config.
        self.drone_config: DroneConfig | None = None
        self.x = self.y = self.alt = self.heading = self.speed = 0.0
        self.battery = 100.0
        #: ``landed``, ``idle`` (hovering), ``flying``, ``returning`` or ``landing``.
        self.mode = "landed"
        #: The latest ``input`` (what is in view), None before any.
        self.view: View | None = None
        self._route: list[tuple[float, float, float]] = []
        self._then_land = False
        self._mission: str | None = None
        self._last_t: float | None = None
        self._link_lost = False
        self._first_wall: float | None = None
        self._wall_step: float | None = None

    @property
    def link_lost(self) -> bool:
        """Whether the link-loss failsafe is active."""
        return self._link_lost

    @property
    def route(self) -> tuple[tuple[float, float, float], ...]:
        """Waypoints still ahead, ``(x, y, alt)``."""
        return tuple(self._route)

    def capabilities(self) -> dict[str, Any]:
        """Modes, failsafes and which message its ``state`` answers."""
        return {"replies": "clock", "link_timeout_s": self.link_timeout,
                "low_battery_pct": LOW_BATTERY, "camera": True}

    def snapshot(self) -> dict[str, Any]:
        """Position, motion, battery and mode as in a ``state`` payload (without seq/tick)."""
        return {"x": self.x, "y": self.y, "alt": self.alt, "heading": self.heading,
                "speed": self.speed, "battery": self.battery, "mode": self.mode}

    # -- messages -----------------------------------------------------------------------------
    def _configure(self, data: dict[str, Any]) -> None:
        first = self.drone_config is None
        self.drone_config = DroneConfig.from_payload(data)
        if first:
            self.x, self.y = self.drone_config.home

    def _on_clock(self, tick: int, t: float, data: dict[str, Any]) -> None:
        if self.drone_config is None:
            self.counters["clock_without_config"] += 1
            return
        dt = 0.0 if self._last_t is None or t < self._last_t else t - self._last_t
        self._last_t = t
        self._fly(dt)
        self._state({"tick": tick, **self.snapshot()})

    def _on_input(self, tick: int, t: float, data: dict[str, Any]) -> None:
        self.view = View(tick=tick, t=t,
                         vehicles_in_view=integer(data, "vehicles_in_view", lo=0),
                         halted_in_view=integer(data, "halted_in_view", lo=0),
                         radius_m=number(data, "radius_m", lo=0.0))

    def _heard(self, wall: float) -> None:
        super()._heard(wall)
        if self._link_lost and self.sim_online is not False:
            self._link_lost = False
            self._last_t = None  # the simulator's clock may have moved on or restarted
            _log.info("%s: simulator back; link-loss failsafe ends", self.name)

    def _on_sim_avail(self, online: bool | None, wall: float) -> None:
        if online is False:
            self._lose_link("the simulator went offline", wall)
        elif online:
            self._heard(wall)

    def _on_wall(self, wall: float) -> None:
        if self._first_wall is None:
            self._first_wall = wall
        last = self._last_heard if self._last_heard is not None else self._first_wall
        if not self._link_lost and wall - last > self.link_timeout:
            self._lose_link(f"no simulator message for {wall - last:.1f} s", wall)
        if self._link_lost:
            dt = wall - (self._wall_step if self._wall_step is not None else wall)
            self._wall_step = wall
            if dt > 0:
                self._fly(dt)

    # -- commands -----------------------------------------------------------------------------
    def _execute(self, cmd: Command) -> bool:
        cfg = self.drone_config
        if cfg is None:
            raise CommandRejected("not_configured")
        args = cmd.args
        if cmd.name == "land":
            if self.mode == "landed":
                return True
            self._new_mission(cmd.id, [], land=True, mode="landing")
            return False
        if cmd.name == "return_home":
            if self.mode == "landed" and (self.x, self.y) == cfg.home:
                return True
            self._new_mission(cmd.id, [(*cfg.home, cfg.cruise_alt)], land=True,
                              mode="returning")
            return False
        alt = number(args, "alt", default=cfg.cruise_alt, lo=0.0, lo_open=True, hi=_MAX_ALT)
        if cmd.name == "goto":
            points = [(number(args, "x"), number(args, "y"))]
        else:
            raw = args.get("points")
            if not isinstance(raw, list) or not 1 <= len(raw) <= 256:
                raise PayloadError("points: expected a list of 1-256 [x, y] pairs")
            points = [_pair(p, "points") for p in raw]
            loops = integer(args, "loops", lo=1, hi=1000)
            points = points * loops
        if not all(cfg.inside(x, y) for x, y in points):
            raise CommandRejected("outside_bounds")
        if self.battery < LOW_BATTERY:
            self._return_home("low_battery")
            raise CommandRejected("low_battery")
        self._new_mission(cmd.id, [(x, y, alt) for x, y in points], land=False, mode="flying")
        return False

    def _new_mission(self, cmd_id: str | None, route: list[tuple[float, float, float]], *,
                     land: bool, mode: str) -> None:
        self._abort("superseded")
        if self.mode == "landed" and route:
            route.insert(0, (self.x, self.y, route[0][2]))  # take off vertically first
        self._route, self._then_land, self._mission = route, land, cmd_id
        self.mode = mode

    def _abort(self, reason: str) -> None:
        if self._mission is not None:
            self._finish(self._mission, "rejected", reason)
            self._mission = None

    def _return_home(self, reason: str) -> None:
        cfg = self.drone_config
        if cfg is None or self.mode not in ("idle", "flying"):  # landed, or already going down
            return
        _log.warning("%s: returning home (%s)", self.name, reason)
        self._abort(reason)
        self._new_mission(None, [(*cfg.home, cfg.cruise_alt)], land=True, mode="returning")

    def _lose_link(self, why: str, wall: float) -> None:
        if self._link_lost:
            return
        self._link_lost = True
        self._wall_step = wall
        self.counters["link_losses"] += 1
        _log.warning("%s: link lost: %s", self.name, why)
        self._return_home("link_lost")

    # -- kinematics ---------------------------------------------------------------------------
    def _fly(self, dt: float) -> None:
        cfg = self.drone_config
        if cfg is None or self.mode == "landed":
            self.speed = 0.0
            return
        self.battery = max(0.0, self.battery - cfg.drain_per_s * dt)
        if self.battery <= 0.0 and self.mode != "landing":
            _log.warning("%s: battery empty; landing where it is", self.name)
            self._abort("battery_empty")
            self._route, self._then_land, self.mode = [], True, "landing"
        elif self.battery < LOW_BATTERY:
            self._return_home("low_battery")
        moved = self._move(dt, cfg)
        if dt > 0:
            self.speed = min(moved / dt, cfg.cruise_speed)

    def _move(self, dt: float, cfg: DroneConfig) -> float:
        """Advance along the route for ``dt`` s; return the horizontal distance covered."""
        left, moved = dt, 0.0
        while left > 0 or (self._route and self._reached(self._route[0])):
            if self.mode == "landing":
                self.alt = max(0.0, self.alt - cfg.climb_rate * left)
                if self.alt <= 0.0:
                    self._landed()
                return moved
            if not self._route:
                return moved
            tx, ty, ta = self._route[0]
            dx, dy, dz = tx - self.x, ty - self.y, ta - self.alt
            dist = math.hypot(dx, dy)
            need = max(dist / cfg.cruise_speed, abs(dz) / cfg.climb_rate)
            if dist > 0:
                self.heading = _heading(dx, dy)
            if need <= left:
                self.x, self.y, self.alt = tx, ty, ta
                moved += dist
                left -= need
                self._route.pop(0)
                if not self._route:
                    self._arrived()
            else:
                step = min(dist, cfg.cruise_speed * left)
                if dist > 0:
                    self.x += dx * step / dist
                    self.y += dy * step / dist
                self.alt += math.copysign(min(abs(dz), cfg.climb_rate * left), dz)
                moved += step
                left = 0.0
        return moved

    def _reached(self, waypoint: tuple[float, float, float]) -> bool:
        return (self.x, self.y, self.alt) == waypoint

    def _arrived(self) -> None:
        if self._then_land:
            self.mode = "landing"
            return
        self.mode = "idle"
        if self._mission is not None:
            self._finish(self._mission)
            self._mission = None

    def _landed(self) -> None:
        self.alt, self.speed, self.mode = 0.0, 0.0, "landed"
        self._route, self._then_land = [], False
        if self._mission is not None:
            self._finish(self._mission)
            self._mission = None


def _heading(dx: float, dy: float) -> float:
    """Degrees clockwise from north (y) towards east (x), in ``[0, 360)``."""
    h = math.degrees(math.atan2(dx, dy)) % 360.0
    return 0.0 if h >= 360.0 else h


def _pair(value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise PayloadError(f"{key}: expected [x, y]")
    return number({key: value[0]}, key), number({key: value[1]}, key)
