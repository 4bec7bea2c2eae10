"""Which signal strategy a city runs, with its parameters, and installing it on every junction.

:class:`SignalPolicy` is the validated ``[signals]`` table of a scenario (or built in Python).
:func:`controllers_for` turns it into one controller object per signal controller: Webster
plans and green waves are computed here from the routed demand (see
:mod:`citytwin.model.signal_plans`); adaptive strategies only carry their parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from citytwin.agents.controllers import (
    Actuated,
    ControlFleet,
    Controller,
    FixedTime,
    MaxPressure,
    Sotl,
    Timing,
)
from citytwin.model.signal_plans import (
    RoutedTrips,
    WebsterParams,
    busiest_route,
    green_wave_plans,
    link_flows,
    webster_plans,
)

#: Policy names (``[signals] policy``). ``program``: the network's own programs;
#: ``external``: devices over the HIL bridge rule their junctions, programs elsewhere.
POLICIES = ("program", "fixed", "actuated", "max-pressure", "sotl", "green-wave", "external")


@dataclass(frozen=True)
class ActuatedParams:
    min_green: float = 10.0
    max_green: float = 60.0
    max_gap: float = 3.0


@dataclass(frozen=True)
class MaxPressureParams:
    min_green: float = 6.0
    max_green: float = 60.0
    headway: float = 3.0


@dataclass(frozen=True)
class SotlParams:
    min_green: float = 5.0
    theta: float = 200.0
    mu: float = 3.0
    near: float = 25.0
    block: float = 10.0


@dataclass(frozen=True)
class GreenWaveParams:
    arterial: tuple[str, ...] | None = None
    speed: float | None = None


@dataclass(frozen=True)
class PreemptionParams:
    """Green corridors for emergency vehicles (vehicle types with priority > 0)."""

    enabled: bool = True
    eta: float = 30.0
    max_hold: float = 120.0
    counterfactual: bool = True


@dataclass(frozen=True)
class SignalPolicy:
    """The strategy of every signalised junction and its parameters."""

    policy: str = "program"
    yellow: float = 3.0
    all_red: float = 2.0
    min_green: float = 5.0
    detection_range: float = 100.0
    webster: WebsterParams = field(default_factory=WebsterParams)
    actuated: ActuatedParams = field(default_factory=ActuatedParams)
    max_pressure: MaxPressureParams = field(default_factory=MaxPressureParams)
    sotl: SotlParams = field(default_factory=SotlParams)
    green_wave: GreenWaveParams = field(default_factory=GreenWaveParams)
    preemption: PreemptionParams = field(default_factory=PreemptionParams)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown signal policy {self.policy!r}; use one of "
                             f"{', '.join(POLICIES)}")

    @property
    def staged(self) -> bool:
        """Does this policy run the stage machines (and so pre-emption)?"""
        return self.policy not in ("program", "external")

    @property
    def timing(self) -> Timing:
        return Timing(self.yellow, self.all_red, self.min_green)


def controllers_for(policy: SignalPolicy, control: ControlFleet, trips: RoutedTrips,
                    dt: float) -> tuple[list[Controller | None], list[dict[str, float]]]:
    """One controller per signal controller for ``policy``, and the plans' figures (Webster's
    ``Y``, ``L``, ``C0``, the cycle and offset) for fixed-time policies."""
    n = len(control)
    if not policy.staged:
        return [None] * n, [{} for _ in range(n)]
    if policy.policy in ("fixed", "green-wave"):
        flows = link_flows(control.network, trips, policy.webster.window)
        if policy.policy == "fixed":
            plans = webster_plans(control, flows, policy.timing, policy.webster, dt)
        else:
            arterial: Sequence[str] = (policy.green_wave.arterial
                                       or busiest_route(trips, control.network))
            plans = green_wave_plans(control, flows, policy.timing, policy.webster, dt,
                                     arterial, policy.green_wave.speed)
        out: list[Controller | None] = [FixedTime(p) for p, _ in plans]
        info = [{**fig, "cycle": p.cycle, "offset": p.offset} for p, fig in plans]
        return out, info
    if policy.policy == "actuated":
        a = policy.actuated
        return [Actuated(a.min_green, a.max_green, a.max_gap)] * n, [{} for _ in range(n)]
    if policy.policy == "max-pressure":
        m = policy.max_pressure
        return [MaxPressure(m.min_green, m.max_green, m.headway)] * n, [{} for _ in range(n)]
    s = policy.sotl
    return [Sotl(s.min_green, s.theta, s.mu)] * n, [{} for _ in range(n)]
