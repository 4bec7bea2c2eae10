"""Side by side: SUMO micro and citytwin on the same network and the same routes.

Builds (or takes) a SUMO network, draws random fringe-to-fringe trips, routes them once by
free-flow time, writes them as a ``.rou.xml`` with IDM vTypes, and runs both simulators in
their own processes on exactly those routes. Prints, for both: vehicle-updates/s of the
stepping loop, whole-process wall time, peak memory, trips finished, mean duration, timeLoss
and waiting time, and the ratios. Needs the ``sumo`` extra (``pip install -e .[sumo]``).

Speed on a shared 2-core VM moves by up to 2x from one run to the next (SUMO and citytwin
alike), so ``--repeat N`` runs the pair N times, one after the other, and reports the median
of each speed figure and the ratio of every pair; the results (trips, durations) must be the
same in every repeat, and are checked to be.

    python benchmarks/compare_sumo.py --grid 10 --vph 6000 --duration 3600
    python benchmarks/compare_sumo.py --net some.net.xml --vph 3000 --duration 3600
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def sumo_bin(name: str) -> str:
    try:
        import sumo  # the eclipse-sumo wheel
    except ImportError:
        sys.exit("SUMO is not installed: pip install -e '.[sumo]'")
    return str(Path(sumo.SUMO_HOME) / "bin" / name)


def peak_rss_of(cmd: list[str]) -> tuple[str, float, int]:
    """Run a command through ``_rss.py``; return (its output, wall seconds, its own peak RSS
    in bytes, free of this process's memory)."""
    proc = subprocess.run([sys.executable, "-S", str(HERE / "_rss.py"), *cmd],
                          capture_output=True, text=True)
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    out = proc.stdout + "\n".join(proc.stderr.strip().splitlines()[:-1])
    if stats["rc"]:
        sys.exit(f"{cmd[0]} failed ({stats['rc']}):\n{out[-3000:]}")
    return out, stats["wall_s"], stats["rss_kb"] * 1024


def build_grid(n: int, lanes: int, length: float, out: Path) -> Path:
    net = out / f"grid{n}x{n}.net.xml"
    subprocess.run([sumo_bin("netgenerate"), "--grid", "--grid.number", str(n),
                    "--grid.length", str(length), "--grid.attach-length", str(length / 2),
                    "--default.lanenumber", str(lanes), "--default.speed", "13.89",
                    "--tls.guess", "true", "--no-turnarounds", "true",
                    "--output-file", str(net), "--no-warnings"], check=True)
    return net


def write_routes(net_path: Path, vph: float, duration: float, seed: int, out: Path,
                 fringe_only: bool = True) -> Path:
    from citytwin.model.demand import Trip, VehicleType
    from citytwin.model.routing import random_trips, route_trips
    from citytwin.model.sumo_net import read_sumo_net
    from citytwin.model.sumo_routes import write_sumo_routes

    net = read_sumo_net(net_path)
    trips = random_trips(net, begin=0, end=duration, vehs_per_hour=vph,
                         rng=np.random.default_rng(seed), fringe_only=fringe_only)
    start, length, edges = route_trips(net, trips)
    routed = [Trip(t.id, t.depart, t.from_edge, t.to_edge, t.vtype,
                   tuple(net.edge_ids[e] for e in edges[s:s + m]))
              for t, s, m in zip(trips, start, length, strict=True) if m > 0]
    rou = out / "routes.rou.xml"
    write_sumo_routes(routed, {"DEFAULT_VEHTYPE": VehicleType()}, rou)
    return rou


#: SUMO's stepping as citytwin's: 1 s steps, one action per step and the semi-implicit Euler
#: position update (SUMO switches to the ballistic update when an action step length is
#: given, even one equal to the step: "Integration method was set to 'ballistic'").
SUMO_OPTIONS = ("--step-length", "1", "--step-method.ballistic", "false",
                "--time-to-teleport", "300", "--no-warnings", "true", "--seed", "1")


def run_sumo(net: Path, rou: Path, end: float, out: Path, reuse: bool = False) -> dict:
    """SUMO's figures; with ``reuse``, those of an earlier run on the same net, routes and end
    (SUMO is deterministic for them; its speed figures are then the earlier run's)."""
    net_xml = re.sub(rb"<!--.*?-->", b"", net.read_bytes(), flags=re.S)  # netgenerate's date
    key = hashlib.sha256(net_xml + rou.read_bytes() + repr(end).encode()
                         + " ".join(SUMO_OPTIONS).encode()).hexdigest()
    cached = out / f"sumo-{key[:16]}.json"
    if reuse and cached.is_file():
        return json.loads(cached.read_text())
    result = _run_sumo(net, rou, end, out)
    cached.write_text(json.dumps(result))
    return result


def _run_sumo(net: Path, rou: Path, end: float, out: Path) -> dict:
    tripinfo = out / "sumo.tripinfo.xml"
    cmd = [sumo_bin("sumo"), "-n", str(net), "-r", str(rou), "--end", str(end),
           "--tripinfo-output", str(tripinfo), "--no-step-log", "true",
           "--duration-log.statistics", "true", *SUMO_OPTIONS]
    text, wall, rss = peak_rss_of(cmd)
    ups = _grab(r"UPS:\s*([\d.]+)", text)
    ms = _grab(r"Duration:\s*([\d.]+)\s*s", text)
    if ms is None:
        ms = _grab(r"Duration:\s*([\d,]+)ms", text.replace(",", ""))
        ms = ms / 1000 if ms is not None else None
    teleports = _grab(r"Teleports:\s*(\d+)", text) or 0
    durations, loss, wait = [], [], []
    for _, el in ET.iterparse(tripinfo):
        if el.tag == "tripinfo":
            durations.append(float(el.get("duration")))
            loss.append(float(el.get("timeLoss")))
            wait.append(float(el.get("waitingTime")))
            el.clear()
    return {"updates_per_second": ups, "step_wall_seconds": ms, "wall_seconds": wall,
            "peak_rss_mb": rss / 2**20, "trips_finished": len(durations),
            "mean_duration_s": float(np.mean(durations)), "mean_time_loss_s": float(np.mean(loss)),
            "mean_waiting_time_s": float(np.mean(wait)), "teleports": teleports}


def run_citytwin(net: Path, rou: Path, end: float) -> dict:
    cmd = [sys.executable, str(HERE / "_citytwin_child.py"), str(net), str(rou), str(end)]
    text, wall, rss = peak_rss_of(cmd)
    k = json.loads(text.strip().splitlines()[-1])
    return {"updates_per_second": k["updates_per_second"],
            "step_wall_seconds": k["step_wall_seconds"], "wall_seconds": wall,
            "peak_rss_mb": rss / 2**20, "trips_finished": k["vehicles_arrived"],
            "mean_duration_s": k["mean_duration_s"], "mean_time_loss_s": k["mean_time_loss_s"],
            "mean_waiting_time_s": k["mean_waiting_time_s"], "teleports": k["teleports"],
            "mean_running": k["vehicle_updates"] / max(k["ticks"], 1)}


def _grab(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--grid", type=int, help="build an NxN signalised grid with netgenerate")
    g.add_argument("--net", type=Path, help="use this SUMO .net.xml")
    p.add_argument("--lanes", type=int, default=2)
    p.add_argument("--length", type=float, default=200.0)
    p.add_argument("--vph", type=float, default=3000.0, help="random trips per hour")
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of departures")
    p.add_argument("--end", type=float, default=None, help="sim end (default 2x duration)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--all-edges", action="store_true",
                   help="trips between any two edges (default: fringe to fringe)")
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--json", type=Path, help="append the result as a JSON line here")
    p.add_argument("--repeat", type=int, default=1,
                   help="run both this many times; speed figures are the medians")
    p.add_argument("--reuse-sumo", action="store_true",
                   help="take SUMO's figures from an earlier run on the same inputs (for "
                   "model work; its speed figures are then not from this run)")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    end = a.end if a.end is not None else 2 * a.duration
    net = build_grid(a.grid, a.lanes, a.length, a.out) if a.grid else a.net
    rou = write_routes(net, a.vph, a.duration, a.seed, a.out, fringe_only=not a.all_edges)
    cts, sus = [], []
    for _ in range(max(a.repeat, 1)):
        cts.append(run_citytwin(net, rou, end))
        sus.append(run_sumo(net, rou, end, a.out, reuse=a.reuse_sumo))
    ct, su = _median_of(cts), _median_of(sus)
    rows = ["updates_per_second", "step_wall_seconds", "wall_seconds", "peak_rss_mb",
            "trips_finished", "mean_duration_s", "mean_time_loss_s", "mean_waiting_time_s",
            "teleports"]
    print(f"network {net.name}, {a.vph:g} veh/h for {a.duration:g} s "
          f"({'any edge to any edge' if a.all_edges else 'fringe to fringe'}), end {end:g} s, "
          f"mean vehicles running (citytwin) {ct['mean_running']:.0f}")
    print(f"{'':24}{'citytwin':>14}{'SUMO micro':>14}{'ratio':>10}")
    for r in rows:
        c, s = ct[r], su[r]
        ratio = c / s if isinstance(s, (int, float)) and s else float("nan")
        print(f"{r:24}{c:>14.4g}{s if s is not None else float('nan'):>14.4g}{ratio:>10.3f}")
    pairs = [c["updates_per_second"] / s["updates_per_second"] for c, s in zip(cts, sus,
                                                                                  strict=True)]
    if len(pairs) > 1:
        print(f"updates/s ratio of each pair: {', '.join(f'{x:.1f}' for x in pairs)}")
    if a.json:
        with a.json.open("a") as f:
            f.write(json.dumps({"net": net.name, "vph": a.vph, "duration": a.duration,
                                "all_edges": a.all_edges, "citytwin": ct, "sumo": su,
                                "citytwin_runs": cts, "sumo_runs": sus,
                                "pair_ratios": pairs}) + "\n")
    return 0


SPEED = ("updates_per_second", "step_wall_seconds", "wall_seconds", "peak_rss_mb")


def _median_of(runs: list[dict]) -> dict:
    """One row: the median of each speed figure; the results, which every run must share."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if key in SPEED:
            out[key] = float(np.median([r[key] for r in runs]))
        elif any(r[key] != value for r in runs):
            sys.exit(f"{key} differs between repeats: {[r[key] for r in runs]}")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
