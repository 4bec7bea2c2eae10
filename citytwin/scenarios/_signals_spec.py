"""The ``[signals]`` table of a scenario file: the signal policy and its parameters.

Mirrors :class:`citytwin.model.signal_policy.SignalPolicy`; defaults come from it.
``docs/scenarios.md`` documents every key.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citytwin.model import signal_policy as sp
from citytwin.model.signal_plans import WebsterParams

_W, _A, _M, _S, _P = (WebsterParams(), sp.ActuatedParams(), sp.MaxPressureParams(),
                      sp.SotlParams(), sp.PreemptionParams())


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class WebsterSpec(_Table):
    """``[signals.fixed]``: Webster's method (also the splits of ``green-wave``)."""

    saturation_flow: float = Field(default=_W.saturation_flow, gt=0)
    lost_time: float | None = Field(default=None, ge=0)
    min_cycle: float = Field(default=_W.min_cycle, gt=0)
    max_cycle: float = Field(default=_W.max_cycle, gt=0)
    window: float = Field(default=_W.window, gt=0)
    permissive_factor: float = Field(default=_W.permissive_factor, ge=1)

    @model_validator(mode="after")
    def _cycles(self) -> Self:
        if self.max_cycle < self.min_cycle:
            raise ValueError(f"max_cycle ({self.max_cycle:g}) must be >= min_cycle "
                             f"({self.min_cycle:g})")
        return self


class ActuatedSpec(_Table):
    """``[signals.actuated]``."""

    min_green: float = Field(default=_A.min_green, gt=0)
    max_green: float = Field(default=_A.max_green, gt=0)
    max_gap: float = Field(default=_A.max_gap, gt=0)

    @model_validator(mode="after")
    def _greens(self) -> Self:
        if self.max_green < self.min_green:
            raise ValueError("max_green must be >= min_green")
        return self


class MaxPressureSpec(_Table):
    """``[signals.max_pressure]``."""

    min_green: float = Field(default=_M.min_green, gt=0)
    max_green: float = Field(default=_M.max_green, gt=0)
    headway: float = Field(default=_M.headway, ge=0)

    @model_validator(mode="after")
    def _greens(self) -> Self:
        if self.max_green < self.min_green:
            raise ValueError("max_green must be >= min_green")
        return self


class SotlSpec(_Table):
    """``[signals.sotl]``."""

    min_green: float = Field(default=_S.min_green, gt=0)
    theta: float = Field(default=_S.theta, gt=0)
    mu: float = Field(default=_S.mu, ge=0)
    near: float = Field(default=_S.near, gt=0)
    block: float = Field(default=_S.block, gt=0)


class GreenWaveSpec(_Table):
    """``[signals.green_wave]``."""

    arterial: list[str] | None = Field(default=None, min_length=2)
    speed: float | None = Field(default=None, gt=0)


class PreemptionSpec(_Table):
    """``[signals.preemption]``: green corridors for emergency vehicles."""

    enabled: bool = _P.enabled
    eta: float = Field(default=_P.eta, gt=0)
    max_hold: float = Field(default=_P.max_hold, gt=0)
    counterfactual: bool = _P.counterfactual


class SignalsSpec(_Table):
    """``[signals]``: the strategy every signalised junction runs."""

    policy: Literal["program", "fixed", "actuated", "max-pressure", "sotl", "green-wave",
                    "external"] = "program"
    yellow: float = Field(default=3.0, gt=0)
    all_red: float = Field(default=2.0, ge=0)
    min_green: float = Field(default=5.0, gt=0)
    detection_range: float = Field(default=100.0, gt=0)
    fixed: WebsterSpec = Field(default_factory=WebsterSpec)
    actuated: ActuatedSpec = Field(default_factory=ActuatedSpec)
    max_pressure: MaxPressureSpec = Field(default_factory=MaxPressureSpec)
    sotl: SotlSpec = Field(default_factory=SotlSpec)
    green_wave: GreenWaveSpec = Field(default_factory=GreenWaveSpec)
    preemption: PreemptionSpec = Field(default_factory=PreemptionSpec)

    def to_policy(self) -> sp.SignalPolicy:
        gw = self.green_wave
        return sp.SignalPolicy(
            policy=self.policy, yellow=self.yellow, all_red=self.all_red,
            min_green=self.min_green, detection_range=self.detection_range,
            webster=WebsterParams(**self.fixed.model_dump()),
            actuated=sp.ActuatedParams(**self.actuated.model_dump()),
            max_pressure=sp.MaxPressureParams(**self.max_pressure.model_dump()),
            sotl=sp.SotlParams(**self.sotl.model_dump()),
            green_wave=sp.GreenWaveParams(tuple(gw.arterial) if gw.arterial else None,
                                          gw.speed),
            preemption=sp.PreemptionParams(**self.preemption.model_dump()))
