"""Loop detectors (SUMO E1 induction loops) on lanes: the city's perception network.

A :class:`DetectorFleet` keeps count, presence, occupied time and last detection per detector
in arrays that the movement kernel updates as vehicles pass; a :class:`LoopDetector` agent reads
its row. Actuated signals read them, and later so will devices.
"""

from __future__ import annotations

from collections.abc import Sequence

import mesa
import numpy as np

from citytwin.agents.kernels.state import Detectors


class LoopDetector(mesa.Agent):
    """An induction loop at ``position`` metres along ``lane``."""

    def __init__(self, model: mesa.Model, fleet: DetectorFleet, index: int) -> None:
        super().__init__(model)
        self._fleet = fleet
        self.index = index
        self.detector_id: str = fleet.ids[index]

    @property
    def lane(self) -> int:
        return int(self._fleet.lane[self.index])

    @property
    def count(self) -> int:
        """Vehicles whose front passed the loop since the start."""
        return int(self._fleet.arrays.counts[self.index])

    @property
    def present(self) -> bool:
        """A vehicle is over the loop in the current tick."""
        return bool(self._fleet.arrays.present[self.index])

    @property
    def occupied_seconds(self) -> float:
        """Seconds the loop was occupied since the start."""
        return float(self._fleet.arrays.occupied[self.index])


class DetectorFleet:
    """All loop detectors of a city, grouped by lane for the kernels."""

    def __init__(self, n_lanes: int, ids: list[str], lane: Sequence[int] | np.ndarray,
                 pos: Sequence[float] | np.ndarray) -> None:
        self.ids = list(ids)
        self.lane = np.asarray(lane, np.int32)
        n = len(self.ids)
        by_lane = np.argsort(self.lane, kind="stable").astype(np.int32)
        ptr = np.zeros(n_lanes + 1, np.int32)
        np.add.at(ptr, self.lane + 1, 1)
        self.arrays = Detectors(
            lane_ptr=np.cumsum(ptr).astype(np.int32), by_lane=by_lane,
            pos=np.asarray(pos, np.float64), counts=np.zeros(n, np.int64),
            present=np.zeros(n, np.uint8), occupied=np.zeros(n),
            last_on=np.full(n, -1e18))

    def __len__(self) -> int:
        return len(self.ids)
