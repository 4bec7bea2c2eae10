"""Drones: a :class:`Drone` agent is the city's twin of one drone, with a home and kinematics.

A device (over the HIL bridge) reports where its drone is; between reports the twin moves on by
dead reckoning (heading and ground speed) so that what it sees stays current. What a drone sees
is counted from the vehicle fleet: vehicles and halted vehicles inside its camera footprint, a
circle whose radius grows with altitude. Identities are never reported.
"""

from __future__ import annotations

import math

import mesa
import numpy as np

#: Half the camera's field of view, degrees: the footprint radius is ``alt * tan(HALF_FOV)``.
HALF_FOV = 45.0
#: Dead reckoning stops after this many seconds without a report (the twin holds position).
MAX_EXTRAPOLATION = 5.0


class Drone(mesa.Agent):
    """The twin of one drone.

    Args:
        model: The city.
        drone_id: Device id.
        home: Home (take-off and landing) position, metres in the network's frame.
    """

    def __init__(self, model: mesa.Model, drone_id: str, home: tuple[float, float]) -> None:
        super().__init__(model)
        self.drone_id = drone_id
        self.home = (float(home[0]), float(home[1]))
        self.x, self.y = self.home
        self.alt = 0.0
        self.heading = 0.0
        self.speed = 0.0
        self.battery = 100.0
        self.mode = "landed"
        self.reported_at = -math.inf  # sim time of the last report
        self._report_xy = self.home

    def report(self, t: float, x: float, y: float, alt: float, heading: float, speed: float,
               battery: float, mode: str) -> None:
        """Take a position report made at sim time ``t``."""
        self.x, self.y, self.alt = x, y, alt
        self.heading, self.speed, self.battery, self.mode = heading, speed, battery, mode
        self.reported_at = t
        self._report_xy = (x, y)

    def advance(self, t: float) -> None:
        """Dead-reckon the position at sim time ``t`` from the last report."""
        if self.mode in ("landed", "idle") or not math.isfinite(self.reported_at):
            return
        dt = min(max(t - self.reported_at, 0.0), MAX_EXTRAPOLATION)
        h = math.radians(self.heading)
        self.x = self._report_xy[0] + self.speed * dt * math.sin(h)
        self.y = self._report_xy[1] + self.speed * dt * math.cos(h)

    @property
    def view_radius(self) -> float:
        """Radius in metres of the ground the camera sees (0 when landed)."""
        return self.alt * math.tan(math.radians(HALF_FOV))

    def count_in_view(self, xy: np.ndarray, speed: np.ndarray,
                      halt_speed: float = 0.1) -> tuple[int, int]:
        """Count the vehicles at ``xy`` (n x 2) inside the footprint, and those halted."""
        r = self.view_radius
        if r <= 0 or xy.size == 0:
            return 0, 0
        inside = (xy[:, 0] - self.x) ** 2 + (xy[:, 1] - self.y) ** 2 <= r * r
        return int(np.count_nonzero(inside)), int(np.count_nonzero(inside & (speed < halt_speed)))
