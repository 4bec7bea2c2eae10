"""Array bundles the traffic kernels take (plain arrays in named tuples, nothing else)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class VehicleArrays(NamedTuple):
    """Per-slot vehicle state; a slot is free when ``alive`` is 0."""

    alive: np.ndarray       # u1
    vtype: np.ndarray       # i4 index into TypeArrays
    lane: np.ndarray        # i4 current lane (normal or internal)
    pos: np.ndarray         # f8 front position on the lane, m
    speed: np.ndarray       # f8 m/s
    speed_next: np.ndarray  # f8 speed chosen for this tick by the follow kernel
    cap: np.ndarray         # f8 hard cap on the distance driven this tick (safety)
    route_start: np.ndarray  # i8 start of the route in the route table
    route_len: np.ndarray   # i4
    ridx: np.ndarray        # i4 index of the current edge within the route
    next_conn: np.ndarray   # i4 connection to leave the current normal lane by, -1 if none
    last_conn: np.ndarray   # i4 connection whose junction the vehicle's back still occupies
    trip: np.ndarray        # i4 trip index
    dist: np.ndarray        # f8 distance driven, m
    waiting: np.ndarray     # f8 total time halting (v < 0.1 m/s), s
    halt_cont: np.ndarray   # f8 current continuous halting time, s
    stops: np.ndarray       # i4 number of times the vehicle came to a halt
    time_loss: np.ndarray   # f8 s
    lc_time: np.ndarray     # f8 sim time of the last lane change
    coop: np.ndarray        # i4 vehicle this one holds back for this tick (-1: none; set by
    #                         the lane changes, cleared by the car-following that obeys it)
    reach: np.ndarray       # f8 cached lane-change reach of (reach_lane, reach_at)
    reach_best: np.ndarray  # i4 cached lane to head for when the reach is short (-1: none)
    reach_left: np.ndarray  # f8 cached reach of the lane to the left (-2: no lane)
    reach_right: np.ndarray  # f8 cached reach of the lane to the right (-2: no lane)
    reach_lane: np.ndarray  # i4 lane the cached reach is for (-1: none)
    reach_at: np.ndarray    # i8 route-table index (route_start + ridx) it is for
    link_wait: np.ndarray   # u1 1 if it stopped for a closed link or a wait point last tick


class TypeArrays(NamedTuple):
    """Per-vehicle-type parameters (IDM and dimensions)."""

    length: np.ndarray
    min_gap: np.ndarray
    accel: np.ndarray
    decel: np.ndarray
    emergency_decel: np.ndarray
    max_speed: np.ndarray
    tau: np.ndarray
    delta: np.ndarray
    speed_factor: np.ndarray
    priority: np.ndarray     # > 0: an emergency vehicle (others make way for it)


class TripArrays(NamedTuple):
    """Per-trip demand and results (one row per vehicle of the demand)."""

    depart: np.ndarray       # f8 desired depart time
    vtype: np.ndarray        # i4
    route_start: np.ndarray  # i8 initial route in the route table
    route_len: np.ndarray    # i4
    depart_speed: np.ndarray  # f8, -1 for "max"
    state: np.ndarray        # u1 0 pending, 1 running, 2 arrived, 3 teleported out
    t_insert: np.ndarray     # f8 actual depart (insertion) time
    arrival: np.ndarray      # f8
    route_length: np.ndarray  # f8
    waiting: np.ndarray      # f8
    time_loss: np.ndarray    # f8
    stops: np.ndarray        # i4


N_BUSY, N_TAILS, N_CONNS, N_CHANGED = 0, 1, 2, 3  # LaneState.counts


class LaneState(NamedTuple):
    """Per-tick views of lanes and connections computed by the prepass."""

    lane_span: np.ndarray    # i4[n_lanes, 2] a lane's vehicles are order[span[l, 0]:span[l, 1]]
    busy: np.ndarray         # i4[n_lanes] the lanes with vehicles, ascending (counts[N_BUSY])
    tail_back: np.ndarray    # f8[n_lanes] back position of the last vehicle (lane length if empty)
    tail_speed: np.ndarray   # f8[n_lanes] its speed (inf if empty)
    tails: np.ndarray        # i4[n_lanes] the lanes whose tail is not the empty one (N_TAILS)
    room: np.ndarray         # f8[n_lanes] room before the rearmost standing vehicle, less the
    #                          lengths with gap of the moving ones behind it (SUMO's
    #                          getSpaceTillLastStanding; lane length if empty)
    standing: np.ndarray     # u1[n_lanes] 1 if a vehicle stands on the lane, or the last one
    #                          stops for a closed link (SUMO's myHaveToWaitOnNextLink)
    brutto: np.ndarray       # f8[n_lanes] lengths with gap of the vehicles on the lane
    counts: np.ndarray       # i8[4] N_BUSY, N_TAILS, N_CONNS, N_CHANGED
    occ: np.ndarray          # i4[n_conns] vehicles whose front is inside each connection
    min_back: np.ndarray     # f8[n_conns] rearmost back position on each connection (inf: none)
    occ_go: np.ndarray       # i4[n_conns] the same two for the vehicles not standing at or
    min_back_go: np.ndarray  # f8[n_conns] before the connection's wait point
    reserved: np.ndarray     # f8[n_lanes] space claimed by vehicles inside junctions
    approach: np.ndarray     # f8[n_conns] earliest arrival time of a vehicle at each link
    approach_wait: np.ndarray  # f8[n_conns] halting time of that vehicle if standing, else -1
    conns: np.ndarray        # i4[n_conns] connections with any of the five figures above set
    conn_listed: np.ndarray  # u1[n_conns] 1 if in ``conns`` (N_CONNS of them)
    conn_state: np.ndarray   # u1[n_conns] link state this tick
    lc_stamp: np.ndarray     # i8[n_lanes] tick of the last lane change into a lane
    changed: np.ndarray      # i4[n_lanes] the lanes changed into this tick (N_CHANGED)
    edge_stamp: np.ndarray   # i8[n_edges] tick of the last failed insertion on an edge


class Detectors(NamedTuple):
    """Loop detectors (SUMO E1) on lanes; CSR by lane."""

    lane_ptr: np.ndarray     # i4[n_lanes+1]
    by_lane: np.ndarray      # i4 detector ids ordered by lane
    pos: np.ndarray          # f8[n_det] position on its lane
    counts: np.ndarray       # i8[n_det] vehicles whose front passed
    present: np.ndarray      # u1[n_det] a vehicle is over the loop this tick
    occupied: np.ndarray     # f8[n_det] seconds occupied (accumulated)
    last_on: np.ndarray      # f8[n_det] last time a vehicle was over or passed the loop


def new_lane_state(lane_length: np.ndarray, n_conns: int, n_edges: int,
                   conn_state: np.ndarray) -> LaneState:
    """The lane state of a network with no vehicle on it (every tail empty, every connection
    free)."""
    n_lanes = lane_length.shape[0]
    return LaneState(
        lane_span=np.zeros((n_lanes, 2), np.int32), busy=np.zeros(n_lanes, np.int32),
        tail_back=lane_length.astype(np.float64), tail_speed=np.full(n_lanes, np.inf),
        tails=np.zeros(n_lanes, np.int32), room=lane_length.astype(np.float64),
        standing=np.zeros(n_lanes, np.uint8), brutto=np.zeros(n_lanes),
        counts=np.zeros(4, np.int64),
        occ=np.zeros(n_conns, np.int32), min_back=np.full(n_conns, np.inf),
        occ_go=np.zeros(n_conns, np.int32), min_back_go=np.full(n_conns, np.inf),
        reserved=np.zeros(n_lanes), approach=np.full(n_conns, np.inf),
        approach_wait=np.full(n_conns, -1.0), conns=np.zeros(n_conns, np.int32),
        conn_listed=np.zeros(n_conns, np.uint8), conn_state=conn_state,
        lc_stamp=np.full(n_lanes, -1, np.int64), changed=np.zeros(n_lanes, np.int32),
        edge_stamp=np.full(n_edges, -1, np.int64))
