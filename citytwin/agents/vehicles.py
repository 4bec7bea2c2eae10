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

from citytwin.agents.kernels import traffic
from citytwin.agents.kernels.insertion import insert
from citytwin.agents.kernels.lanechange import lane_change
from citytwin.agents.kernels.state import LaneState, TripArrays, TypeArrays, VehicleArrays
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
}


class Vehicle(mesa.Agent):
    """A vehicle on the road. Its state is row ``slot`` of the fleet's arrays."""

    def __init__(self, model: mesa.Model, fleet: VehicleFleet, slot: int) -> None:
        super().__init__(model)
        self._fleet = fleet
        self.slot = slot
        self.vehicle_id: str = fleet.trip_ids[int(fleet.veh.trip[slot])]

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
                      col("speed_factor"))


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
        self._next_trip = 0  # trips are sorted by depart; first not yet due
        self.backlog = np.empty(max(n, 1), np.int32)
        self.n_backlog = 0
        self.veh = _alloc(0)
        self.order = np.empty(0, np.int32)
        self._tmp = np.empty(0, np.int32)
        self.free_slots = np.empty(0, np.int32)
        self.n_free = 0
        self.n_order = 0  # entries of ``order``; may hold departed slots until the next sort
        self._n_alive = 0
        self._inserted = np.empty(0, np.int32)
        self._arrived = np.empty(0, np.int32)
        self._grow(max(16, min(capacity, n)))

    # -- capacity ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self.veh.alive.shape[0])

    def _grow(self, new_cap: int) -> None:
        old = self.capacity
        veh = _alloc(new_cap)
        for name in _VEH_DTYPES:
            getattr(veh, name)[:old] = getattr(self.veh, name)
        self.veh = veh
        order = np.empty(new_cap, np.int32)
        order[:self.n_order] = self.order[:self.n_order]
        self.order = order
        self._tmp = np.empty(new_cap, np.int32)
        free = np.empty(new_cap, np.int32)
        free[:self.n_free] = self.free_slots[:self.n_free]
        # New slots are handed out lowest first (the stack pops from the end).
        fresh = np.arange(new_cap - 1, old - 1, -1, dtype=np.int32)
        free[self.n_free:self.n_free + fresh.size] = fresh
        # Keep the stack ordered so lower slots come out first.
        self.free_slots = free
        self.n_free += fresh.size
        self.free_slots[:self.n_free] = np.sort(self.free_slots[:self.n_free])[::-1]
        self._inserted = np.empty(new_cap, np.int32)
        self._arrived = np.empty(new_cap, np.int32)

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
        return self._n_alive

    def due(self, t: float) -> None:
        """Move trips whose depart time has come into the insertion backlog."""
        d = self.trips.depart
        j = int(np.searchsorted(d, t + 1e-9, side="right"))
        if j > self._next_trip:
            new = np.arange(self._next_trip, j, dtype=np.int32)
            new = new[self.trips.route_len[new] > 0]  # unroutable trips never depart
            self.backlog[self.n_backlog:self.n_backlog + new.size] = new
            self.n_backlog += new.size
            self._next_trip = j

    @property
    def pending(self) -> int:
        """Trips not yet due plus trips waiting for room to depart."""
        return len(self.trip_ids) - self._next_trip + self.n_backlog

    # -- per tick ---------------------------------------------------------------------------
    def sort(self, ls: LaneState) -> None:
        """Order running vehicles by lane and position."""
        self.n_order = traffic.sort_by_lane(self.order, self.n_order, self.veh.alive,
                                            self.veh.lane, self.veh.pos,
                                            self.roads.lane_length.shape[0], self._tmp,
                                            ls.lane_start)

    def change_lanes(self, ls: LaneState, t: float, tick: int, dt: float) -> int:
        """Lane changes of this tick; returns how many happened."""
        return int(lane_change(self.order, self.n_order, self.veh, self.types, self.roads, ls,
                               self.route_edges, t, tick, dt))

    def prepass(self, ls: LaneState) -> None:
        """Lane tails, junction occupancy and approach times for this tick."""
        traffic.prepass(self.order, self.n_order, self.veh, self.types, self.roads, ls)

    def drive(self, ls: LaneState, det, t: float, dt: float, ttt: float, jstats: tuple,
              estats: tuple, stats: np.ndarray) -> np.ndarray:
        """Car-following and movement. Returns the slots that left the network."""
        traffic.follow(self.order, self.n_order, self.veh, self.types, self.roads, ls,
                       self.route_edges, dt)
        n_out = traffic.move(self.order, self.n_order, self.veh, self.types, self.roads, ls,
                             self.route_edges, self.trips, det, t, dt, ttt, *jstats, *estats,
                             self._arrived, stats)
        return self._arrived[:n_out]

    def insert(self, ls: LaneState, t: float, tick: int) -> np.ndarray:
        """Insert due trips where there is room. Returns the new slots."""
        self.due(t)
        if self.n_backlog > self.n_free:
            self._grow(max(2 * self.capacity, self.n_order + self.n_backlog + 16))
        nb, n_free, n_order, n_ins = insert(
            self.backlog, self.n_backlog, self.trips, self.veh, self.types, self.roads, ls,
            self.route_edges, self.free_slots, self.n_free, self.order, self.n_order, t, tick,
            self._inserted)
        self.n_backlog, self.n_free, self.n_order = int(nb), int(n_free), int(n_order)
        self._n_alive += int(n_ins)
        return self._inserted[:n_ins]

    def release(self, slots: np.ndarray) -> None:
        """Return the slots of vehicles that left to the free list."""
        k = slots.size
        self._n_alive -= k
        self.free_slots[self.n_free:self.n_free + k] = slots[::-1]
        self.n_free += k

    def memory_bytes(self) -> int:
        """Bytes of simulation state held for vehicles and trips."""
        arrays = [*self.veh, *self.trips, self.order, self._tmp, self.free_slots,
                  self.route_edges, self.backlog, self._inserted, self._arrived]
        return int(sum(a.nbytes for a in arrays))


def _alloc(cap: int) -> VehicleArrays:
    arrays = {name: np.zeros(cap, dtype=dt) for name, dt in _VEH_DTYPES.items()}
    arrays["next_conn"][:] = -1
    arrays["last_conn"][:] = -1
    arrays["coop"][:] = -1
    return VehicleArrays(**arrays)
