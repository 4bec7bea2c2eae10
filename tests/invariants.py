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
    seen = {"entries": 0, "pairs": 0, "conflicts": 0}
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
        # Crossing streams never share a conflict point: of two foe connections, at most one
        # holds a vehicle in their conflict zone (front past where its path meets the
        # other's, back short of where it has left it; for a merge, front past the merge).
        # A vehicle waiting at its connection's wait point is short of the zone.
        inside = slots[veh.lane[slots] >= nn]
        spans: dict[int, list[tuple[float, float]]] = {}
        for i in inside:
            c = int(veh.lane[i]) - nn
            spans.setdefault(c, []).append((veh.pos[i], veh.pos[i] - length[veh.vtype[i]]))
        for c in spans:
            for q in range(net.conn_foe_ptr[c], net.conn_foe_ptr[c + 1]):
                f = int(net.conn_foe[q])
                if f not in spans or net.conn_foe_clear[q] < 0:
                    continue
                q_back = _entry(net, f, c)
                c_in = _in_zone(spans[c], net.conn_foe_at[q], net.conn_foe_clear[q_back])
                f_in = _in_zone(spans[f], net.conn_foe_at[q_back], net.conn_foe_clear[q])
                assert not (c_in and f_in), (
                    f"connections {c} and {f} both hold a vehicle in their conflict zone")
            seen["conflicts"] += 1
        # Conservation.
        k = city.kpis()
        assert k["vehicles_inserted"] == (k["vehicles_arrived"] + k["vehicles_running_end"]
                                          + k["vehicles_teleported_out"])
        assert len(city.agents_by_type.get(Vehicle, [])) == city.fleet.n_running
    return seen


def _entry(net, c: int, f: int) -> int:
    """Index of ``f`` in the foe list of ``c``."""
    lo, hi = net.conn_foe_ptr[c], net.conn_foe_ptr[c + 1]
    return lo + int(np.flatnonzero(net.conn_foe[lo:hi] == f)[0])


def _in_zone(spans: list[tuple[float, float]], at: float, clear: float) -> bool:
    """Does a vehicle (front, back) reach past ``at`` with its back short of ``clear``?"""
    return any(front > at + 1e-9 and back < clear for front, back in spans)
