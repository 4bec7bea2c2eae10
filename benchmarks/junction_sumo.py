"""One signalised junction side by side with SUMO: a permissive left turn against oncoming traffic.

On the 3 x 3 test grid (``tests/data/grid3_tls.net.xml``, netgenerate, two lanes, static
programs), junction B1 is approached from the west by through traffic (group ``T``:
left1A1 -> C1right1) and from the east by left turners (``L``: right1C1 -> B0bottom1, a
permissive ``g`` link that waits inside the junction for gaps in ``T``) and by through
traffic sharing their lane (``W``: right1C1 -> A1left1). Poisson departures at the given rates
for 30 minutes; both simulators run the same routes (SUMO with the IDM vType of
``compare_sumo.py`` and its options). Prints per group: trips, mean timeLoss and mean waiting
time in both, and the teleports. Grid-wide comparisons mix every rule of the model; this one
isolates gap acceptance, entering on green while foes are inside, and lane sharing at one
junction. Needs the ``sumo`` extra.

    python benchmarks/junction_sumo.py --through 800 --left 200 --shared 0
"""

from __future__ import annotations

import argparse
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from compare_sumo import HERE, SUMO_OPTIONS, sumo_bin

from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.demand import Trip, VehicleType
from citytwin.model.sumo_net import read_sumo_net
from citytwin.model.sumo_routes import read_sumo_routes, write_sumo_routes

NET = HERE.parent / "tests" / "data" / "grid3_tls.net.xml"
GROUPS = {"T": ("left1A1", "A1B1", "B1C1", "C1right1"),
          "L": ("right1C1", "C1B1", "B1B0", "B0bottom1"),
          "W": ("right1C1", "C1B1", "B1A1", "A1left1")}
DURATION, END = 1800.0, 7200.0


def write_routes(rates: dict[str, float], seed: int, out: Path) -> Path:
    rng = np.random.default_rng(seed)
    trips = []
    for g, vph in rates.items():
        t, k = 0.0, 0
        while vph > 0:
            t += rng.exponential(3600.0 / vph)
            if t >= DURATION:
                break
            trips.append(Trip(f"{g}{k}", round(t, 1), GROUPS[g][0], GROUPS[g][-1],
                              route=GROUPS[g]))
            k += 1
    trips.sort(key=lambda tr: (tr.depart, tr.id))
    rou = out / "junction.rou.xml"
    write_sumo_routes(trips, {"DEFAULT_VEHTYPE": VehicleType()}, rou)
    return rou


def by_group(rows: list[tuple[str, float, float]]) -> dict[str, tuple[int, float, float]]:
    out = {}
    for g in GROUPS:
        sel = [(tl, w) for i, tl, w in rows if i[0] == g]
        if sel:
            out[g] = (len(sel), float(np.mean([s[0] for s in sel])),
                      float(np.mean([s[1] for s in sel])))
    return out


def run_sumo(rou: Path, out: Path) -> tuple[dict, int]:
    tripinfo = out / "junction.tripinfo.xml"
    proc = subprocess.run([sumo_bin("sumo"), "-n", str(NET), "-r", str(rou), "--end", str(END),
                           "--tripinfo-output", str(tripinfo), "--no-step-log", "true",
                           "--duration-log.statistics", "true", *SUMO_OPTIONS],
                          capture_output=True, text=True, check=True)
    rows = [(ti.get("id"), float(ti.get("timeLoss")), float(ti.get("waitingTime")))
            for ti in ET.parse(tripinfo).getroot().iter("tripinfo")]
    teleports = 0
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip().startswith("Teleports:"):
            teleports = int(line.split()[1])
    return by_group(rows), teleports


def run_citytwin(rou: Path) -> tuple[dict, int]:
    net = read_sumo_net(NET)
    city = City(net, read_sumo_routes(rou, net), rng=1,
                config=SimConfig(mesa_agents=False, reroute_period=0))
    city.run_until_done(END)
    t = city.trips_table().to_pydict()
    rows = list(zip(t["id"], t["time_loss"], t["waiting_time"], strict=True))
    return by_group(rows), int(city.kpis()["teleports"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--through", type=float, default=800.0, help="T, veh/h")
    p.add_argument("--left", type=float, default=200.0, help="L, veh/h")
    p.add_argument("--shared", type=float, default=0.0, help="W, veh/h")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "out")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rou = write_routes({"T": a.through, "L": a.left, "W": a.shared}, a.seed, a.out)
    sumo, sumo_tp = run_sumo(rou, a.out)
    ct, ct_tp = run_citytwin(rou)
    print(f"junction B1 of {NET.name}: T {a.through:g}, L {a.left:g}, W {a.shared:g} veh/h "
          f"for {DURATION:g} s, seed {a.seed}")
    print(f"{'group':<6}{'trips':>7}{'timeLoss ct':>13}{'SUMO':>8}{'change':>9}"
          f"{'waiting ct':>12}{'SUMO':>8}")
    for g, (n, tl, w) in sumo.items():
        cn, ctl, cw = ct.get(g, (0, float("nan"), float("nan")))
        print(f"{g:<6}{cn:>4}/{n:<4}{ctl:>11.1f}{tl:>8.1f}{100 * (ctl / tl - 1):>+8.1f}%"
              f"{cw:>12.1f}{w:>8.1f}")
    print(f"teleports: citytwin {ct_tp}, SUMO {sumo_tp}")


if __name__ == "__main__":
    main()
