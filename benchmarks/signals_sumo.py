"""Reference gain of actuated over fixed-time control, in SUMO and in citytwin, side by side.

For each seed of a built-in signal scenario (its network is a SUMO ``.net.xml``), the demand
citytwin draws for that seed is routed once and written as a ``.rou.xml``; the Webster plan
citytwin computes for it is written as SUMO ``tlLogic`` programs of two types on the same
stages, yellow and all-red: ``static`` (the Webster greens) and ``actuated`` (SUMO's own
gap-out control with citytwin's actuated min/max green and max-gap). SUMO runs both; citytwin
runs its ``fixed`` and ``actuated`` policies on exactly the same vehicles (read back from the
``.rou.xml``; vehicles of ``planned = false`` flows and trips stay unknown to its plans).
Printed per simulator: mean waiting time, timeLoss and duration per trip, throughput (vehicles
arriving per hour between the scenario's warmup and its duration or 3,600 s: the capacity
figure of the saturated scenarios), and the relative change actuated vs static with a 95 % t
interval over the paired seeds.

    python benchmarks/signals_sumo.py --scenario signals_grid --seeds 10
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from compare_sumo import SUMO_OPTIONS, sumo_bin

HERE = Path(__file__).resolve().parent


def tls_programs(city, kind: str) -> str:
    """SUMO tlLogic elements of every controller: citytwin's stages with the Webster greens,
    yellow and all-red (``kind`` static or actuated)."""
    pol = city.signal_policy
    act = pol.actuated
    out = ['<additional>']
    for k, tls in enumerate(city.network.tls_ids):
        stages = city.control.stage_states(k)
        plan = city.control.controllers[k].plan
        out.append(f'  <tlLogic id="{tls}" type="{kind}" programID="ct_{kind}" '
                   f'offset="{plan.offset:g}">')
        if kind == "actuated":
            out.append(f'    <param key="max-gap" value="{act.max_gap:g}"/>')
            out.append(f'    <param key="detector-gap" value="{city.config.detector_gap:g}"/>')
        for x, st in enumerate(stages):
            nxt = stages[(x + 1) % len(stages)]
            green = st
            if kind == "actuated":
                out.append(f'    <phase duration="{plan.greens[x]:g}" state="{green}" '
                           f'minDur="{act.min_green:g}" maxDur="{act.max_green:g}"/>')
            else:
                out.append(f'    <phase duration="{plan.greens[x]:g}" state="{green}"/>')
            yellow = "".join(a if a in "Gg" and b in "Gg" else "y" if a in "Gg" else "r"
                             for a, b in zip(st, nxt, strict=True))
            red = "".join(a if a in "Gg" and b in "Gg" else "r"
                          for a, b in zip(st, nxt, strict=True))
            out.append(f'    <phase duration="{pol.yellow:g}" state="{yellow}"/>')
            if pol.all_red > 0:
                out.append(f'    <phase duration="{pol.all_red:g}" state="{red}"/>')
        out.append('  </tlLogic>')
    out.append('</additional>\n')
    return "\n".join(out)


def throughput(arrivals: np.ndarray, window: tuple[float, float]) -> float:
    """Vehicles arriving per hour within ``window`` (s)."""
    a, b = window
    return float(np.count_nonzero((arrivals >= a) & (arrivals < b)) * 3600.0 / (b - a))


def run_sumo(net: Path, rou: Path, add: Path, out: Path, window: tuple[float, float]
             ) -> dict[str, float]:
    tripinfo = out.parent / f"{out.name}.tripinfo.xml"
    cmd = [sumo_bin("sumo"), "-n", str(net), "-r", str(rou), "-a", str(add),
           "--tripinfo-output", str(tripinfo), "--no-step-log", "true", *SUMO_OPTIONS,
           "--end", "7200"]
    subprocess.run(cmd, check=True, capture_output=True)
    wait, loss, dur, arr = [], [], [], []
    for _, el in ET.iterparse(tripinfo):
        if el.tag == "tripinfo":
            wait.append(float(el.get("waitingTime")))
            loss.append(float(el.get("timeLoss")))
            dur.append(float(el.get("duration")))
            arr.append(float(el.get("arrival")))
            el.clear()
    return {"waiting_s": float(np.mean(wait)), "time_loss_s": float(np.mean(loss)),
            "duration_s": float(np.mean(dur)), "trips": len(dur),
            "throughput_vph": throughput(np.array(arr), window)}


def run_citytwin(scenario, net_path: Path, rou: Path, policy: str, unplanned: set[str],
                 window: tuple[float, float]) -> dict[str, float]:
    from dataclasses import replace

    from citytwin.model.city import City
    from citytwin.model.sumo_routes import read_sumo_routes

    sc = scenario.with_signals({"policy": policy}, policy)
    net = sc.build_network()
    demand = read_sumo_routes(rou, net)
    demand.trips = [replace(t, planned=False) if t.id in unplanned else t
                    for t in demand.trips]
    city = City(net, demand, rng=1, config=sc.spec.simulation.to_config(),
                signals=sc.spec.signals.to_policy())
    city.run_until_done(7200)
    k = city.kpis()
    tr = city.fleet.trips
    return {"waiting_s": k["mean_waiting_time_s"], "time_loss_s": k["mean_time_loss_s"],
            "duration_s": k["mean_duration_s"], "trips": k["vehicles_arrived"],
            "throughput_vph": throughput(tr.arrival[tr.state == 2], window)}


def t_interval(x: np.ndarray) -> tuple[float, float, float]:
    from scipy import stats

    m = float(x.mean())
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def main(argv: list[str] | None = None) -> int:
    from citytwin.model.demand import Trip
    from citytwin.model.sumo_routes import write_sumo_routes
    from citytwin.scenarios import load_scenario

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="signals_grid")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=HERE / "out" / "signals_sumo")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario(a.scenario)
    net_path = scenario.path.parent / str(scenario.spec.network.sumo_net)
    first = scenario.seed if a.first_seed is None else a.first_seed
    spec = scenario.spec
    window = (spec.simulation.warmup, spec.duration or 3600.0)
    unplanned_flows = {f.id for f in spec.demand.flows if not f.planned}
    rows = []
    for seed in range(first, first + a.seeds):
        city = scenario.with_signals({"policy": "fixed"}, "fixed").build_city(seed)
        tr, net = city.fleet.trips, city.network
        trips = []
        unplanned = {t.id for t in spec.demand.trips if not t.planned} | {
            tid for tid in city.fleet.trip_ids if tid.rpartition(".")[0] in unplanned_flows}
        for i, tid in enumerate(city.fleet.trip_ids):
            n = int(tr.route_len[i])
            if n:
                s = int(tr.route_start[i])
                edges = tuple(net.edge_ids[e] for e in city.fleet.route_edges[s:s + n])
                vt = city.vtypes[int(tr.vtype[i])].id
                trips.append(Trip(tid, float(tr.depart[i]), edges[0], edges[-1], vt, edges))
        rou = write_sumo_routes(trips, {v.id: v for v in city.vtypes},
                                a.out / f"seed{seed}.rou.xml")
        row = {"seed": seed}
        for kind in ("static", "actuated"):
            add = a.out / f"seed{seed}.{kind}.add.xml"
            add.write_text(tls_programs(city, kind), encoding="utf-8")
            row[f"sumo_{kind}"] = run_sumo(net_path, rou, add, a.out / f"seed{seed}.{kind}",
                                           window)
        for policy in ("fixed", "actuated"):
            row[f"citytwin_{policy}"] = run_citytwin(scenario, net_path, rou, policy,
                                                     unplanned, window)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{a.scenario}, seeds {first}..{first + a.seeds - 1}: mean per trip (s), "
          "change actuated vs fixed-time [95 % CI over paired seeds]")
    for metric in ("waiting_s", "time_loss_s", "duration_s", "throughput_vph"):
        for sim, base, alt in (("SUMO", "sumo_static", "sumo_actuated"),
                               ("citytwin", "citytwin_fixed", "citytwin_actuated")):
            b = np.array([r[base][metric] for r in rows])
            c = np.array([r[alt][metric] for r in rows])
            m, lo, hi = t_interval(c / b - 1)
            print(f"  {metric:12} {sim:9} fixed {b.mean():7.2f}  actuated {c.mean():7.2f}  "
                  f"change {100 * m:+6.1f} % [{100 * lo:+.1f}, {100 * hi:+.1f}]")
    (a.out / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
