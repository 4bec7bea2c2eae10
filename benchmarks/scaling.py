"""Scaling curve of citytwin: vehicle-updates/s and memory from 1k to 1M vehicles at once.

For each size N a child process (``_scaling_child.py``, launched through ``_rss.py`` so its
peak memory is its own) builds a signalised grid, 2 lanes per direction, 200 m blocks, just
large enough to hold N vehicles at the given density, gives N trips one-turn routes of up to
24 blocks departing in the first 60 s, steps until all have departed, and measures ``--ticks``
ticks. Prints per size: vehicles running, vehicle-updates/s of the stepping loop (kpis deltas
over the window), bytes per vehicle slot of the simulation state, bytes per trip of the trip
and route tables, peak RSS and the time of each phase; plots updates/s and bytes per vehicle.

    python benchmarks/scaling.py
    python benchmarks/scaling.py --sizes 1000,10000 --ticks 20 --plot /tmp/scaling.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from compare_sumo import peak_rss_of  # benchmarks/ is the script's directory

HERE = Path(__file__).resolve().parent

#: (heading, width, format, row key) of the printed table.
COLUMNS = [
    ("vehicles", 10, ",d", "size"), ("grid", 5, "d", "grid"), ("veh/lane-km", 12, ".1f", "density"),
    ("running", 10, ",.0f", "mean_running"), ("updates/s", 12, ",.0f", "updates_per_second"),
    ("ms/tick", 9, ".2f", "ms_per_tick"), ("state B/slot", 13, ".0f", "state_bytes_per_slot"),
    ("trip B/trip", 12, ".0f", "trip_bytes_per_trip"), ("id B/trip", 10, ".0f",
                                                          "trip_id_bytes_per_trip"),
    ("peak RSS MB", 12, ",.0f", "peak_rss_mb"),
]
PHASES = [("network s", "network_s"), ("demand s", "demand_s"), ("city s", "city_s"),
          ("warm-up s", "warmup_s"), ("warm-up sim s", "warmup_sim_s"),
          ("window s", "window_s"), ("process s", "process_s")]


def run_size(size: int, ticks: int, density: float, seed: int) -> dict:
    """Measure one size in its own process; the child's row plus peak RSS and wall time."""
    cmd = [sys.executable, str(HERE / "_scaling_child.py"), str(size), str(ticks),
           str(density), str(seed)]
    text, wall, rss = peak_rss_of(cmd)
    row = json.loads(next(ln for ln in reversed(text.splitlines()) if ln.startswith('{"size"')))
    row["peak_rss_mb"] = rss / 2**20
    row["process_s"] = wall
    row["ms_per_tick"] = 1000 * row["step_wall_s"] / ticks
    return row


def print_table(rows: list[dict]) -> None:
    """The figures table, then the time of each phase."""
    print("".join(f"{h:>{w}}" for h, w, _, _ in COLUMNS))
    for r in rows:
        print("".join(f"{r[k]:>{w}{f}}" for _, w, f, k in COLUMNS))
    print()
    print(f"{'vehicles':>10}" + "".join(f"{h:>15}" for h, _ in PHASES))
    for r in rows:
        print(f"{r['size']:>10,d}" + "".join(f"{r[k]:>15.2f}" for _, k in PHASES))


def plot(rows: list[dict], path: Path) -> None:
    """Updates/s and bytes per vehicle against vehicles running, log x."""
    running = [r["mean_running"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(running, [r["updates_per_second"] for r in rows], "o-")
    left.set(xscale="log", xlabel="vehicles running", ylabel="vehicle-updates/s",
             title="stepping speed")
    left.set_ylim(bottom=0)
    right.plot(running, [r["state_bytes_per_slot"] for r in rows], "o-",
               label="simulation state per vehicle slot")
    right.plot(running, [r["trip_bytes_per_trip"] for r in rows], "s-",
               label="trip and route tables per trip")
    right.set(xscale="log", xlabel="vehicles running", ylabel="bytes", title="memory")
    right.set_ylim(bottom=0)
    right.legend()
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000,1000000",
                   help="vehicles on the network at once, comma-separated")
    p.add_argument("--ticks", type=int, default=60, help="measured ticks per size")
    p.add_argument("--density", type=float, default=22.5,
                   help="most vehicles per lane-km (picks the grid size)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plot", type=Path, default=HERE / "scaling.png")
    p.add_argument("--json", type=Path, help="append one JSON line per size here")
    a = p.parse_args(argv)
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        print(f"{size:,d} vehicles ...", file=sys.stderr, flush=True)
        rows.append(run_size(size, a.ticks, a.density, a.seed))
        if a.json:
            with a.json.open("a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    print_table(rows)
    plot(rows, a.plot)
    print(f"\nplot: {a.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
