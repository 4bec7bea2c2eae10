"""Buildings: a :class:`Building` agent carries an electrical load, measured by a meter.

The load is what the building's meter last reported; a reading older than ``stale_after``
seconds of sim time is marked stale (the load is kept, flagged, and counted). The city can ask
the meter to curtail the load to a limit or to open its relay.
"""

from __future__ import annotations

import math

import mesa


class Building(mesa.Agent):
    """A building with a metered load.

    Args:
        model: The city.
        building_id: Building id.
        xy: Position in the network's frame (metres), if known.
        stale_after: Seconds of sim time after which a reading is stale.
    """

    def __init__(self, model: mesa.Model, building_id: str, xy: tuple[float, float] | None,
                 stale_after: float) -> None:
        super().__init__(model)
        self.building_id = building_id
        self.xy = xy
        self.stale_after = stale_after
        self.load_w = 0.0
        self.energy_wh = 0.0
        self.relay = "closed"
        self.limit_w: float | None = None  # curtailment the city asked for (None: none)
        self.read_at = -math.inf  # sim time of the last reading

    def reading(self, t: float, energy_wh: float, power_w: float, relay: str) -> None:
        """Take a meter reading made at sim time ``t``."""
        self.energy_wh, self.load_w, self.relay, self.read_at = energy_wh, power_w, relay, t

    def stale(self, t: float) -> bool:
        """True if the last reading is older than ``stale_after`` at sim time ``t``."""
        return t - self.read_at > self.stale_after
