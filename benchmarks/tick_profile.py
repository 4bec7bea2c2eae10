"""Where a tick's time goes: each phase of ``run_ticks`` timed inside one compiled kernel.

Builds the network and routes exactly as ``compare_sumo.py`` does (netgenerate grid or a
given SUMO network, random trips routed once), runs citytwin until ``--warm`` sim seconds,
then runs ``--ticks`` ticks through a copy of the tick kernel that reads the CPU's cycle
counter between its phases (signals and staged controllers, sort, lane changes, the sort of
the edges changed on, prepass, insertion, car-following, movement with the emergency
vehicles' bookkeeping, the rest). Timing the phases from Python instead would add a call,
some 20 us, to each. Prints microseconds per tick and nanoseconds per running vehicle.

    python benchmarks/tick_profile.py --grid 10 --vph 24000 --duration 900 --all-edges \\
        --warm 60 --ticks 1500

The copy must follow ``citytwin.agents.kernels.tick.run_ticks``; the check at the end (same
vehicle updates and arrivals as the city's own kernel from the same state) tells if not.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np
from compare_sumo import HERE, build_grid, write_routes
from llvmlite import ir
from numba.extending import intrinsic

from citytwin.agents.kernels import tick as tk
from citytwin.agents.kernels._config import njit_pipelined
from citytwin.agents.kernels.control import control_step
from citytwin.agents.kernels.emergency import emergency_step
from citytwin.agents.kernels.following import follow
from citytwin.agents.kernels.insertion import insert
from citytwin.agents.kernels.lanechange import lane_change
from citytwin.agents.kernels.order import merge_inserted, sort_by_lane, sort_changed
from citytwin.agents.kernels.signals import signals_step
from citytwin.agents.kernels.traffic import move, prepass
from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.sumo_net import read_sumo_net
from citytwin.model.sumo_routes import read_sumo_routes

PHASES = ("signals", "sort", "lane change", "sort changed", "prepass", "insertion",
          "follow", "move", "rest")
N_PHASES = len(PHASES)


@intrinsic
def _cycles(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``: rdtsc on x86)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.globals.get("llvm.readcyclecounter") or ir.Function(
            builder.module, fnty, name="llvm.readcyclecounter")
        return builder.call(fn, [])
    return numba.types.int64(), codegen


@numba.njit
def cycles_now():
    return _cycles()


@njit_pipelined
def profiled_ticks(n_ticks, tick0, dt, ttt, max_gap, sig, det, veh, types, roads, ls, trips,
                   route_edges, fl, met, ctl, em, cyc):
    """``run_ticks`` (without its stop-when-done test), adding each phase's cycles to
    ``cyc[:N_PHASES]`` and the vehicles stepped to ``cyc[N_PHASES]``. Returns the ticks run
    (fewer when the fleet needs more slots)."""
    c = fl.counts
    n_trips = trips.depart.shape[0]
    for done in range(n_ticks):
        tick = tick0 + done
        t = tick * dt
        due_end = c[tk.NEXT_TRIP]
        while due_end < n_trips and trips.depart[due_end] <= t + 1e-9:
            due_end += 1
        if c[tk.N_BACKLOG] + due_end - c[tk.NEXT_TRIP] > c[tk.N_FREE]:
            return done
        t0 = _cycles()
        if ctl.params[0] > 0.0:
            control_step(t, dt, ctl, em, sig.state_codes, sig.external, det.last_on, veh,
                         types, roads, route_edges, trips, fl.order, c[tk.N_ORDER])
        signals_step(t, dt, max_gap, sig.cur, sig.elapsed, sig.kind, sig.phase_ptr, sig.ph_dur,
                     sig.ph_min, sig.ph_max, sig.ph_green, sig.ph_state_ptr, sig.state_codes,
                     sig.ph_det_ptr, sig.ph_det, det.last_on, roads.conn_tls, roads.conn_link,
                     roads.tls_conns, ls.conn_state, sig.switched)
        t1 = _cycles()
        n = sort_by_lane(fl.order, c[tk.N_ORDER], veh.alive, veh.lane, veh.pos, fl.tmp, ls)
        t2 = _cycles()
        t3 = t2
        changes = 0
        if n:
            changes = lane_change(fl.order, n, veh, types, roads, ls, route_edges, t, tick, dt)
            t3 = _cycles()
            if changes and not sort_changed(fl.order, veh.lane, veh.pos, fl.tmp, ls,
                                            roads.lane_edge, roads.edge_first_lane,
                                            roads.edge_num_lanes):
                n = sort_by_lane(fl.order, n, veh.alive, veh.lane, veh.pos, fl.tmp, ls)
        t4 = _cycles()
        prepass(fl.order, n, veh, types, roads, ls, route_edges, dt)
        t5 = _cycles()
        nb = c[tk.N_BACKLOG]
        for tr in range(c[tk.NEXT_TRIP], due_end):
            if trips.route_len[tr] > 0:
                fl.backlog[nb] = tr
                nb += 1
        c[tk.NEXT_TRIP] = due_end
        n_sorted = n
        nb, n_free, n, n_ins = insert(fl.backlog, nb, trips, veh, types, roads, ls, route_edges,
                                      fl.free_slots, c[tk.N_FREE], fl.order, n, t, tick,
                                      fl.inserted)
        c[tk.N_ALIVE] += n_ins
        if n_ins:
            merge_inserted(fl.order, n_sorted, n_ins, veh.lane, fl.tmp, ls)
        t6 = _cycles()
        n_on = c[tk.N_ALIVE]
        follow(fl.order, n, veh, types, roads, ls, route_edges, dt, veh.speed_next, veh.cap)
        t7 = _cycles()
        n_out = move(fl.order, n, veh, types, roads, ls, route_edges, trips, det, t, dt, ttt,
                     met.junction_wait, met.junction_queue, met.junction_passed,
                     met.edge_speed_sum, met.edge_count, fl.arrived, met.tick_stats)
        if em.ev_slot.shape[0]:
            emergency_step(em, veh, types, roads, ls, fl.inserted, n_ins, fl.arrived, n_out)
        t8 = _cycles()
        for q in range(n_out):
            fl.free_slots[n_free + q] = fl.arrived[n_out - 1 - q]
        n_free += n_out
        c[tk.N_ALIVE] -= n_out
        c[tk.N_ORDER], c[tk.N_FREE], c[tk.N_BACKLOG] = n, n_free, nb
        c[tk.LAST_INSERTED], c[tk.LAST_OUT] = n_ins, n_out
        tk._fold(met, n_on, n_ins, changes)
        t9 = _cycles()
        cyc[0] += t1 - t0
        cyc[1] += t2 - t1
        cyc[2] += t3 - t2
        cyc[3] += t4 - t3
        cyc[4] += t5 - t4
        cyc[5] += t6 - t5
        cyc[6] += t7 - t6
        cyc[7] += t8 - t7
        cyc[8] += t9 - t8
        cyc[N_PHASES] += n_on
    return n_ticks


def _run(city: City, ticks: int, profiled: bool, cyc: np.ndarray) -> None:
    fleet, cfg = city.fleet, city.config
    done_all = 0
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # as City._run_ticks
    try:
        while done_all < ticks:
            n = min(100, ticks - done_all)
            if profiled:
                done = profiled_ticks(
                    n, city.tick, cfg.dt, cfg.time_to_teleport, cfg.max_gap,
                    city.signals.arrays, city.detectors.arrays, fleet.veh, fleet.types,
                    city.roads, city.lanes, fleet.trips, fleet.route_edges, fleet.arrays,
                    city.metrics.arrays, city.control.arrays, city.emergency, cyc)
            else:
                done, _ = city._run_ticks(n, stop_when_done=False)
            city.tick += done
            city.sim_time = city.tick * cfg.dt
            done_all += done
            if done < n:
                fleet.make_room(city.sim_time)
    finally:
        numba.set_num_threads(threads)


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

    def city_at_warm() -> City:
        city = City(net, read_sumo_routes(rou, net), rng=1,
                    config=SimConfig(mesa_agents=False, summary_interval=1e9))
        city.run_for(a.warm)
        return city

    cyc = np.zeros(N_PHASES + 1, np.int64)
    profiled, plain = city_at_warm(), city_at_warm()
    _run(profiled, 0, True, cyc)  # compiles the profiled copy
    c0 = cycles_now()
    w0 = time.perf_counter()
    time.sleep(0.2)
    ns_per_cycle = (time.perf_counter() - w0) / (cycles_now() - c0) * 1e9
    _run(profiled, a.ticks, True, cyc)
    _run(plain, a.ticks, False, cyc)
    same = all(profiled.kpis()[k] == plain.kpis()[k]
               for k in ("vehicle_updates", "vehicles_arrived", "lane_changes", "mean_time_loss_s"))
    vehicles = cyc[N_PHASES]
    print(f"{net_path.name}, {a.vph:g} veh/h, ticks {a.warm:g} s to {a.warm + a.ticks:g} s: "
          f"{vehicles / a.ticks:.0f} vehicles running on average")
    print(f"{'phase':<14}{'us/tick':>10}{'ns/vehicle':>12}")
    for k, name in enumerate(PHASES):
        ns = cyc[k] * ns_per_cycle
        print(f"{name:<14}{ns / a.ticks / 1e3:>10.1f}{ns / vehicles:>12.1f}")
    total = cyc[:N_PHASES].sum() * ns_per_cycle
    print(f"{'total':<14}{total / a.ticks / 1e3:>10.1f}{total / vehicles:>12.1f}   "
          f"({vehicles / total * 1e3:.2f} M updates/s)")
    print("the profiled copy stepped as the city's kernel does" if same else
          "WARNING: the profiled copy does not follow run_ticks (different results)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
