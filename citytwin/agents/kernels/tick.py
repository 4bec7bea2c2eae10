"""The whole traffic tick as one kernel, and many ticks per call.

:func:`run_ticks` runs, per tick: signals, sort, lane changes (and the sort of the edges
they happened on), prepass, departures and insertion, car-following and movement, the return
of arrived slots to the free list and the folding of the tick's statistics into the run's
accumulators. Python calls it once per chunk of ticks (up to the next summary interval,
reroute or caller boundary), so the stepping loop pays no interpreter cost per tick;
``City.step`` calls it for a single tick.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from citytwin.agents.kernels._config import njit, njit_pipelined
from citytwin.agents.kernels.control import control_step
from citytwin.agents.kernels.emergency import emergency_step
from citytwin.agents.kernels.following import follow
from citytwin.agents.kernels.insertion import insert
from citytwin.agents.kernels.lanechange import lane_change
from citytwin.agents.kernels.order import merge_inserted, sort_by_lane, sort_changed
from citytwin.agents.kernels.signals import signals_step
from citytwin.agents.kernels.traffic import (
    S_ARRIVED,
    S_BLOCKED,
    S_EMERGENCY,
    S_HALTING,
    S_MOVED,
    S_OUT,
    S_SPEED,
    S_TELEPORTS,
    move,
    prepass,
)

# Fleet counters (``FleetArrays.counts``).
N_ORDER, N_FREE, N_BACKLOG, NEXT_TRIP, N_ALIVE, LAST_INSERTED, LAST_OUT = range(7)
N_COUNTS = 7

# Run accumulators (``MetricArrays.acc``): run totals, then the open summary interval.
(T_INSERTED, T_ARRIVED, T_TELEPORTS, T_OUT, T_EMERGENCY, T_BLOCKED, T_LANE_CHANGES,
 T_UPDATES, T_TICKS, I_TICKS, I_INSERTED, I_ARRIVED, I_SPEED, I_MOVED, I_HALTING,
 I_TELEPORTS) = range(16)
N_ACC = 16

# Why run_ticks returned.
DONE, NEED_ROOM, FINISHED = 0, 1, 2


class SignalArrays(NamedTuple):
    """Signal programs and their state (see :class:`citytwin.agents.signals.SignalFleet`)."""

    cur: np.ndarray
    elapsed: np.ndarray
    kind: np.ndarray
    phase_ptr: np.ndarray
    ph_dur: np.ndarray
    ph_min: np.ndarray
    ph_max: np.ndarray
    ph_green: np.ndarray
    ph_state_ptr: np.ndarray
    state_codes: np.ndarray
    ph_det_ptr: np.ndarray
    ph_det: np.ndarray
    switched: np.ndarray
    external: np.ndarray     # u1 an outside controller (device) rules it


class FleetArrays(NamedTuple):
    """Bookkeeping of the fleet besides per-vehicle state."""

    order: np.ndarray        # i4 slots sorted by lane and position (first counts[N_ORDER])
    tmp: np.ndarray          # i4 scratch for the sort
    free_slots: np.ndarray   # i4 stack of free slots (first counts[N_FREE])
    backlog: np.ndarray      # i4 trips due but not yet inserted (first counts[N_BACKLOG])
    inserted: np.ndarray     # i4 slots inserted in the last tick
    arrived: np.ndarray      # i4 slots that left in the last tick
    counts: np.ndarray       # i8[N_COUNTS]


class MetricArrays(NamedTuple):
    """Accumulators the kernels add into (see :class:`citytwin.model.metrics.Metrics`)."""

    junction_wait: np.ndarray
    junction_queue: np.ndarray
    junction_passed: np.ndarray
    queue_prev: np.ndarray
    queue_max: np.ndarray
    edge_speed_sum: np.ndarray
    edge_count: np.ndarray
    tick_stats: np.ndarray
    acc: np.ndarray


@njit_pipelined
def run_ticks(n_ticks, tick0, dt, ttt, max_gap, stop_when_done, sig, det, veh, types, roads,
              ls, trips, route_edges, fl, met, ctl, em):
    """Run up to ``n_ticks`` ticks starting at tick ``tick0``.

    ``ctl`` and ``em`` are the staged signal controllers and the emergency vehicles
    (:mod:`citytwin.agents.kernels.control`).

    Returns ``(ticks_done, why)``: ``DONE`` after all ticks; ``NEED_ROOM`` before a tick whose
    departures need more vehicle slots than are free (the caller grows the fleet and calls
    again); ``FINISHED`` when ``stop_when_done`` and no trip is left to run.
    """
    c = fl.counts
    n_trips = trips.depart.shape[0]
    for done in range(n_ticks):
        tick = tick0 + done
        t = tick * dt
        if stop_when_done and c[NEXT_TRIP] == n_trips and c[N_BACKLOG] == 0 \
                and c[N_ALIVE] == 0:
            return done, FINISHED
        due_end = c[NEXT_TRIP]
        while due_end < n_trips and trips.depart[due_end] <= t + 1e-9:
            due_end += 1
        if c[N_BACKLOG] + due_end - c[NEXT_TRIP] > c[N_FREE]:
            return done, NEED_ROOM

        if ctl.params[0] > 0.0:  # staged controllers (a call costs microseconds: bundles)
            control_step(t, dt, ctl, em, sig.state_codes, sig.external, det.last_on, veh,
                         types, roads, route_edges, trips, fl.order, c[N_ORDER])
        signals_step(t, dt, max_gap, sig.cur, sig.elapsed, sig.kind, sig.phase_ptr, sig.ph_dur,
                     sig.ph_min, sig.ph_max, sig.ph_green, sig.ph_state_ptr, sig.state_codes,
                     sig.ph_det_ptr, sig.ph_det, det.last_on, roads.conn_tls, roads.conn_link,
                     roads.tls_conns, ls.conn_state, sig.switched)
        n = sort_by_lane(fl.order, c[N_ORDER], veh.alive, veh.lane, veh.pos, fl.tmp, ls)
        changes = 0
        if n:
            changes = lane_change(fl.order, n, veh, types, roads, ls, route_edges, t, tick, dt)
            if changes and not sort_changed(fl.order, veh.lane, veh.pos, fl.tmp, ls,
                                            roads.lane_edge, roads.edge_first_lane,
                                            roads.edge_num_lanes):
                n = sort_by_lane(fl.order, n, veh.alive, veh.lane, veh.pos, fl.tmp, ls)
        prepass(fl.order, n, veh, types, roads, ls, route_edges, dt)

        nb = c[N_BACKLOG]
        for tr in range(c[NEXT_TRIP], due_end):
            if trips.route_len[tr] > 0:  # unroutable trips never depart
                fl.backlog[nb] = tr
                nb += 1
        c[NEXT_TRIP] = due_end
        n_sorted = n
        nb, n_free, n, n_ins = insert(fl.backlog, nb, trips, veh, types, roads, ls, route_edges,
                                      fl.free_slots, c[N_FREE], fl.order, n, t, tick,
                                      fl.inserted)
        c[N_ALIVE] += n_ins
        if n_ins:  # insertion kept the prepass's figures up to date; the order it cannot
            merge_inserted(fl.order, n_sorted, n_ins, veh.lane, fl.tmp, ls)

        n_on = c[N_ALIVE]
        follow(fl.order, n, veh, types, roads, ls, route_edges, dt, veh.speed_next, veh.cap)
        n_out = move(fl.order, n, veh, types, roads, ls, route_edges, trips, det, t, dt, ttt,
                     met.junction_wait, met.junction_queue, met.junction_passed,
                     met.edge_speed_sum, met.edge_count, fl.arrived, met.tick_stats)
        if em.ev_slot.shape[0]:
            emergency_step(em, veh, types, roads, ls, fl.inserted, n_ins, fl.arrived, n_out)
        for q in range(n_out):  # free the slots; the lowest is handed out first again
            fl.free_slots[n_free + q] = fl.arrived[n_out - 1 - q]
        n_free += n_out
        c[N_ALIVE] -= n_out
        c[N_ORDER], c[N_FREE], c[N_BACKLOG] = n, n_free, nb
        c[LAST_INSERTED], c[LAST_OUT] = n_ins, n_out
        _fold(met, n_on, n_ins, changes)
    return n_ticks, DONE


@njit
def _fold(met, n_on, n_ins, changes):
    """Add one tick's statistics to the run totals and the open interval."""
    s, a = met.tick_stats, met.acc
    a[T_INSERTED] += n_ins
    a[T_ARRIVED] += s[S_ARRIVED]
    a[T_TELEPORTS] += s[S_TELEPORTS]
    a[T_OUT] += s[S_OUT]
    a[T_EMERGENCY] += s[S_EMERGENCY]
    a[T_BLOCKED] += s[S_BLOCKED]
    a[T_LANE_CHANGES] += changes
    a[T_UPDATES] += n_on
    a[T_TICKS] += 1
    a[I_TICKS] += 1
    a[I_INSERTED] += n_ins
    a[I_ARRIVED] += s[S_ARRIVED]
    a[I_SPEED] += s[S_SPEED]
    a[I_MOVED] += s[S_MOVED]
    a[I_HALTING] += s[S_HALTING]
    a[I_TELEPORTS] += s[S_TELEPORTS]
    # junction_queue accumulates halting counts; this tick's count is the increase.
    for j in range(met.junction_queue.shape[0]):
        q = met.junction_queue[j] - met.queue_prev[j]
        if q > met.queue_max[j]:
            met.queue_max[j] = q
        met.queue_prev[j] = met.junction_queue[j]

