"""Vehicles: the :class:`Vehicle` Mesa agent and the :class:`VehicleFleet` that holds their state.

The fleet keeps every vehicle's state in flat arrays (:class:`~citytwin.agents.kernels.state.
VehicleArrays`, one row per slot) and steps them all with one kernel call per phase. A
:class:`Vehicle` agent exists for each running vehicle (unless switched off) and reads and
writes its row, so ``city.agents_by_type[Vehicle]`` works as Mesa users expect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

from citytwin.agents.kernels import tick as tk
from citytwin.agents.kernels.state import TripArrays, TypeArrays, VehicleArrays
from citytwin.agents.kernels.tick import FleetArrays
from citytwin.agents.roads import RoadArrays

if TYPE_CHECKING:
    from collections.abc import Sequence

_VEH_DTYPES = {
    "alive": np.uint8, "vtype": np.int32, "lane": np.int32, "pos": np.float64,
    "speed": np.float64, "speed_next": np.float64, "cap": np.float64,
    "route_start": np.int64, "route_len": np.int32, "ridx": np.int32,
    "next_conn": np.int32, "last_conn": np.int32, "trip": np.int32, "dist": np.float64,
    "waiting": np.float64, "halt_cont": np.float64, "stops": np.int32,
    "time_loss": np.float64, "lc_time": np.float64, "coop": np.int32,
    "reach": np.float64, "reach_best": np.int32, "reach_left": np.float64,
    "reach_right": np.float64, "reach_lane": np.int32, "reach_at": np.int64,
    "link_wait": np.uint8,
}


class Vehicle(mesa.Agent):
    """A vehicle on the road. Its state is row ``slot`` of the fleet's arrays."""

    def __init__(self, model: mesa.Model, fleet: VehicleFleet, slot: int) -> None:
        super().__init__(model)
        self._fleet = fleet
        self.slot = slot
        self.trip = int(fleet.veh.trip[slot])
        self.vehicle_id: str = fleet.trip_ids[self.trip]

    @property
    def speed(self) -> float:
        """Current speed in m/s."""
        return float(self._fleet.veh.speed[self.slot])

    @speed.setter
    def speed(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"speed must be >= 0, got {value}")
        self._fleet.veh.speed[self.slot] = value

    @property
    def lane(self) -> int:
        """Index of the current lane (internal lanes are inside junctions)."""
        return int(self._fleet.veh.lane[self.slot])

    @property
    def position(self) -> float:
        """Position of the vehicle's front on its lane, in metres."""
        return float(self._fleet.veh.pos[self.slot])

    @property
    def edge(self) -> str | None:
        """Id of the current edge, or None inside a junction."""
        e = int(self._fleet.roads.lane_edge[self.lane])
        return self._fleet.edge_ids[e] if e >= 0 else None

    @property
    def route(self) -> list[str]:
        """Edge ids of the current route."""
        v = self._fleet.veh
        s, n = int(v.route_start[self.slot]), int(v.route_len[self.slot])
        return [self._fleet.edge_ids[e] for e in self._fleet.route_edges[s:s + n]]

    @property
    def waiting_time(self) -> float:
        """Seconds spent halting so far."""
        return float(self._fleet.veh.waiting[self.slot])

    def __repr__(self) -> str:
        return f"Vehicle({self.vehicle_id!r}, lane={self.lane}, pos={self.position:.1f})"


def type_arrays(vtypes: Sequence) -> TypeArrays:
    """Pack vehicle types (:class:`citytwin.model.demand.VehicleType`-like) into arrays."""
    def col(name: str) -> np.ndarray:
        return np.array([getattr(t, name) for t in vtypes], dtype=np.float64)
    return TypeArrays(col("length"), col("min_gap"), col("accel"), col("decel"),
                      col("emergency_decel"), col("max_speed"), col("tau"), col("delta"),
                      col("speed_factor"), col("priority"))


class VehicleFleet:
    """All vehicles of a city: demand rows, running slots and the per-tick kernel calls."""

    def __init__(self, roads: RoadArrays, edge_ids: list[str], types: TypeArrays,
                 trip_ids: list[str], depart: np.ndarray, trip_vtype: np.ndarray,
                 route_start: np.ndarray, route_len: np.ndarray, route_edges: np.ndarray,
                 depart_speed: np.ndarray, capacity: int = 1024) -> None:
        self.roads = roads
        self.edge_ids = edge_ids
        self.types = types
        self.trip_ids = trip_ids
        n = len(trip_ids)
        self.trips = TripArrays(
            depart=np.asarray(depart, np.float64), vtype=np.asarray(trip_vtype, np.int32),
            route_start=np.asarray(route_start, np.int64),
            route_len=np.asarray(route_len, np.int32),
            depart_speed=np.asarray(depart_speed, np.float64),
            state=np.zeros(n, np.uint8), t_insert=np.full(n, np.nan),
            arrival=np.full(n, np.nan), route_length=np.zeros(n), waiting=np.zeros(n),
            time_loss=np.zeros(n), stops=np.zeros(n, np.int32))
        self.route_edges = np.asarray(route_edges, np.int32)
        self.n_route = self.route_edges.size
        self.veh = _alloc(0)
        self.arrays = FleetArrays(order=np.empty(0, np.int32), tmp=np.empty(0, np.int32),
                                  free_slots=np.empty(0, np.int32),
                                  backlog=np.empty(max(n, 1), np.int32),
                                  inserted=np.empty(0, np.int32),
                                  arrived=np.empty(0, np.int32),
                                  counts=np.zeros(tk.N_COUNTS, np.int64))
        self._grow(max(16, min(capacity, n)))

    # -- capacity ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self.veh.alive.shape[0])

    def _grow(self, new_cap: int) -> None:
        old, a, c = self.capacity, self.arrays, self.arrays.counts
        veh = _alloc(new_cap)
        for name in _VEH_DTYPES:
            getattr(veh, name)[:old] = getattr(self.veh, name)
        self.veh = veh
        order = np.empty(new_cap, np.int32)
        order[:self.n_order] = a.order[:self.n_order]
        free = np.empty(new_cap, np.int32)
        n_free = self.n_free
        free[:n_free] = a.free_slots[:n_free]
        fresh = np.arange(new_cap - 1, old - 1, -1, dtype=np.int32)
        free[n_free:n_free + fresh.size] = fresh
        n_free += fresh.size
        # A stack ordered so that lower slots come out first.
        free[:n_free] = np.sort(free[:n_free])[::-1]
        c[tk.N_FREE] = n_free
        self.arrays = a._replace(order=order, tmp=np.empty(new_cap, np.int32), free_slots=free,
                                 inserted=np.empty(new_cap, np.int32),
                                 arrived=np.empty(new_cap, np.int32))

    def make_room(self, t: float) -> None:
        """Grow so that every trip due at ``t`` and every waiting one gets a slot."""
        due = int(np.searchsorted(self.trips.depart, t + 1e-9, side="right")) - self.next_trip
        need = self.n_order + self.n_backlog + due + 16
        self._grow(max(2 * self.capacity, need))

    def ensure_route_space(self, extra: int) -> None:
        """Make room for ``extra`` more edges in the route table."""
        if self.n_route + extra > self.route_edges.size:
            grown = np.empty(max(2 * self.route_edges.size, self.n_route + extra), np.int32)
            grown[:self.n_route] = self.route_edges[:self.n_route]
            self.route_edges = grown

    # -- counts -----------------------------------------------------------------------------
    @property
    def n_running(self) -> int:
        """Vehicles on the network now."""
        return int(self.arrays.counts[tk.N_ALIVE])

    @property
    def n_backlog(self) -> int:
        """Trips due but waiting for room to depart."""
        return int(self.arrays.counts[tk.N_BACKLOG])

    @property
    def n_order(self) -> int:
        """Entries of ``order``; may hold departed slots until the next sort."""
        return int(self.arrays.counts[tk.N_ORDER])

    @property
    def n_free(self) -> int:
        return int(self.arrays.counts[tk.N_FREE])

    @property
    def next_trip(self) -> int:
        """Trips are sorted by depart time; the first one not yet due."""
        return int(self.arrays.counts[tk.NEXT_TRIP])

    @property
    def order(self) -> np.ndarray:
        """Slots ordered by lane and position (first :attr:`n_order`)."""
        return self.arrays.order

    @property
    def pending(self) -> int:
        """Trips not yet due plus trips waiting for room to depart."""
        return len(self.trip_ids) - self.next_trip + self.n_backlog

    def last_tick(self) -> tuple[np.ndarray, np.ndarray]:
        """Slots inserted and slots that left in the last tick run."""
        a = self.arrays
        return (a.inserted[:a.counts[tk.LAST_INSERTED]], a.arrived[:a.counts[tk.LAST_OUT]])

    def memory_bytes(self) -> int:
        """Bytes of simulation state held for vehicles and trips."""
        arrays = [*self.veh, *self.trips, *self.arrays, self.route_edges]
        return int(sum(a.nbytes for a in arrays))


def _alloc(cap: int) -> VehicleArrays:
    arrays = {name: np.zeros(cap, dtype=dt) for name, dt in _VEH_DTYPES.items()}
    arrays["next_conn"][:] = -1
    arrays["last_conn"][:] = -1
    arrays["coop"][:] = -1
    arrays["reach_lane"][:] = -1
    return VehicleArrays(**arrays)
