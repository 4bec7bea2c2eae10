"""Safety invariants checked after every tick of a running city (shared by several tests)."""

from __future__ import annotations

import numpy as np

from citytwin.agents.roads import RED
from citytwin.agents.vehicles import Vehicle
from citytwin.model.city import City


def step_checked(city: City, ticks: int) -> dict[str, int]:
    """Step and check safety invariants after every tick; returns counts of checks made."""
    net = city.network
    nn = net.n_normal_lanes
    length = city.fleet.types.length
    seen = {"entries": 0, "pairs": 0}
    for _ in range(ticks):
        prev_lane, prev_alive = city.fleet.veh.lane.copy(), city.fleet.veh.alive.copy()
        city.step()
        veh = city.fleet.veh  # re-read: the fleet may have grown during the step
        slots = np.flatnonzero(veh.alive)
        # No vehicle enters a junction on red.
        was = slots[slots < prev_alive.size]
        entered = was[(prev_alive[was] == 1) & (prev_lane[was] < nn) & (veh.lane[was] >= nn)]
        for i in entered:
            assert city.lanes.conn_state[veh.lane[i] - nn] != RED
        seen["entries"] += entered.size
        # No overlap between consecutive vehicles of a lane.
        o = slots[np.lexsort((veh.pos[slots], veh.lane[slots]))]
        same = veh.lane[o[1:]] == veh.lane[o[:-1]]
        gaps = (veh.pos[o[1:]] - length[veh.vtype[o[1:]]] - veh.pos[o[:-1]])[same]
        assert gaps.size == 0 or gaps.min() >= -1e-9
        seen["pairs"] += int(same.sum())
        # Crossing streams never share the junction: no two conflicting connections occupied.
        occupied = {int(x) - nn for x in veh.lane[slots] if x >= nn}
        for c in occupied:
            foes = net.conn_foe[net.conn_foe_ptr[c]:net.conn_foe_ptr[c + 1]]
            assert not occupied.intersection(foes.tolist())
        # Conservation.
        k = city.kpis()
        assert k["vehicles_inserted"] == (k["vehicles_arrived"] + k["vehicles_running_end"]
                                          + k["vehicles_teleported_out"])
        assert len(city.agents_by_type.get(Vehicle, [])) == city.fleet.n_running
    return seen
