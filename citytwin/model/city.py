"""The city: a :class:`mesa.Model` that owns the clock, the network, the fleets and the metrics.

One :meth:`City.step` is one tick of ``config.dt`` seconds of sim time:

1. signal programs advance and publish link states;
2. vehicles are ordered by lane, change lanes, and due trips are inserted;
3. every vehicle chooses its speed (IDM, stop lines, right of way) and moves;
4. arrivals leave, metrics are folded in, and every ``reroute_period`` routes are re-planned.

Each phase is one kernel call over the whole fleet; Python runs per tick, never per vehicle
(except to create and remove the Mesa agent of a departing or arriving vehicle). Nothing here
reads the wall clock except to report how long stepping took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import mesa
import numba
import numpy as np
import pyarrow as pa

from citytwin.agents.controllers import ControlFleet
from citytwin.agents.detectors import DetectorFleet, LoopDetector
from citytwin.agents.kernels.routes import apply_routes
from citytwin.agents.kernels.state import new_lane_state
from citytwin.agents.kernels.tick import FINISHED, NEED_ROOM, run_ticks
from citytwin.agents.signals import SignalController, SignalFleet
from citytwin.agents.vehicles import Vehicle, VehicleFleet, type_arrays
from citytwin.errors import NetworkError, SimulationError
from citytwin.model.actuated import detector_layout
from citytwin.model.config import SimConfig
from citytwin.model.demand import Demand
from citytwin.model.emergency import emergency_arrays
from citytwin.model.metrics import Metrics
from citytwin.model.network import Network
from citytwin.model.routing import free_flow_times, route_trips, shortest_routes
from citytwin.model.signal_plans import RoutedTrips
from citytwin.model.signal_policy import SignalPolicy, controllers_for


class City(mesa.Model):
    """A city of roads, signals and vehicles.

    Args:
        network: The road network.
        demand: Vehicle types, trips and flows; flows are expanded with this model's rng.
        config: Run options (tick, teleports, rerouting, intervals).
        rng: Seed or numpy Generator; the only source of randomness.
        detectors: Extra loop detectors as ``(id, lane id, position m)``; actuated signals
            add their own.
        signals: The signal strategy of every junction (default: the network's programs).
        wall_clock: Clock used only to report ``step_wall_seconds``.

    Mesa's ``time`` counts steps; :attr:`sim_time` is the sim clock in seconds.
    """

    def __init__(self, network: Network, demand: Demand, *, config: SimConfig | None = None,
                 rng: int | np.random.Generator | None = None,
                 detectors: Sequence[tuple[str, str, float]] = (),
                 signals: SignalPolicy | None = None,
                 wall_clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(rng=rng)
        self.network = network
        self.config = config or SimConfig()
        self._wall_clock = wall_clock
        self.sim_time = 0.0
        self.tick = 0
        self.step_wall_seconds = 0.0
        roads = network.arrays
        self.roads = roads

        trips = demand.expand(self.rng)
        vtype_ids = list(demand.vtypes)
        vt_index = {v: k for k, v in enumerate(vtype_ids)}
        self.vtypes = [demand.vtypes[v] for v in vtype_ids]
        start, length, edges = route_trips(network, trips)
        self.vehicles_unroutable = int(np.count_nonzero(length == 0))
        self.fleet = VehicleFleet(
            roads, network.edge_ids, type_arrays(self.vtypes), [t.id for t in trips],
            np.array([t.depart for t in trips], np.float64),
            np.array([vt_index[t.vtype] for t in trips], np.int32), start, length, edges,
            np.array([-1.0 if t.depart_speed == "max" else float(t.depart_speed)
                      for t in trips], np.float64))

        n_lanes, n_conns = network.n_lanes, network.n_connections
        self.signal_policy = signals or SignalPolicy()
        layout = detector_layout(network, self.config.detector_gap,
                                 self.signal_policy.policy == "actuated")
        det_ids, det_lane, det_pos = layout.ids, layout.lanes, layout.pos
        for det_id, lane_id, pos in detectors:
            lane = network.lane(lane_id)
            if not 0 <= pos <= network.lane_length[lane]:
                raise NetworkError(f"detector {det_id!r}: position {pos} is outside lane "
                                   f"{lane_id!r} (0..{network.lane_length[lane]:.1f} m)")
            if det_id in det_ids:
                raise NetworkError(f"duplicate detector id {det_id!r}")
            det_ids.append(det_id)
            det_lane.append(lane)
            det_pos.append(float(pos))
        self.detectors = DetectorFleet(n_lanes, det_ids, det_lane, det_pos)
        self.signals = SignalFleet(network.programs, layout.of_phase, n_conns, self.config.dt)
        self._install_signals(layout.of_lane, trips)
        self.lanes = new_lane_state(network.lane_length, n_conns, network.n_edges,
                                    network.conn_static.copy())
        has_conn = np.zeros(network.n_junctions, bool)
        has_conn[network.conn_junction] = True
        signalised = np.zeros(network.n_junctions, bool)
        signalised[network.conn_junction[network.conn_tls >= 0]] = True
        self.metrics = Metrics(network.n_junctions, network.n_edges, network.junction_ids,
                               has_conn, signalised=signalised, warmup=self.config.warmup)
        self._travel_times = free_flow_times(network)
        self._vehicle_agents: dict[int, Vehicle] = {}
        for k in range(len(self.signals)):
            SignalController(self, self.signals, k)
        for k in range(len(self.detectors)):
            LoopDetector(self, self.detectors, k)
        self.datacollector = mesa.DataCollector(model_reporters={
            "running": lambda m: m.fleet.n_running,
            "waiting_to_depart": lambda m: m.fleet.n_backlog,
            "arrived": lambda m: m.metrics.totals["vehicles_arrived"],
        })
        self.datacollector.collect(self)

    # -- construction helpers -------------------------------------------------------------
    def _install_signals(self, det_of_lane: dict[int, int], trips: list) -> None:
        """The staged controllers of the signal policy, and the emergency vehicles."""
        pol, net, fleet = self.signal_policy, self.network, self.fleet
        self.control = ControlFleet(
            net, det_of_lane, [self.signals.state_row(k) for k in range(len(self.signals))],
            pol.detection_range, pol.sotl.near, pol.sotl.block)
        self.signals.attach_control(self.control)
        self.signals.timing, self.signals.max_hold = pol.timing, pol.preemption.max_hold
        known = np.array([t.planned for t in trips], bool)  # what fixed plans are made for
        routed = RoutedTrips(fleet.trips.depart[known], fleet.trips.route_start[known],
                             fleet.trips.route_len[known], fleet.route_edges)
        controllers, self.signal_plans = controllers_for(pol, self.control, routed,
                                                         self.config.dt)
        for k, ctl in enumerate(controllers):
            if ctl is not None:
                self.signals.set_controller(k, ctl)
        self.emergency = emergency_arrays(
            [v.priority for v in self.vtypes], fleet.trips.vtype, fleet.trips.route_len,
            preempt=pol.staged and pol.preemption.enabled, eta=pol.preemption.eta)

    # -- stepping ---------------------------------------------------------------------------
    def compile(self) -> None:
        """Load the compiled kernels (compiling them on a machine's first run) now, so that
        the first step's wall time, and ``step_wall_seconds``, do not include it."""
        self._run_ticks(0, stop_when_done=False)

    def step(self) -> None:
        """Advance the city by one tick."""
        t0 = self._wall_clock()
        try:
            self._advance(1, stop_when_done=False)
        finally:
            self.step_wall_seconds += self._wall_clock() - t0

    def _advance(self, n_ticks: int, stop_when_done: bool) -> int:
        """Run up to ``n_ticks`` ticks in chunks that end at every summary interval and
        reroute; returns the ticks run (fewer when ``stop_when_done`` and all trips ended)."""
        cfg, fleet = self.config, self.fleet
        ran = 0
        while ran < n_ticks:
            chunk = min(n_ticks - ran, self._ticks_to_boundary())
            done, why = self._run_ticks(chunk, stop_when_done)
            ran += done
            self.tick += done
            self.sim_time = self.tick * cfg.dt
            if done:
                self._sync_agents(single_tick=done == 1)
                if self.metrics.interval_ticks * cfg.dt >= cfg.summary_interval - 1e-9:
                    self._close_interval()
                if cfg.reroute_period > 0 and self.sim_time % cfg.reroute_period < cfg.dt / 2:
                    self.reroute()
            if why == NEED_ROOM:
                fleet.make_room(self.sim_time)
            elif why == FINISHED:
                break
        return ran

    def _run_ticks(self, n_ticks: int, stop_when_done: bool) -> tuple[int, int]:
        """One call of the tick kernel on the city's current arrays: ``(ticks run, why)``.

        The kernel runs with one numba thread (this thread's setting, restored after). No
        kernel runs on several cores (:mod:`citytwin.agents.kernels._config`), but those
        compiled with numba's parallel pipeline still open OpenMP regions; with numba's
        default thread count their workers spin between calls, and two simulations on a
        2-core machine (``citytwin compare --workers 2``, a sweep) each ran 3-16x slower.
        """
        cfg, fleet = self.config, self.fleet
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return run_ticks(n_ticks, self.tick, cfg.dt, cfg.time_to_teleport, cfg.max_gap,
                             stop_when_done, self.signals.arrays, self.detectors.arrays,
                             fleet.veh, fleet.types, self.roads, self.lanes, fleet.trips,
                             fleet.route_edges, fleet.arrays, self.metrics.arrays,
                             self.control.arrays, self.emergency)
        finally:
            numba.set_num_threads(threads)

    def _ticks_to_boundary(self) -> int:
        """Ticks until the next summary interval closes or the next reroute is due."""
        cfg = self.config
        left = cfg.summary_interval - self.metrics.interval_ticks * cfg.dt
        n = max(1, math.ceil(left / cfg.dt - 1e-9))
        if cfg.reroute_period > 0:
            for k in range(1, n + 1):
                if ((self.tick + k) * cfg.dt) % cfg.reroute_period < cfg.dt / 2:
                    return k
        return n

    def _sync_agents(self, single_tick: bool) -> None:
        """Give every running vehicle its Mesa agent and remove those of vehicles gone."""
        if not self.config.mesa_agents:
            return
        fleet, agents = self.fleet, self._vehicle_agents
        if single_tick:
            inserted, gone = fleet.last_tick()
            for slot in gone.tolist():
                agents.pop(slot).remove()
            for slot in inserted.tolist():
                agents[slot] = Vehicle(self, fleet, slot)
            return
        veh = fleet.veh
        for slot in [s for s, a in agents.items()
                     if not veh.alive[s] or veh.trip[s] != a.trip]:
            agents.pop(slot).remove()
        for slot in np.flatnonzero(veh.alive).tolist():
            if slot not in agents:
                agents[slot] = Vehicle(self, fleet, slot)

    def _close_interval(self) -> None:
        self.metrics.close_interval(self.sim_time, self.fleet.n_running, self.fleet.n_backlog)
        self.datacollector.collect(self)

    def run_for(self, seconds: float, callback: Callable[[float], None] | None = None) -> None:
        """Step for ``seconds`` of sim time.

        Ticks run in chunks inside one compiled kernel; ``callback(sim_time)`` is called after
        every chunk (at least once per summary interval). Use :meth:`step` to act between
        single ticks.

        Raises:
            SimulationError: a kernel failed (the message says at which sim time).
        """
        self._run(round(seconds / self.config.dt), False, callback)

    def run_until_done(self, max_seconds: float,
                       callback: Callable[[float], None] | None = None) -> None:
        """Step until every trip has arrived (or left) or ``max_seconds`` have passed."""
        self._run(max(0, math.ceil((max_seconds - self.sim_time) / self.config.dt - 1e-9)), True,
                  callback)

    def _run(self, n: int, stop_when_done: bool,
             callback: Callable[[float], None] | None) -> None:
        t0 = self._wall_clock()
        try:
            while n > 0:
                done = self._advance(min(n, self._ticks_to_boundary()), stop_when_done)
                n -= done
                if callback is not None and done:
                    callback(self.sim_time)
                if done == 0 or (stop_when_done and self.finished):
                    break
        except (ValueError, IndexError, FloatingPointError) as exc:
            raise SimulationError(f"stepping failed at t={self.sim_time:g} s: {exc}") from exc
        finally:
            self.step_wall_seconds += self._wall_clock() - t0

    # -- rerouting --------------------------------------------------------------------------
    def reroute(self) -> int:
        """Re-plan the routes of running vehicles by current travel times (SUMO's rerouting
        device). Returns how many routes changed."""
        net, fleet, veh = self.network, self.fleet, self.fleet.veh
        m = self.metrics
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_v = m.edge_speed_sum / m.edge_count
        measured = net.edge_length / np.maximum(mean_v, 0.1 * net.edge_speed)
        fresh = np.where(m.edge_count > 0, measured, free_flow_times(net))
        self._travel_times = 0.5 * self._travel_times + 0.5 * fresh
        m.edge_speed_sum[:] = 0.0
        m.edge_count[:] = 0
        slots = fleet.order[:fleet.n_order]
        lanes = veh.lane[slots]
        ok = (lanes < net.n_normal_lanes) & (veh.ridx[slots] < veh.route_len[slots] - 1)
        slots = slots[ok]
        if slots.size == 0:
            return 0
        cur = net.lane_edge[veh.lane[slots]]
        dest = fleet.route_edges[veh.route_start[slots] + veh.route_len[slots] - 1]
        ptr, edges = shortest_routes(net, cur, dest, self._travel_times)
        fleet.ensure_route_space(int(edges.size))
        changed, fleet.n_route = apply_routes(
            slots, ptr, edges, veh.lane, veh.pos, veh.route_start, veh.route_len, veh.ridx,
            veh.next_conn, veh.reach_lane, fleet.route_edges, fleet.n_route,
            self.roads.lane_length,
            self.roads.lane_out_ptr, self.roads.lane_out, self.roads.conn_to_edge,
            self.roads.conn_to_lane)
        return int(changed)

    # -- results ----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once every trip has departed and left the network."""
        return self.fleet.pending == 0 and self.fleet.n_running == 0

    def kpis(self) -> dict[str, float | int]:
        """Key figures of the run so far (see docs for each key's meaning)."""
        tr = self.fleet.trips
        done = tr.state == 2
        dur = tr.arrival[done] - tr.t_insert[done]
        tot = self.metrics.totals

        def mean(x: np.ndarray) -> float:
            return float(np.mean(x)) if x.size else float("nan")

        wall = self.step_wall_seconds
        return {
            "sim_seconds": self.sim_time,
            "ticks": tot["ticks"],
            "vehicles_demand": len(self.fleet.trip_ids),
            "vehicles_unroutable": self.vehicles_unroutable,
            "vehicles_inserted": tot["vehicles_inserted"],
            "vehicles_arrived": tot["vehicles_arrived"],
            "vehicles_running_end": self.fleet.n_running,
            "vehicles_waiting_end": self.fleet.n_backlog,
            "vehicles_teleported_out": tot["vehicles_teleported_out"],
            "teleports": tot["teleports"],
            "emergency_brakes": tot["emergency_brakes"],
            "junction_blocks": tot["junction_blocks"],
            "lane_changes": tot["lane_changes"],
            "mean_duration_s": mean(dur),
            "mean_time_loss_s": mean(tr.time_loss[done]),
            "mean_waiting_time_s": mean(tr.waiting[done]),
            "mean_depart_delay_s": mean(tr.t_insert[done] - tr.depart[done]),
            "mean_route_length_m": mean(tr.route_length[done]),
            "vehicle_updates": tot["vehicle_updates"],
            **self._signal_kpis(),
            "step_wall_seconds": wall,
            "updates_per_second": tot["vehicle_updates"] / wall if wall > 0 else float("nan"),
        }

    def _signal_kpis(self) -> dict[str, float | int]:
        """Signal KPIs (with signals) and emergency KPIs (with emergency vehicles)."""
        out: dict[str, float | int] = {}
        if self.metrics.signal_rows.size:
            out.update(self.metrics.signal_kpis(self.sim_time))
            out["signal_switches"] = int(self.control.arrays.switches.sum())
            out["preemptions"] = int(self.control.arrays.preemptions.sum())
        tr, em = self.fleet.trips, self.emergency
        if em.ev_slot.size == 0:
            return out
        ev = np.flatnonzero((em.trip_ev >= 0) & (tr.state == 2))
        red = em.red[em.trip_ev[ev]]
        return {
            **out,
            "emergency_trips": int(ev.size),
            "emergency_red_signals": float(red.mean()) if ev.size else float("nan"),
            "emergency_delay_s": float(tr.time_loss[ev].mean()) if ev.size else float("nan"),
        }

    def trips_table(self) -> pa.Table:
        """One row per finished trip, SUMO tripinfo semantics, in order of arrival."""
        tr = self.fleet.trips
        idx = np.flatnonzero(tr.state == 2)
        idx = idx[np.lexsort((idx, tr.arrival[idx]))]
        depart = tr.t_insert[idx]
        return pa.table({
            "id": pa.array([self.fleet.trip_ids[i] for i in idx.tolist()], pa.string()),
            "vtype": pa.array([self.vtypes[v].id for v in tr.vtype[idx].tolist()], pa.string()),
            "depart": pa.array(depart, pa.float64()),
            "arrival": pa.array(tr.arrival[idx], pa.float64()),
            "duration": pa.array(tr.arrival[idx] - depart, pa.float64()),
            "route_length": pa.array(tr.route_length[idx], pa.float64()),
            "waiting_time": pa.array(tr.waiting[idx], pa.float64()),
            "time_loss": pa.array(tr.time_loss[idx], pa.float64()),
            "depart_delay": pa.array(depart - tr.depart[idx], pa.float64()),
            "stops": pa.array(tr.stops[idx], pa.int64()),
        })

    def summary_table(self) -> pa.Table:
        """Per-interval network state (closes a partial last interval first)."""
        if self.metrics.interval_ticks:
            self._close_interval()
        return self.metrics.summary_table()

    def junctions_table(self) -> pa.Table:
        """Per junction and interval: vehicles through, mean wait, mean and max queue."""
        if self.metrics.interval_ticks:
            self._close_interval()
        return self.metrics.junctions_table()
