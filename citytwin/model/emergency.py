"""Emergency vehicles: which trips they are, and what their trips met.

A vehicle is an emergency vehicle when its type has ``priority > 0``. The control kernel
pre-empts signals ahead of them (green corridors) when the signal policy allows; the emergency
kernel counts the red (or yellow) signals each one met. :func:`emergency_table` gives one row
per emergency trip that arrived:

- ``red_signals``: signalised links that showed red or yellow while the vehicle was within
  its stopping distance plus one second of driving plus 10 m of the stop line;
- ``free_flow_s`` and ``delay_s``: the time the trip would take at the allowed speeds
  (``duration - time_loss``) and the delay against it (SUMO's ``timeLoss``);
- ``preempted``: junctions whose controller it requested;
- ``cross_trips`` and ``cross_delay_s``: the other trips that entered a junction it
  pre-empted from another edge while it was near (from its first request there to 120 s
  after its last one), and the time loss they had beyond a paired run of the same scenario,
  seed and policy without pre-emption (``baseline``); null without one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from citytwin.agents.kernels.control import EmergencyArrays

#: After its last request, a pre-emption still affects cross traffic this long, s.
RECOVERY_WINDOW = 120.0
#: Red signals met: reaction time (s) and margin (m) added to the stopping distance.
MEET_REACTION, MEET_MARGIN = 1.0, 10.0


def emergency_arrays(priorities: Sequence[int], trip_vtype: np.ndarray, route_len: np.ndarray,
                     *, preempt: bool, eta: float) -> EmergencyArrays:
    """The emergency arrays of a demand (trips whose vehicle type has priority > 0)."""
    prio = np.asarray(priorities, np.int64)
    is_ev = prio[trip_vtype] > 0 if prio.size else np.zeros(trip_vtype.size, bool)
    ev_trips = np.flatnonzero(is_ev)
    n = ev_trips.size
    trip_ev = np.full(trip_vtype.size, -1, np.int32)
    trip_ev[ev_trips] = np.arange(n, dtype=np.int32)
    room = 2 * route_len[ev_trips].astype(np.int64) + 8
    ptr = np.zeros(n + 1, np.int32)
    ptr[1:] = np.cumsum(room)
    m = int(ptr[-1])
    return EmergencyArrays(
        trip_ev=trip_ev, ev_trip=ev_trips.astype(np.int32), ev_slot=np.full(n, -1, np.int32),
        red=np.zeros(n, np.int32),
        last_red=np.full(n, -1, np.int32), log_ptr=ptr, log_n=np.zeros(n, np.int32),
        log_tls=np.zeros(m, np.int32), log_edge=np.zeros(m, np.int32), log_t0=np.zeros(m),
        log_t1=np.zeros(m),
        params=np.array([1.0 if preempt else 0.0, eta, MEET_REACTION, MEET_MARGIN]))


def emergency_trips(em: EmergencyArrays) -> np.ndarray:
    """Trip index of every emergency vehicle, in emergency-vehicle order."""
    return em.ev_trip.astype(np.int64)


def emergency_table(city, baseline=None) -> pa.Table:
    """One row per arrived emergency trip (see the module docstring); ``baseline`` is the
    same scenario and seed run without pre-emption (for ``cross_delay_s``)."""
    em, tr, net = city.emergency, city.fleet.trips, city.network
    ev_trip = emergency_trips(em)
    done = ev_trip[tr.state[ev_trip] == 2]
    rows: dict[str, list] = {k: [] for k in (
        "id", "vtype", "depart", "arrival", "duration", "free_flow_s", "delay_s",
        "delay_ratio", "red_signals", "preempted", "cross_trips", "cross_delay_s")}
    cross = _CrossTraffic(city, baseline) if baseline is not None else None
    for t in done.tolist():
        e = int(em.trip_ev[t])
        dur = float(tr.arrival[t] - tr.t_insert[t])
        loss = float(tr.time_loss[t])
        free = dur - loss
        lo, n = int(em.log_ptr[e]), int(em.log_n[e])
        entries = [(int(em.log_tls[q]), int(em.log_edge[q]), float(em.log_t0[q]),
                    float(em.log_t1[q])) for q in range(lo, lo + n)]
        rows["id"].append(city.fleet.trip_ids[t])
        rows["vtype"].append(city.vtypes[int(tr.vtype[t])].id)
        rows["depart"].append(float(tr.t_insert[t]))
        rows["arrival"].append(float(tr.arrival[t]))
        rows["duration"].append(dur)
        rows["free_flow_s"].append(free)
        rows["delay_s"].append(loss)
        rows["delay_ratio"].append(dur / free - 1.0 if free > 0 else float("nan"))
        rows["red_signals"].append(int(em.red[e]))
        rows["preempted"].append(len({k for k, _, _, _ in entries}))
        if cross is None or not entries:
            rows["cross_trips"].append(None if cross is None else 0)
            rows["cross_delay_s"].append(None if cross is None else 0.0)
        else:
            k_trips, extra = cross.extra(entries, net)
            rows["cross_trips"].append(k_trips)
            rows["cross_delay_s"].append(extra)
    types = {"id": pa.string(), "vtype": pa.string(), "red_signals": pa.int64(),
             "preempted": pa.int64(), "cross_trips": pa.int64()}
    return pa.table({k: pa.array(v, types.get(k, pa.float64())) for k, v in rows.items()})


class _CrossTraffic:
    """Which trips entered which junction from which edge, and their time loss in both runs."""

    def __init__(self, city, baseline) -> None:
        tr, b = city.fleet.trips, baseline.fleet.trips
        if tr.depart.size != b.depart.size or city.fleet.trip_ids != baseline.fleet.trip_ids:
            raise ValueError("the baseline run has a different demand")
        n = tr.depart.size
        lens = tr.route_len.astype(np.int64)
        self.trip_of = np.repeat(np.arange(n), lens)
        starts = np.repeat(tr.route_start, lens)
        within = np.arange(self.trip_of.size) - np.repeat(np.cumsum(lens) - lens, lens)
        self.edge = city.fleet.route_edges[starts + within]
        ok = (tr.state == 2) & (b.state == 2) & (city.emergency.trip_ev < 0)
        self.ok = ok
        self.t_in, self.t_out = tr.t_insert, tr.arrival
        self.delta = tr.time_loss - b.time_loss

    def extra(self, entries, net) -> tuple[int, float]:
        t0 = min(e[2] for e in entries)
        t1 = max(e[3] for e in entries) + RECOVERY_WINDOW
        hit = np.zeros(self.ok.size, bool)
        to_junction = net.edge_to[self.edge]
        for k, edge, _, _ in entries:
            mask = np.isin(to_junction, net.tls_junctions[k]) & (self.edge != edge)
            hit[self.trip_of[mask]] = True
        hit &= self.ok & (self.t_in <= t1) & (self.t_out >= t0)
        return int(hit.sum()), float(self.delta[hit].sum())
