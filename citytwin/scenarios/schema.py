"""The scenario file format: pydantic models of every TOML table, validated strictly.

Each model forbids unknown keys and uses pydantic's strict mode (no ``"6"`` for ``6``, no
``"yes"`` for ``true``; an integer is still accepted where a number is expected). Defaults
mirror the model's own: :func:`~citytwin.model.grid.grid_network`'s keyword arguments,
:class:`~citytwin.model.demand.VehicleType` and :class:`~citytwin.model.config.SimConfig`.

What needs the network (edge and lane ids) or other files is checked later, when a
:class:`~citytwin.scenarios.loader.Scenario` builds its parts. ``docs/scenarios.md`` documents
every key.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator

from citytwin.model.config import SimConfig
from citytwin.model.demand import VehicleType
from citytwin.scenarios._signals_spec import SignalsSpec

#: Duration cap, in seconds, of a scenario run "until every trip has finished".
MAX_DURATION = 86400.0


def _depart_speed(value: Any) -> float | str:
    if value == "max":
        return "max"
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ValueError('must be a speed in m/s >= 0 or "max"')


DepartSpeed = Annotated[float | str, PlainValidator(_depart_speed)]
EdgeId = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(ge=0)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GridSpec(_Table):
    """``[network.grid]``: the keyword arguments of ``grid_network``."""

    rows: int = Field(ge=1)
    cols: int = Field(ge=1)
    edge_length: float = Field(default=200.0, gt=0)
    lanes: int = Field(default=1, ge=1, le=6)
    speed: float = Field(default=13.89, gt=0)
    signalised: bool = True
    cycle: float = Field(default=90.0, gt=0)
    yellow: float = Field(default=3.0, ge=0)
    all_red: float = Field(default=2.0, ge=0)
    actuated: bool = False
    min_green: float = Field(default=10.0, gt=0)
    max_green: float = Field(default=60.0, gt=0)
    attach_length: float = Field(default=100.0, gt=0)

    @model_validator(mode="after")
    def _greens(self) -> Self:
        if self.actuated and self.max_green < self.min_green:
            raise ValueError("max_green must be >= min_green")
        return self


class NetworkSpec(_Table):
    """``[network]``: a SUMO network file or a generated grid, exactly one."""

    sumo_net: str | None = None
    grid: GridSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.sumo_net is None) == (self.grid is None):
            raise ValueError('set exactly one of sumo_net = "<file>.net.xml" or a '
                             "[network.grid] table")
        if self.sumo_net is not None and not self.sumo_net.endswith((".net.xml",
                                                                     ".net.xml.gz")):
            raise ValueError("sumo_net must name a .net.xml or .net.xml.gz file")
        return self


class _Route(_Table):
    """Origin and destination, or a full route; shared by flows and trips."""

    id: str = Field(min_length=1)
    from_edge: EdgeId | None = Field(default=None, alias="from")
    to_edge: EdgeId | None = Field(default=None, alias="to")
    vtype: str = "DEFAULT_VEHTYPE"
    route: list[EdgeId] | None = Field(default=None, min_length=1)
    depart_speed: DepartSpeed = "max"
    planned: bool = True  # false: fixed-time plans are designed without it (an event)

    @model_validator(mode="after")
    def _ends(self) -> Self:
        if self.route is None:
            if self.from_edge is None or self.to_edge is None:
                raise ValueError("needs from and to, or a route")
        else:
            for key, given, edge in (("from", self.from_edge, self.route[0]),
                                     ("to", self.to_edge, self.route[-1])):
                if given is not None and given != edge:
                    raise ValueError(f"{key} = {given!r} is not the route's "
                                     f"{'first' if key == 'from' else 'last'} edge {edge!r}")
        return self

    @property
    def origin(self) -> str:
        return self.route[0] if self.route else str(self.from_edge)

    @property
    def destination(self) -> str:
        return self.route[-1] if self.route else str(self.to_edge)


class FlowSpec(_Route):
    """``[[demand.flows]]``: repeated departures (SUMO ``<flow>``)."""

    begin: Seconds = 0.0
    end: Seconds = 86400.0  # SUMO's default
    vehs_per_hour: float | None = Field(default=None, gt=0)
    period: float | None = Field(default=None, gt=0)
    probability: float | None = Field(default=None, gt=0, le=1)
    number: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _rate(self) -> Self:
        given = [k for k in ("vehs_per_hour", "period", "probability", "number")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of vehs_per_hour, period, probability, number"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.end <= self.begin:
            raise ValueError(f"end ({self.end:g}) must be after begin ({self.begin:g})")
        return self


class TripSpec(_Route):
    """``[[demand.trips]]``: one vehicle."""

    depart: Seconds


class RandomSpec(_Table):
    """``[demand.random]``: the arguments of ``random_trips``."""

    begin: Seconds = 0.0
    end: float = Field(gt=0)
    vehs_per_hour: float = Field(gt=0)
    profile: list[list[float]] | None = Field(default=None, min_length=2)
    fringe_only: bool = True
    vtype: str = "DEFAULT_VEHTYPE"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.end <= self.begin:
            raise ValueError(f"end ({self.end:g}) must be after begin ({self.begin:g})")
        if self.profile is not None:
            if any(len(p) != 2 or p[1] < 0 for p in self.profile):
                raise ValueError("profile must be [[time_s, multiplier], ...] with "
                                 "multipliers >= 0")
            times = [p[0] for p in self.profile]
            if any(b <= a for a, b in itertools.pairwise(times)):
                raise ValueError("profile times must increase")
            if max(p[1] for p in self.profile) <= 0:
                raise ValueError("profile needs a multiplier > 0")
        return self


class DemandSpec(_Table):
    """``[demand]``: any combination of sources."""

    sumo_routes: str | None = None
    flows: list[FlowSpec] = []
    trips: list[TripSpec] = []
    random: RandomSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.sumo_routes is None and not (self.flows or self.trips or self.random):
            raise ValueError("no traffic: give sumo_routes, [[demand.flows]], "
                             "[[demand.trips]] or [demand.random]")
        if self.sumo_routes is not None and not self.sumo_routes.endswith((".xml", ".xml.gz")):
            raise ValueError("sumo_routes must name a .xml or .xml.gz file")
        ids = [f.id for f in self.flows] + [t.id for t in self.trips]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate flow/trip id {dup[0]!r}")
        return self


_VT = VehicleType  # defaults below come from the model's own dataclass


class VTypeSpec(_Table):
    """``[[vtypes]]``: a :class:`~citytwin.model.demand.VehicleType`."""

    id: str = Field(min_length=1)
    length: float = Field(default=_VT.length, gt=0)
    min_gap: float = Field(default=_VT.min_gap, ge=0)
    accel: float = Field(default=_VT.accel, gt=0)
    decel: float = Field(default=_VT.decel, gt=0)
    emergency_decel: float = Field(default=_VT.emergency_decel, gt=0)
    max_speed: float = Field(default=_VT.max_speed, gt=0)
    tau: float = Field(default=_VT.tau, gt=0)
    delta: float = Field(default=_VT.delta, gt=0)
    speed_factor: float = Field(default=_VT.speed_factor, gt=0)
    vclass: str = _VT.vclass
    priority: int = Field(default=_VT.priority, ge=0)

    @model_validator(mode="after")
    def _brakes(self) -> Self:
        if self.emergency_decel < self.decel:
            raise ValueError(f"emergency_decel ({self.emergency_decel:g}) must be >= decel "
                             f"({self.decel:g})")
        return self

    def to_vtype(self) -> VehicleType:
        return VehicleType(**self.model_dump())


_SC = SimConfig


class SimulationSpec(_Table):
    """``[simulation]``: a :class:`~citytwin.model.config.SimConfig`."""

    dt: float = Field(default=_SC.dt, gt=0, le=10)
    time_to_teleport: float = _SC.time_to_teleport
    reroute_period: float = Field(default=_SC.reroute_period, ge=0)
    summary_interval: float = Field(default=_SC.summary_interval, gt=0)
    mesa_agents: bool = _SC.mesa_agents
    detector_gap: float = Field(default=_SC.detector_gap, gt=0)
    max_gap: float = Field(default=_SC.max_gap, gt=0)
    warmup: float = Field(default=_SC.warmup, ge=0)

    @model_validator(mode="after")
    def _interval(self) -> Self:
        if self.summary_interval < self.dt:
            raise ValueError(f"summary_interval ({self.summary_interval:g}) must be >= dt "
                             f"({self.dt:g})")
        ratio = self.warmup / self.summary_interval
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"warmup ({self.warmup:g}) must be a multiple of "
                             f"summary_interval ({self.summary_interval:g})")
        return self

    def to_config(self) -> SimConfig:
        return SimConfig(**self.model_dump())


class DetectorSpec(_Table):
    """``[[detectors]]``: an induction loop on a lane."""

    id: str = Field(min_length=1)
    lane: str = Field(min_length=1)
    pos: float = Field(ge=0)


DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class HilSignalSpec(_Table):
    """``[[hil.signal]]``: a signal controller device that may rule a signalised junction."""

    id: DeviceId
    tls: str = Field(min_length=1)
    lockstep: bool = True
    min_green: float = Field(default=5.0, ge=0)
    yellow: float = Field(default=3.0, ge=0)
    red_clear: float = Field(default=1.0, ge=0)
    flash_hold: float = Field(default=30.0, ge=0)
    max_green: float = Field(default=40.0, gt=0)
    passage: float = Field(default=3.0, gt=0)


class HilDroneSpec(_Table):
    """``[[hil.drone]]``: a drone device and its home (metres, the network's frame)."""

    id: DeviceId
    home: Point
    lockstep: bool = True


class HilMeterSpec(_Table):
    """``[[hil.meter]]``: a meter device and the building whose load it measures."""

    id: DeviceId
    building: str = Field(min_length=1)
    xy: Point | None = None
    stale_after: float = Field(default=30.0, gt=0)
    lockstep: bool = True


class HilCommandSpec(_Table):
    """``[[hil.commands]]``: a command the simulator sends to a device at sim time ``at``."""

    at: float = Field(ge=0)
    device: DeviceId
    name: str = Field(min_length=1)
    args: dict[str, Any] = {}
    valid_for: float = Field(default=30.0, gt=0)


class HilSpec(_Table):
    """``[hil]``: devices that join the run over MQTT, and how the clock runs."""

    site: DeviceId = "lab"
    clock: Literal["fast", "realtime", "lockstep"] = "lockstep"
    factor: float = Field(default=1.0, gt=0)
    lockstep_deadline: float = Field(default=2.0, gt=0)
    offline_after: float = Field(default=10.0, gt=0)
    stale_ticks: int = Field(default=10, ge=0)
    wait_for_devices: float = Field(default=30.0, ge=0)
    signal: list[HilSignalSpec] = []
    drone: list[HilDroneSpec] = []
    meter: list[HilMeterSpec] = []
    commands: list[HilCommandSpec] = []

    @model_validator(mode="after")
    def _check(self) -> Self:
        ids = [d.id for d in self.signal] + [d.id for d in self.drone] + [
            d.id for d in self.meter]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate device id {dup[0]!r}")
        for k, c in enumerate(self.commands):
            if c.device not in ids:
                raise ValueError(f"commands[{k}].device: no device {c.device!r}")
        return self


class ScenarioSpec(_Table):
    """A whole scenario file."""

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(default=0, ge=0)
    duration: float | None = Field(default=None, gt=0)
    max_duration: float = Field(default=MAX_DURATION, gt=0)
    network: NetworkSpec
    demand: DemandSpec
    vtypes: list[VTypeSpec] = []
    simulation: SimulationSpec = Field(default_factory=SimulationSpec)
    detectors: list[DetectorSpec] = []
    signals: SignalsSpec = Field(default_factory=SignalsSpec)
    hil: HilSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.duration is not None and "max_duration" in self.model_fields_set:
            raise ValueError("set duration (run exactly that long) or max_duration (run "
                             "until every trip finished, at most that long), not both")
        ids = [v.id for v in self.vtypes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"vtypes: duplicate id {dup[0]!r}")
        ids = [d.id for d in self.detectors]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"detectors: duplicate id {dup[0]!r}")
        if self.signals.policy == "external" and not (self.hil and self.hil.signal):
            raise ValueError("signals.policy: 'external' needs signal devices "
                             "([[hil.signal]] tables)")
        return self
