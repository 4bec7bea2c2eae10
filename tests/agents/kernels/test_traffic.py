"""The traffic kernels against the slow references in tests/naive.py."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from citytwin.agents.kernels import idm
from citytwin.agents.kernels.order import merge_inserted, sort_by_lane, sort_changed
from citytwin.agents.kernels.routes import find_conn
from citytwin.agents.kernels.state import N_BUSY, N_CHANGED, new_lane_state
from tests import naive

DATA = Path(__file__).parents[2] / "data"


def _lanes(n_lanes):
    return new_lane_state(np.full(n_lanes, 100.0), 0, 1, np.zeros(0, np.uint8))


def _assert_indexed(ls, order, m, expect_start):
    """``ls`` indexes ``order[:m]`` as the CSR ``expect_start`` does."""
    n_lanes = expect_start.shape[0] - 1
    busy = [lane for lane in range(n_lanes) if expect_start[lane + 1] > expect_start[lane]]
    assert ls.busy[:ls.counts[N_BUSY]].tolist() == busy
    for lane in range(n_lanes):
        s, e = (expect_start[lane], expect_start[lane + 1]) if lane in busy else (0, 0)
        assert tuple(ls.lane_span[lane]) == (s, e), lane


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(1, 12), st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_sort_by_lane_matches_reference(n, n_lanes, seed, ticks):
    """Sorted from scratch, then tick after tick: some vehicles move on, change lanes,
    overtake or leave (ties in position included); every sort is the reference's."""
    rng = np.random.default_rng(seed)
    cap = n + 5
    alive = (rng.random(cap) < 0.8).astype(np.uint8)
    lane = rng.integers(0, n_lanes, cap).astype(np.int32)
    pos = np.round(rng.random(cap) * 50, 1)  # rounding makes ties
    order = rng.permutation(cap)[:n].astype(np.int32)
    ls, tmp = _lanes(n_lanes), np.empty(cap, np.int32)
    m = n
    for _ in range(ticks):
        expect_order, expect_start = naive.sort_by_lane(order[:m].copy(), alive, lane, pos,
                                                        n_lanes)
        m = sort_by_lane(order, m, alive, lane, pos, tmp, ls)
        assert m == len(expect_order)
        np.testing.assert_array_equal(order[:m], expect_order)
        _assert_indexed(ls, order, m, expect_start)
        share = rng.choice([0.02, 0.2, 0.9])  # movers: a few, or many (both sorts of them)
        moved = rng.random(cap) < share
        lane[moved] = rng.integers(0, n_lanes, int(moved.sum()))
        pos[:] = np.round(pos + rng.random(cap) * rng.choice([0.0, 0.3]), 1)
        alive[rng.random(cap) < 0.05] = 0


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 120), st.lists(st.integers(1, 4), min_size=1, max_size=8),
       st.integers(0, 2**31 - 1))
def test_sort_changed_orders_and_indexes_as_the_whole_sort(n, lanes_per_edge, seed):
    """After a tick's lane changes (each vehicle stays on its edge; one change into a lane
    at most; lanes filled and emptied; ties in position), sorting the changed edges again
    gives the order, spans and busy lanes that sorting everything gives."""
    rng = np.random.default_rng(seed)
    first = np.cumsum([0, *lanes_per_edge]).astype(np.int32)
    n_lanes = int(first[-1])
    edge_num_lanes = np.array(lanes_per_edge, np.int32)
    lane_edge = np.repeat(np.arange(len(lanes_per_edge)), lanes_per_edge).astype(np.int32)
    alive = np.ones(n, np.uint8)
    lane = rng.integers(0, n_lanes, n).astype(np.int32)
    pos = np.round(rng.random(n) * 30, 0)  # whole metres: ties
    order = rng.permutation(n).astype(np.int32)
    ls, tmp = _lanes(n_lanes), np.empty(n, np.int32)
    sort_by_lane(order, n, alive, lane, pos, tmp, ls)
    changed = []
    for i in rng.permutation(n)[:int(rng.integers(1, n + 1))]:
        e = lane_edge[lane[i]]
        targets = [t for t in range(first[e], first[e + 1]) if t != lane[i] and t not in changed]
        if targets:
            lane[i] = rng.choice(targets)
            changed.append(int(lane[i]))
    ls.changed[:len(changed)] = changed
    ls.counts[N_CHANGED] = len(changed)
    expect_ls, expect_order = _lanes(n_lanes), order.copy()
    expect_ls.lane_span[:] = ls.lane_span
    expect_ls.busy[:] = ls.busy
    expect_ls.counts[:] = ls.counts
    sort_by_lane(expect_order, n, alive, lane, pos, np.empty(n, np.int32), expect_ls)
    assert sort_changed(order, lane, pos, tmp, ls, lane_edge, first[:-1].copy(),
                        edge_num_lanes)
    np.testing.assert_array_equal(order, expect_order)
    nb = expect_ls.counts[N_BUSY]
    assert ls.counts[N_BUSY] == nb
    np.testing.assert_array_equal(ls.busy[:nb], expect_ls.busy[:nb])
    np.testing.assert_array_equal(ls.lane_span, expect_ls.lane_span)


def test_sort_changed_leaves_an_edge_of_more_than_64_lanes_to_the_whole_sort():
    ls = _lanes(70)
    lane = np.array([0, 1], np.int32)
    order = np.array([0, 1], np.int32)
    sort_by_lane(order, 2, np.ones(2, np.uint8), lane, np.zeros(2), np.empty(2, np.int32), ls)
    lane[0] = 2
    ls.changed[0] = 2
    ls.counts[N_CHANGED] = 1
    before = ls.lane_span.copy()
    assert not sort_changed(order, lane, np.zeros(2), np.empty(2, np.int32), ls,
                            np.zeros(70, np.int32), np.zeros(1, np.int32),
                            np.array([70], np.int32))
    np.testing.assert_array_equal(ls.lane_span, before)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 0.5, 0.1, 0.25]),
       st.booleans())
def test_idm_speeds_of_a_block_are_the_scalar_ones_to_the_bit(m, seed, dt, all4):
    """The block computation gives exactly the free-road and leader speeds the scalar
    helpers give, with and without leaders, for the usual delta and others."""
    rng = np.random.default_rng(seed)
    w = np.zeros((idm.B_ROWS, idm.BLOCK))
    w[idm.B_V, :m] = rng.random(m) * 20
    w[idm.B_VMAX, :m] = rng.choice([0.0, 5.0, 13.89, 20.0], m) * rng.random(m)
    w[idm.B_A, :m] = rng.uniform(0.5, 3.0, m)
    w[idm.B_B, :m] = rng.uniform(2.0, 9.0, m)
    w[idm.B_S0, :m] = rng.choice([0.0, 2.5], m)
    w[idm.B_T, :m] = rng.uniform(0.5, 2.0, m)
    w[idm.B_DELTA, :m] = 4.0 if all4 else rng.choice([4.0, 2.0, 3.5], m)
    gap = rng.uniform(-2.0, 80.0, m)
    gap[rng.random(m) < 0.3] = np.inf  # no leader
    w[idm.B_GAP, :m] = gap
    w[idm.B_VLEAD, :m] = np.where(np.isinf(gap), 0.0, rng.random(m) * 15)
    idm.idm_speeds(m, dt, all4, w)
    for k in range(m):
        v, vmax, a, b, s0, T, dl = (w[r, k] for r in (idm.B_V, idm.B_VMAX, idm.B_A, idm.B_B,
                                                     idm.B_S0, idm.B_T, idm.B_DELTA))
        assert w[idm.B_FREE, k] == idm.idm_free_speed(v, vmax, a, dl, dt)
        if np.isfinite(gap[k]):
            assert w[idm.B_LEAD, k] == idm.idm_speed(v, vmax, gap[k], w[idm.B_VLEAD, k], a, b,
                                                     s0, T, dl, dt)


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 30), st.floats(1, 30), st.floats(-1, 120), st.floats(0, 20),
       st.sampled_from([0.0, 2.5]), st.floats(0, 40), st.sampled_from([1.0, 0.25, 0.1]),
       st.booleans())
@example(v=0.0, vmax=10.0, gap=0.02, v_lead=0.0, s0=0.0, vs=40.0, dt=0.1, full=False)
def test_deferred_speeds_are_the_scalar_ones(v, vmax, gap, v_lead, s0, vs, dt, full):
    """A speed left for later (defer_speed, defer_stop), computed with the block's others,
    bounds the safe speed exactly as the scalar call would; a full block computes it at
    once."""
    a, b, T, dl = 2.6, 4.5, 1.0, 4.0
    cols = 1 if full else 4
    nd0 = cols if full else 2
    for scalar, defer, args in (
            (idm.idm_speed(v, vmax, gap, v_lead, a, b, s0, T, dl, dt), idm.defer_speed,
             (v, vmax, gap, v_lead, a, b, s0, T, dl, dt)),
            (idm.stop_speed(v, vmax, gap, a, b, T, dl, dt), idm.defer_stop,
             (v, vmax, gap, a, b, T, dl, dt))):
        d = np.ones((idm.B_ROWS, cols))  # (other columns: any valid inputs)
        dq = np.zeros(cols, np.int64)
        got, nd = defer(vs, 7, *args, d, dq, nd0)
        if nd > nd0:  # listed in column nd0 for row 7
            assert dq[nd0] == 7
            idm.idm_speeds(nd, dt, True, d, False)
            got = min(got, d[idm.B_LEAD, nd0])
        assert got == min(vs, scalar)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 150), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_merge_inserted_matches_a_full_sort(n, n_lanes, seed):
    """Vehicles inserted behind everything on their lanes (at most one per lane) end where
    a full sort puts them."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n_lanes + 1))
    cap = n + k
    lane = np.empty(cap, np.int32)
    pos = np.empty(cap)
    lane[:n] = rng.integers(0, n_lanes, n)
    pos[:n] = 10.0 + rng.permutation(n) * 7.5  # distinct, all ahead of the inserted
    new_lanes = rng.choice(n_lanes, k, replace=False)
    lane[n:] = new_lanes
    pos[n:] = 5.0
    alive = np.ones(cap, np.uint8)
    order = np.arange(cap, dtype=np.int32)
    ls, tmp = _lanes(n_lanes), np.empty(cap, np.int32)
    sort_by_lane(order, n, alive, lane, pos, tmp, ls)
    order[n:] = rng.permutation(np.arange(n, cap)).astype(np.int32)
    expect_order, expect_start = naive.sort_by_lane(order.copy(), alive, lane, pos, n_lanes)
    merge_inserted(order, n, k, lane, tmp, ls)
    np.testing.assert_array_equal(order, expect_order)
    _assert_indexed(ls, order, cap, expect_start)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 40), st.floats(1, 40), st.floats(-5, 300), st.floats(-30, 30))
def test_idm_matches_reference(v, v0, gap, dv):
    args = (v, v0, gap, dv, 2.6, 4.5, 2.5, 1.0, 4.0)
    assert idm.idm(*args) == pytest.approx(naive.idm(*args), rel=1e-12, abs=1e-12)


def test_idm_free_road_and_standstill():
    # On a free road at the desired speed IDM neither accelerates nor brakes.
    assert idm.idm_free(10.0, 10.0, 2.6, 4.0) == pytest.approx(0.0)
    # Standing right behind a stopped leader at the minimum gap: no push forward.
    assert idm.idm(0.0, 13.9, 2.5, 0.0, 2.6, 4.5, 2.5, 1.0, 4.0) == pytest.approx(0.0)
    # Closing fast on a near obstacle brakes hard.
    assert idm.idm(14.0, 14.0, 10.0, 14.0, 2.6, 4.5, 2.5, 1.0, 4.0) < -9.0


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 40), st.floats(1, 40), st.floats(-5, 300), st.floats(0, 40))
def test_idm_speed_is_one_euler_step_of_the_idm_per_sub_step(v, v0, gap, v_lead):
    args = (v, v0, gap, v_lead, 2.6, 4.5, 2.5, 1.0, 4.0)
    h = idm.IDM_STEPPING
    acc = naive.idm(v, v0, max(gap, idm.NUMERICAL_EPS), v - v_lead, *args[4:])
    assert idm.idm_speed(*args, h) == pytest.approx(max(0.0, v + acc * h), abs=1e-9)
    # A longer step is that many sub-steps, the gap closing at the new speed in each.
    v1 = max(0.0, v + acc * h)
    g1 = gap - max(0.0, (v1 - v_lead) * h)
    acc1 = naive.idm(v1, v0, max(g1, idm.NUMERICAL_EPS), v1 - v_lead, *args[4:])
    assert idm.idm_speed(*args, 2 * h) == pytest.approx(max(0.0, v1 + acc1 * h), abs=1e-9)


def _sumo_trace():
    """SUMO 1.28's own trace (tests/data/sumo_traces.py): {id: {time: (pos, speed)}}."""
    trace: dict[str, dict[float, tuple[float, float]]] = {}
    with open(DATA / "sumo_idm_trace.csv") as f:
        for row in csv.DictReader(f):
            trace.setdefault(row["id"], {})[float(row["time"])] = (
                float(row["pos"]), float(row["speed"]))
    return trace["leader"], trace["follower"]


def test_idm_speeds_are_sumos_step_by_step():
    """Every step of a SUMO IDM run, from the state before it: the follower's free start,
    closing up, braking to a stop behind the standing leader and starting after it, and the
    leader's braking for its stop (a stop line: no minimum gap). One Euler step per second
    misses SUMO's follower by up to 0.45 m/s here."""
    leader, follower = _sumo_trace()
    a, b, s0, T, delta, v0, dt = 2.6, 4.5, 2.5, 1.0, 4.0, 13.89, 1.0
    checked = 0
    for t, (p, v) in follower.items():
        if t + 1 not in follower:
            continue
        ours = idm.idm_free_speed(v, v0, a, delta, dt)
        if t in leader:  # (it leaves the lane first)
            pl, vl = leader[t]
            ours = min(ours, idm.idm_speed(v, v0, pl - 5.0 - p, vl, a, b, s0, T, delta, dt))
        sumo = follower[t + 1][1]
        if sumo == 0.0 and ours < idm.NUMERICAL_EPS:
            continue  # SUMO rounds a creep below its epsilon to a stop
        assert ours == pytest.approx(sumo, abs=1e-6), t
        checked += 1
    assert checked > 100
    stop = 600.0 + idm.NUMERICAL_EPS  # SUMO's stop position, endPos plus its epsilon
    for t, (p, v) in leader.items():
        if p > 590.0:
            break
        ours = min(idm.idm_free_speed(v, v0, a, delta, dt),
                   idm.idm_speed(v, v0, stop - p, 0.0, a, b, 0.0, T, delta, dt))
        assert ours == pytest.approx(leader[t + 1][1], abs=1e-6), t


def test_idm_speed_stops_short_of_obstacles_and_creeps_only_to_stop_lines():
    # Closing on a stopped leader inside the minimum gap: stop, and stay stopped.
    assert idm.idm_speed(3.05, 13.89, 2.4, 0.0, 2.6, 4.5, 2.5, 1.0, 4.0, 1.0) == 0.0
    assert idm.idm_speed(0.0, 13.89, 2.4, 0.0, 2.6, 4.5, 2.5, 1.0, 4.0, 1.0) == 0.0
    # A stop line has no minimum gap (s0 = 0): a vehicle short of it moves up.
    assert idm.idm_speed(0.0, 13.89, 2.4, 0.0, 2.6, 4.5, 0.0, 1.0, 4.0, 1.0) > 0.0
    # Never negative.
    assert idm.idm_speed(14.0, 14.0, 0.5, 0.0, 2.6, 4.5, 2.5, 1.0, 4.0, 1.0) == 0.0


def test_find_conn_matches_reference(small_grid):
    net = small_grid
    rng = np.random.default_rng(1)
    ptr, nxt = net.successors
    for lane in rng.choice(net.n_normal_lanes, 60, replace=False):
        e = int(net.lane_edge[lane])
        for n1 in nxt[ptr[e]:ptr[e + 1]]:
            for n2 in [-1, *nxt[ptr[n1]:ptr[n1 + 1]].tolist()]:
                got = find_conn(int(lane), int(n1), int(n2), net.lane_out_ptr, net.lane_out,
                                net.conn_to_edge, net.conn_to_lane)
                assert got == naive.find_conn(net, lane, n1, n2)
