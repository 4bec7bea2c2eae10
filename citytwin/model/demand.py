"""Travel demand: vehicle types, trips, flows and routes, and their expansion into departures.

A :class:`Demand` holds what a scenario asks for. Flows are expanded into individual trips with
the model's rng (SUMO naming: flow ``f`` gives vehicles ``f.0``, ``f.1``, ...), so the same seed
gives the same departures. Routes are either given as an edge list or computed at load time
from origin and destination edges (see :mod:`citytwin.model.routing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from citytwin.errors import DemandError


@dataclass(frozen=True)
class VehicleType:
    """A vehicle type with IDM car-following parameters (SUMO vType names in comments).

    Defaults are SUMO's passenger car defaults.
    """

    id: str = "DEFAULT_VEHTYPE"
    length: float = 5.0            # length, m
    min_gap: float = 2.5           # minGap, m; IDM's s0
    accel: float = 2.6             # accel, m/s^2; IDM's a
    decel: float = 4.5             # decel, m/s^2; IDM's comfortable b
    emergency_decel: float = 9.0   # emergencyDecel, m/s^2
    max_speed: float = 55.55       # maxSpeed, m/s
    tau: float = 1.0               # tau, s; IDM's time headway T
    delta: float = 4.0             # IDM's acceleration exponent
    speed_factor: float = 1.0      # speedFactor: multiplies lane speed limits
    vclass: str = "passenger"      # vClass
    priority: int = 0              # > 0 for emergency vehicles

    def __post_init__(self) -> None:
        positive = ("length", "accel", "decel", "emergency_decel", "max_speed", "tau", "delta",
                    "speed_factor")
        for name in positive:
            if not getattr(self, name) > 0:
                raise DemandError(f"vehicle type {self.id!r}: {name} must be > 0, "
                                  f"got {getattr(self, name)}")
        if self.min_gap < 0:
            raise DemandError(f"vehicle type {self.id!r}: min_gap must be >= 0")
        if self.emergency_decel < self.decel:
            raise DemandError(f"vehicle type {self.id!r}: emergency_decel must be >= decel")


@dataclass(frozen=True)
class Trip:
    """One vehicle's journey: depart time, origin and destination edges, or a full route.

    ``route`` (edge ids, origin first) wins over ``from_edge``/``to_edge`` when given.
    ``depart_speed`` is a number in m/s or ``"max"`` (as fast as is safe). ``planned=False``
    leaves the trip out of the demand that fixed-time plans are designed from (traffic the
    plan in the controller does not know of: an event, a diversion).
    """

    id: str
    depart: float
    from_edge: str
    to_edge: str
    vtype: str = "DEFAULT_VEHTYPE"
    route: tuple[str, ...] | None = None
    depart_speed: float | str = "max"
    planned: bool = True


@dataclass(frozen=True)
class Flow:
    """Repeated departures between ``begin`` and ``end`` (SUMO ``<flow>``).

    Exactly one of ``vehs_per_hour``, ``period``, ``probability`` (per second, Bernoulli
    departures drawn from the rng) or ``number`` (evenly spread) is set.
    """

    id: str
    begin: float
    end: float
    from_edge: str
    to_edge: str
    vtype: str = "DEFAULT_VEHTYPE"
    route: tuple[str, ...] | None = None
    vehs_per_hour: float | None = None
    period: float | None = None
    probability: float | None = None
    number: int | None = None
    depart_speed: float | str = "max"
    planned: bool = True  # as Trip.planned, for every vehicle of the flow

    def __post_init__(self) -> None:
        given = [k for k in ("vehs_per_hour", "period", "probability", "number")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise DemandError(f"flow {self.id!r}: set exactly one of vehs_per_hour, period, "
                              f"probability, number (got {given or 'none'})")
        if self.end <= self.begin:
            raise DemandError(f"flow {self.id!r}: end ({self.end}) must be after begin "
                              f"({self.begin})")
        if self.probability is not None and not 0 < self.probability <= 1:
            raise DemandError(f"flow {self.id!r}: probability must be in (0, 1]")
        for k in ("vehs_per_hour", "period", "number"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise DemandError(f"flow {self.id!r}: {k} must be > 0, got {v}")

    def departures(self, rng: np.random.Generator) -> np.ndarray:
        """Depart times of this flow's vehicles (seconds, ascending)."""
        span = self.end - self.begin
        if self.probability is not None:
            draws = rng.random(int(np.ceil(span)))
            return self.begin + np.flatnonzero(draws < self.probability).astype(np.float64)
        if self.number is not None:
            return self.begin + np.arange(self.number) * (span / self.number)
        if self.period is not None:
            period = self.period
        else:
            assert self.vehs_per_hour is not None  # __post_init__: exactly one rate is set
            period = 3600.0 / self.vehs_per_hour
        return self.begin + np.arange(0.0, span - 1e-9, period)


@dataclass
class Demand:
    """Vehicle types, trips and flows of a scenario."""

    vtypes: dict[str, VehicleType] = field(
        default_factory=lambda: {"DEFAULT_VEHTYPE": VehicleType()})
    trips: list[Trip] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)

    def add_vtype(self, vtype: VehicleType) -> None:
        """Add or replace a vehicle type."""
        self.vtypes[vtype.id] = vtype

    def expand(self, rng: np.random.Generator) -> list[Trip]:
        """All trips, flows expanded, sorted by depart time (ties keep definition order).

        Raises:
            DemandError: a trip or flow names an unknown vehicle type, or ids repeat.
        """
        out: list[Trip] = list(self.trips)
        for f in self.flows:
            for k, t in enumerate(f.departures(rng)):
                out.append(Trip(f"{f.id}.{k}", float(t), f.from_edge, f.to_edge, f.vtype,
                                f.route, f.depart_speed, f.planned))
        seen: set[str] = set()
        for t in out:
            if t.vtype not in self.vtypes:
                raise DemandError(f"vehicle {t.id!r} uses unknown vehicle type {t.vtype!r}")
            if t.id in seen:
                raise DemandError(f"duplicate vehicle id {t.id!r}")
            seen.add(t.id)
        order = sorted(range(len(out)), key=lambda i: (out[i].depart, i))
        return [out[i] for i in order]

    def __len__(self) -> int:
        return len(self.trips) + len(self.flows)
