"""Where a tick's time goes: each phase of ``run_ticks`` timed on its own, on a busy grid.

Builds the network and routes exactly as ``compare_sumo.py`` does (netgenerate grid, random
fringe trips routed once), runs citytwin until ``--warm`` sim seconds, then steps ``--ticks``
ticks calling the phases of one tick (signals, sort, lane changes, prepass, insertion,
follow, move, fold) one by one from Python and times each; then the same number of ticks
through the fused chunk kernel, for the whole. Prints milliseconds per tick and nanoseconds
per running vehicle.

    python benchmarks/tick_profile.py --grid 30 --vph 30000 --warm 900 --ticks 200
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from compare_sumo import HERE, build_grid, write_routes

from citytwin.agents.kernels import tick as tk
from citytwin.agents.kernels.insertion import insert
from citytwin.agents.kernels.lanechange import lane_change
from citytwin.agents.kernels.order import merge_inserted, sort_by_lane, sort_changed
from citytwin.agents.kernels.signals import signals_step
from citytwin.agents.kernels.traffic import follow, move, prepass
from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.sumo_net import read_sumo_net
from citytwin.model.sumo_routes import read_sumo_routes


def one_tick(city: City, times: dict[str, float]) -> None:
    """One tick of ``run_ticks``, phase by phase, adding each phase's seconds to ``times``."""
    cfg, fl_, sig, det = city.config, city.fleet, city.signals.arrays, city.detectors.arrays
    veh, types, roads, ls = fl_.veh, fl_.types, city.roads, city.lanes
    trips, route_edges, fl, met = fl_.trips, fl_.route_edges, fl_.arrays, city.metrics.arrays
    c = fl.counts
    tick, dt = city.tick, cfg.dt
    t = tick * dt
    due_end = int(c[tk.NEXT_TRIP])
    while due_end < trips.depart.shape[0] and trips.depart[due_end] <= t + 1e-9:
        due_end += 1
    if c[tk.N_BACKLOG] + due_end - c[tk.NEXT_TRIP] > c[tk.N_FREE]:
        fl_.make_room(city.sim_time)
        return one_tick(city, times)

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        times[name] += time.perf_counter() - t0
        return out

    timed("signals", signals_step, t, dt, cfg.max_gap, sig.cur, sig.elapsed, sig.kind,
          sig.phase_ptr, sig.ph_dur, sig.ph_min, sig.ph_max, sig.ph_green, sig.ph_state_ptr,
          sig.state_codes, sig.ph_det_ptr, sig.ph_det, det.last_on, roads.conn_tls,
          roads.conn_link, roads.tls_conns, ls.conn_state, sig.switched)
    n = timed("sort", sort_by_lane, fl.order, c[tk.N_ORDER], veh.alive, veh.lane, veh.pos,
              fl.tmp, ls)
    changes = 0
    if n:
        changes = timed("lane change", lane_change, fl.order, n, veh, types, roads, ls,
                        route_edges, t, tick, dt)
        if changes and not timed("sort changed", sort_changed, fl.order, veh.lane, veh.pos,
                                 fl.tmp, ls, roads.lane_edge, roads.edge_first_lane,
                                 roads.edge_num_lanes):
            n = timed("sort changed", sort_by_lane, fl.order, n, veh.alive, veh.lane, veh.pos,
                      fl.tmp, ls)
    timed("prepass", prepass, fl.order, n, veh, types, roads, ls, route_edges, dt)
    nb = int(c[tk.N_BACKLOG])
    for tr in range(int(c[tk.NEXT_TRIP]), due_end):
        if trips.route_len[tr] > 0:
            fl.backlog[nb] = tr
            nb += 1
    c[tk.NEXT_TRIP] = due_end
    n_sorted = n
    nb, n_free, n, n_ins = timed("insertion", insert, fl.backlog, nb, trips, veh, types, roads,
                                 ls, route_edges, fl.free_slots, c[tk.N_FREE], fl.order, n, t,
                                 tick, fl.inserted)
    c[tk.N_ALIVE] += n_ins
    if n_ins:
        timed("insertion", merge_inserted, fl.order, n_sorted, n_ins, veh.lane, fl.tmp, ls)
    n_on = int(c[tk.N_ALIVE])
    timed("follow", follow, fl.order, n, veh, types, roads, ls, route_edges, dt, veh.speed_next,
          veh.cap)
    n_out = timed("move", move, fl.order, n, veh, types, roads, ls, route_edges, trips, det, t,
                  dt, cfg.time_to_teleport, met.junction_wait, met.junction_queue,
                  met.junction_passed, met.edge_speed_sum, met.edge_count, fl.arrived,
                  met.tick_stats)
    for q in range(n_out):
        fl.free_slots[n_free + q] = fl.arrived[n_out - 1 - q]
    n_free += n_out
    c[tk.N_ALIVE] -= n_out
    c[tk.N_ORDER], c[tk.N_FREE], c[tk.N_BACKLOG] = n, n_free, nb
    c[tk.LAST_INSERTED], c[tk.LAST_OUT] = n_ins, n_out
    timed("fold", tk._fold, met, n_on, n_ins, changes)
    times["vehicles"] += n_on
    city.tick += 1
    city.sim_time = city.tick * dt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=30)
    p.add_argument("--net", type=Path, default=None, help="a SUMO network instead of a grid")
    p.add_argument("--vph", type=float, default=30000.0)
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of departures")
    p.add_argument("--warm", type=float, default=900.0, help="sim seconds before measuring")
    p.add_argument("--ticks", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--all-edges", action="store_true",
                   help="trips between any two edges (default: fringe to fringe)")
    p.add_argument("--out", type=Path, default=HERE / "out")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    net_path = a.net if a.net else build_grid(a.grid, 2, 200.0, a.out)
    rou = write_routes(net_path, a.vph, a.duration, a.seed, a.out, fringe_only=not a.all_edges)
    net = read_sumo_net(net_path)
    city = City(net, read_sumo_routes(rou, net), rng=1,
                config=SimConfig(mesa_agents=False, summary_interval=1e9))
    city.run_for(a.warm)
    times: dict[str, float] = defaultdict(float)
    for _ in range(3):  # compiles the phases as called from Python
        one_tick(city, times)
    times.clear()
    for _ in range(a.ticks):
        one_tick(city, times)
    running = times.pop("vehicles") / a.ticks
    k0 = city.kpis()
    city.run_for(a.ticks * city.config.dt)
    k1 = city.kpis()
    fused = (k1["step_wall_seconds"] - k0["step_wall_seconds"]) / a.ticks
    fused_n = (k1["vehicle_updates"] - k0["vehicle_updates"]) / a.ticks
    print(f"{net_path.name}, {a.vph:g} veh/h, after {a.warm:g} s: {running:.0f} vehicles "
          f"running, {a.ticks} ticks")
    print(f"{'phase':<14}{'ms/tick':>10}{'ns/vehicle':>12}")
    for name, sec in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"{name:<14}{sec / a.ticks * 1e3:>10.3f}{sec / a.ticks / running * 1e9:>12.1f}")
    total = sum(times.values()) / a.ticks
    print(f"{'sum':<14}{total * 1e3:>10.3f}{total / running * 1e9:>12.1f}")
    print(f"{'fused kernel':<14}{fused * 1e3:>10.3f}{fused / fused_n * 1e9:>12.1f}   "
          f"({fused_n:.0f} vehicles, {fused_n / fused:,.0f} updates/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
