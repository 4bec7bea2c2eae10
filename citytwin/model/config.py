"""Run options of a :class:`~citytwin.model.city.City`, validated once in one object."""

from __future__ import annotations

from dataclasses import dataclass

from citytwin.errors import ScenarioError


@dataclass(frozen=True)
class SimConfig:
    """How a city is stepped and measured.

    Attributes:
        dt: The fixed tick in seconds.
        time_to_teleport: A vehicle halting this long is teleported ahead on its route, as
            SUMO's ``--time-to-teleport`` does; ``<= 0`` disables teleports.
        reroute_period: Every this many seconds running vehicles re-plan their route by current
            travel times; ``0`` disables rerouting.
        summary_interval: Length in seconds of the intervals of ``summary.parquet`` and
            ``junctions.parquet``.
        mesa_agents: Create one Mesa :class:`~citytwin.agents.vehicles.Vehicle` agent per
            running vehicle (their state still lives in the fleet arrays). Switch off for
            million-vehicle runs where nobody looks at single vehicles.
        detector_gap: Distance of actuated-signal detectors from the stop line, in seconds of
            driving at the lane's speed limit (SUMO's ``detector-gap``).
        max_gap: An actuated green ends once no vehicle passed its detectors for this many
            seconds (SUMO's ``max-gap``).
        warmup: The signal KPIs (intersection wait, queue, throughput) count from this sim
            time on, s; a multiple of ``summary_interval``.
    """

    dt: float = 1.0
    time_to_teleport: float = 300.0
    reroute_period: float = 0.0
    summary_interval: float = 60.0
    mesa_agents: bool = True
    detector_gap: float = 2.0
    max_gap: float = 3.0
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.dt <= 10:
            raise ScenarioError(f"simulation.dt: must be in (0, 10] seconds, got {self.dt}")
        if self.reroute_period < 0:
            raise ScenarioError("simulation.reroute_period: must be >= 0")
        if self.summary_interval < self.dt:
            raise ScenarioError("simulation.summary_interval: must be >= dt")
        if self.max_gap <= 0 or self.detector_gap <= 0:
            raise ScenarioError("simulation.max_gap and detector_gap must be > 0")
        ratio = self.warmup / self.summary_interval
        if self.warmup < 0 or abs(ratio - round(ratio)) > 1e-9:
            raise ScenarioError("simulation.warmup: must be >= 0 and a multiple of "
                                "summary_interval")
