"""HIL benchmarks: device latency, lockstep ticks/s, inbound message rate, realtime overruns.

Everything runs on 127.0.0.1: a Mosquitto started by ``EmbeddedBroker()``, the simulator
(``HilBridge`` and its ``MqttLink``) in this process, and the emulated devices (the real
``citytwin.hil.emulated`` classes) in a few ``_hil_devices.py`` host processes that hold one
MQTT link per device. Each part builds its own city and session and tears it down again.

1. ``latency``: a 3x3 lab grid, one lockstep signal controller and one meter.
   (a) *state*: from the device's ``publish()`` of a ``state`` to the moment the bridge has
   applied it to the junction (``SignalTwin.on_state`` returned in ``external`` mode, i.e. the
   heads are held for the next tick); the bridge is blocked in its lockstep wait meanwhile.
   (b) *command*: from ``HilBridge.send_command()`` (a ``curtail`` to the meter) until the
   bridge has taken the device's ``accepted`` ack (``command_status`` changed); the bridge is
   idle, blocked on its inbox. Both legs are given (CLOCK_MONOTONIC is shared by processes).
2. ``lockstep``: a 10x10 grid at 4,000 veh/h, 1 s ticks, 1, 10 and 100 lockstep signal
   controllers on the central junctions; ticks/s and lockstep misses; the same city in ``fast``
   mode with its 100 controllers configured but none connected, and ``City.step`` alone.
3. ``meters``: 1,000 meters (one link each, in ``--meter-hosts`` processes) flood readings at
   stepped offered rates into a bridge running 10 Hz realtime ticks on a 3x3 grid; readings
   accepted/s, rejected, inbox backlog and CPU of bridge, broker and device hosts.
4. ``realtime``: 10 Hz (``dt=0.1``) realtime at factor 1 on a 30x30 grid holding ~10k
   vehicles (warmed up in fast mode first), 100 signal controllers; overruns, worst lag, tick
   compute time (city step and bridge apart).

    .venv/bin/python benchmarks/hil_bench.py              # everything, about 5 minutes
    .venv/bin/python benchmarks/hil_bench.py --quick      # smoke check, well under a minute
    .venv/bin/python benchmarks/hil_bench.py --parts meters --meter-rates 2000,inf
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import math
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _hil_rig import (  # benchmarks/ is the script's directory
    Session,
    busy_city,
    central_junctions,
    cpu_seconds,
    devices_of,
    grid_city,
    hil_spec,
    session,
    split,
)

from citytwin.errors import BridgeError
from citytwin.hil.clock import Pacer

PARTS = ("latency", "lockstep", "meters", "realtime")


def stats_ms(values: list[float]) -> dict[str, float]:
    """Count, p50, p99, max and mean of durations given in seconds, in milliseconds."""
    a = np.asarray(values, np.float64) * 1e3
    if a.size == 0:
        return {"n": 0, "p50": math.nan, "p99": math.nan, "max": math.nan, "mean": math.nan}
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": float(a.mean())}


# -- 1. latency -------------------------------------------------------------------------------
def bench_latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ticks, n_cmds = (300, 300) if args.quick else (2200, 2000)
    spec = hil_spec("lat", "lockstep", ["r1c1"], meters=1)
    city = grid_city(3, spec, vph=2400.0, dt=1.0)
    applied: dict[int, float] = {}
    acks: list[tuple[str, float, float, str]] = []
    with session(city, spec, workdir / "latency", groups=[devices_of(spec)],
                 trace=True, nice=args.device_nice) as s:
        bridge = s.bridge
        twin = bridge.twins["ctl-r1c1"]
        apply_state = twin.on_state

        def timed(msg: Any, t: float) -> None:
            apply_state(msg, t)
            if twin.mode == "external":  # shown, not held back by the handover
                applied[msg.seq] = time.monotonic()

        twin.on_state = timed  # type: ignore[method-assign]
        bridge.run(ticks)
        for k in range(n_cmds):
            t0 = time.monotonic()
            cid = bridge.send_command("meter-0000", "curtail", {"limit_w": 3000.0 + k % 2})
            while bridge.command_status(cid) == "sent" and time.monotonic() < t0 + 5.0:
                bridge._take(block=0.5)  # what the lockstep wait does: block on the inbox
            acks.append((cid, t0, time.monotonic(), bridge.command_status(cid)))
        kpis = bridge.kpis()
    trace = s.hosts[0].result["trace"]
    published = {seq: t for dev, ch, seq, t, _ in trace if dev == "ctl-r1c1" and ch == "state"}
    state_lat = [applied[q] - published[q] for q in applied if q in published]
    ack_pub = {extra: t for dev, ch, _, t, extra in trace if ch == "ack"}
    out_leg, back_leg, rtt = [], [], []
    for cid, t0, t1, status in acks:
        if status == "sent":
            continue
        rtt.append(t1 - t0)
        tp = ack_pub.get(f"{cid}:accepted")
        if tp is not None:
            out_leg.append(tp - t0)
            back_leg.append(t1 - tp)
    return {"state": stats_ms(state_lat), "cmd_rtt": stats_ms(rtt),
            "cmd_out": stats_ms(out_leg), "ack_back": stats_ms(back_leg),
            "unanswered": sum(1 for a in acks if a[3] == "sent"),
            "rejected": kpis["rejected"], "lockstep_misses": kpis["lockstep_misses"],
            "ticks": kpis["ticks"]}


def print_latency(r: dict[str, Any]) -> None:
    print("\n1. Latency on loopback (ms)")
    print(f"{'what':<58}{'n':>7}{'p50':>8}{'p99':>8}{'max':>8}")
    for key, what in (("state", "(a) state: device publish -> applied to the junction"),
                      ("cmd_rtt", "(b) cmd: send_command -> 'accepted' ack applied"),
                      ("cmd_out", "    leg 1: send_command -> device publishes the ack"),
                      ("ack_back", "    leg 2: device publishes the ack -> applied")):
        x = r[key]
        print(f"{what:<58}{x['n']:>7}{x['p50']:>8.3f}{x['p99']:>8.3f}{x['max']:>8.3f}")
    print(f"({r['ticks']} lockstep ticks; rejected {r['rejected']}, lockstep misses "
          f"{r['lockstep_misses']}, commands unanswered {r['unanswered']})")


# -- 2. lockstep ------------------------------------------------------------------------------
def _cores(c0: dict[str, float], c1: dict[str, float], wall: float) -> dict[str, float]:
    return {k: (c1[k] - c0[k]) / wall for k in c0}


def bench_lockstep(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    ticks = 60 if args.quick else args.lockstep_ticks
    rows = []
    for n in args.lockstep_devices:
        spec = hil_spec(f"ls{n}", "lockstep", central_junctions(10, 10, n))
        city = grid_city(10, spec, vph=4000.0, dt=1.0)
        with session(city, spec, workdir / f"lockstep-{n}", groups=[devices_of(spec)],
                     nice=args.device_nice) as s:
            rows.append(_timed_run(s, f"lockstep, {n} devices", ticks))
    spec = hil_spec("ceiling", "fast", central_junctions(10, 10, max(args.lockstep_devices)))
    city = grid_city(10, spec, vph=4000.0, dt=1.0)
    with session(city, spec, workdir / "lockstep-fast", groups=[], clock="fast") as s:
        rows.append(_timed_run(s, "fast, no devices connected", ticks))
    city = grid_city(10, spec, vph=4000.0, dt=1.0)
    t0 = time.perf_counter()
    for _ in range(ticks):
        city.step()
    wall = time.perf_counter() - t0
    rows.append({"what": "City.step() alone", "ticks": ticks, "ticks_per_s": ticks / wall,
                 "ms_per_tick": 1e3 * wall / ticks, "step_ms": 1e3 * wall / ticks,
                 "misses": 0, "rejected": 0, "flashes": 0, "fallbacks": 0,
                 "cores": {"bridge": math.nan, "broker": math.nan, "devices": math.nan}})
    return rows


def _timed_run(s: Session, what: str, ticks: int) -> dict[str, Any]:
    city = s.bridge.city
    c0, step0, t0 = cpu_seconds(s.pids()), city.step_wall_seconds, time.perf_counter()
    s.bridge.run(ticks)
    wall = time.perf_counter() - t0
    c1 = cpu_seconds(s.pids())
    k = s.bridge.kpis()
    return {"what": what, "ticks": k["ticks"], "ticks_per_s": ticks / wall,
            "ms_per_tick": 1e3 * wall / ticks,
            "step_ms": 1e3 * (city.step_wall_seconds - step0) / ticks,
            "misses": k["lockstep_misses"], "rejected": k["rejected"],
            "flashes": k["conflict_flashes"], "fallbacks": k["fallbacks"],
            "cores": _cores(c0, c1, wall)}


def print_lockstep(rows: list[dict[str, Any]]) -> None:
    print("\n2. Lockstep ticks/s, 10x10 grid, 4,000 veh/h, dt = 1 s")
    print(f"{'run':<30}{'ticks':>6}{'ticks/s':>9}{'ms/tick':>9}{'step ms':>9}{'misses':>8}"
          f"{'rejected':>9}{'flashes':>8}{'cores: bridge':>14}{'broker':>8}{'devices':>8}")
    for r in rows:
        c = r["cores"]
        print(f"{r['what']:<30}{r['ticks']:>6}{r['ticks_per_s']:>9.1f}{r['ms_per_tick']:>9.2f}"
              f"{r['step_ms']:>9.2f}{r['misses']:>8}{r['rejected']:>9}{r['flashes']:>8}"
              f"{c['bridge']:>14.2f}{c['broker']:>8.2f}{c['devices']:>8.2f}")


# -- 3. meters --------------------------------------------------------------------------------
class _Done(Exception):  # noqa: N818 - raised from the tick callback to end bridge.run
    pass


def _sample(s: Session) -> dict[str, Any]:
    """The bridge's counters and every process's CPU at one moment, then the hosts' counts of
    readings made (each with the host's own clock: a starved host answers late)."""
    b = s.bridge
    out = {"t": time.perf_counter(), "cpu": cpu_seconds(s.pids()),
           "received": s.link.messages_in, "applied": b.counters["states_applied"],
           "rejected": sum(list(b.rejected.values())), "backlog": b.inbox.qsize(),
           "overruns": b.pacer.overruns, "ticks": b.counters["ticks"]}
    out["hosts"] = [h.stats() for h in s.hosts]
    return out


def _made_per_s(a: dict[str, Any], b: dict[str, Any]) -> float:
    return sum((y["sent"] - x["sent"]) / (y["t"] - x["t"])
               for x, y in zip(a["hosts"], b["hosts"], strict=True))


def bench_meters(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    schedule = ([("own", 1000.0), ("shared", 4000.0)] if args.quick else
                [("own", r) for r in args.meter_rates] + [("shared", r) for r in args.shared_rates])
    settle, window = (1.0, 3.0) if args.quick else (2.0, 6.0)
    spec = hil_spec("meters", "realtime", meters=args.meters)
    city = grid_city(3, spec, vph=2400.0, dt=0.1)
    rows: list[dict[str, Any]] = []
    step: list[tuple[str, float]] = []
    crash = None
    with session(city, spec, workdir / "meters", groups=split(devices_of(spec),
                                                               args.meter_hosts),
                 flood=True, nice=args.device_nice) as s:
        done = threading.Event()
        failure: list[BaseException] = []

        def control() -> None:
            try:
                for route, rate in schedule:
                    step[:] = [(route, rate)]
                    for h in s.hosts:
                        h.send(f"route {route}")
                        h.send(f"rate {rate / len(s.hosts)}")
                    if done.wait(settle):
                        return
                    a = _sample(s)
                    if done.wait(window):
                        return
                    b = _sample(s)
                    wall = b["t"] - a["t"]
                    rows.append({
                        "route": route, "offered": rate, "made": _made_per_s(a, b),
                        "received": (b["received"] - a["received"]) / wall,
                        "accepted": (b["applied"] - a["applied"]) / wall,
                        "rejected": b["rejected"] - a["rejected"],
                        "backlog": (a["backlog"], b["backlog"]),
                        "overruns": b["overruns"] - a["overruns"],
                        "tick_rate": (b["ticks"] - a["ticks"]) / wall,
                        "cores": _cores(a["cpu"], b["cpu"], wall)})
                    for h in s.hosts:
                        h.send("rate 0")
                    _quiet(s, done)
            except BaseException as exc:
                failure.append(exc)
            finally:
                done.set()

        def stop_when_done(_: float) -> None:
            if done.is_set():
                raise _Done

        thread = threading.Thread(target=control, name="meter-control")
        thread.start()
        try:
            s.bridge.run(10**9, callback=stop_when_done)
        except _Done:
            pass
        except BridgeError as exc:  # a finding, not a failure of the benchmark
            crash = {"route": step[0][0], "offered": step[0][1], "error": str(exc)}
        finally:
            done.set()
            thread.join()
        kpis = s.bridge.kpis()
    if failure:
        raise failure[0]
    return {"rows": rows, "crash": crash, "rejected_by_code": kpis["rejected_by_code"],
            "meters_online_end": kpis["devices_online_end"]}


def _quiet(s: Session, done: threading.Event, limit: float = 30.0) -> None:
    """Wait until the bridge has taken in and applied everything still on its way."""
    end = time.monotonic() + limit
    last = -1
    while time.monotonic() < end and not done.is_set():
        now = s.link.messages_in
        if now == last and s.bridge.inbox.qsize() == 0:
            return
        last = now
        done.wait(0.5)


def print_meters(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n3. Inbound readings, {args.meters} meters in {args.meter_hosts} host processes, "
          "bridge at 10 Hz realtime")
    print(f"{'links':<7}{'offered/s':>10}{'made/s':>9}{'received/s':>11}{'accepted/s':>11}"
          f"{'rejected':>9}{'backlog':>12}{'overruns':>9}{'ticks/s':>8}{'cores: bridge':>14}"
          f"{'broker':>8}{'devices':>8}")
    for x in r["rows"]:
        c = x["cores"]
        backlog = f"{x['backlog'][0]}->{x['backlog'][1]}"
        print(f"{x['route']:<7}{x['offered']:>10.0f}{x['made']:>9.0f}{x['received']:>11.0f}"
              f"{x['accepted']:>11.0f}{x['rejected']:>9}{backlog:>12}{x['overruns']:>9}"
              f"{x['tick_rate']:>8.1f}{c['bridge']:>14.2f}{c['broker']:>8.2f}"
              f"{c['devices']:>8.2f}")
    if r["crash"]:
        c = r["crash"]
        print(f"the bridge stopped at {c['route']} {c['offered']:.0f}/s: {c['error']}")
    print(f"rejected by code over the whole run: {r['rejected_by_code'] or 'none'}; meters "
          f"online at the end: {r['meters_online_end']}")


# -- 4. realtime ------------------------------------------------------------------------------
def bench_realtime(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    vehicles, seconds = (3000, 10.0) if args.quick else (args.vehicles, args.realtime_seconds)
    spec = hil_spec("rt", "realtime", central_junctions(30, 30, 100), lockstep=False)
    t0 = time.perf_counter()
    city = busy_city(30, vehicles, spec, dt=0.1)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    while city.fleet.pending > 0 and city.sim_time < 600:
        city.run_for(5.0)
    warm_s, warm_sim, running0 = time.perf_counter() - t0, city.sim_time, city.fleet.n_running
    slept: dict[int, float] = {}
    marks: list[float] = []
    steps: list[float] = []
    profile = cProfile.Profile() if args.profile else None
    with session(city, spec, workdir / "realtime", groups=[devices_of(spec)],
                 nice=args.device_nice) as s:
        bridge = s.bridge

        def sleep(x: float) -> None:
            slept[city.tick] = x
            time.sleep(x)

        bridge.pacer = Pacer("realtime", city.config.dt, 1.0, sleep=sleep)

        def mark(_: float) -> None:
            marks.append(time.perf_counter())
            steps.append(city.step_wall_seconds)

        k0 = city.kpis()
        tick0, c0 = city.tick, cpu_seconds(s.pids())
        m0, s0 = time.perf_counter(), city.step_wall_seconds
        if profile is not None:
            profile.enable()
        bridge.run(round(seconds / city.config.dt), callback=mark)
        if profile is not None:
            profile.disable()
        wall = time.perf_counter() - m0
        cores = _cores(c0, cpu_seconds(s.pids()), wall)
        k1, kpis = city.kpis(), bridge.kpis()
        worst_lag = bridge.pacer.worst_lag
    ticks = len(marks)
    t_prev, s_prev, compute, step = m0, s0, [], []
    for k in range(ticks):
        compute.append(marks[k] - t_prev - slept.get(tick0 + k + 1, 0.0))
        step.append(steps[k] - s_prev)
        t_prev, s_prev = marks[k], steps[k]
    result = {
        "vehicles": vehicles, "build_s": build_s, "warmup_s": warm_s, "warmup_sim_s": warm_sim,
        "running_start": running0, "running_end": city.fleet.n_running,
        "mean_running": (k1["vehicle_updates"] - k0["vehicle_updates"]) / max(ticks, 1),
        "ticks": ticks, "wall_s": wall, "overruns": kpis["overruns"],
        "worst_lag_ms": 1e3 * worst_lag, "compute": stats_ms(compute), "step": stats_ms(step),
        "bridge": stats_ms([c - st for c, st in zip(compute, step, strict=True)]),
        "rejected": kpis["rejected"], "rejected_by_code": kpis["rejected_by_code"],
        "flashes": kpis["conflict_flashes"], "fallbacks": kpis["fallbacks"],
        "messages_in": kpis["messages_in"], "messages_out": kpis["messages_out"],
        "cores": cores, "devices": s.hosts[0].result.get("devices", {})}
    if profile is not None:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
        result["profile"] = text.getvalue()
    return result


def print_realtime(r: dict[str, Any]) -> None:
    print(f"\n4. Realtime 10 Hz, factor 1, 30x30 grid, {r['vehicles']:,} trips, "
          "100 signal controllers")
    print(f"city built in {r['build_s']:.1f} s, warmed up in fast mode {r['warmup_sim_s']:.0f} "
          f"sim s in {r['warmup_s']:.1f} s; running {r['running_start']:,} -> "
          f"{r['running_end']:,} (mean {r['mean_running']:,.0f})")
    print(f"{r['ticks']} ticks in {r['wall_s']:.1f} s: overruns {r['overruns']}, worst lag "
          f"{r['worst_lag_ms']:.1f} ms")
    print(f"{'per tick, ms':<34}{'mean':>8}{'p50':>8}{'p99':>8}{'max':>8}")
    for key, what in (("compute", "compute (tick minus pacing sleep)"),
                      ("step", "  City.step"), ("bridge", "  bridge: drain, apply, publish")):
        x = r[key]
        print(f"{what:<34}{x['mean']:>8.2f}{x['p50']:>8.2f}{x['p99']:>8.2f}{x['max']:>8.2f}")
    c = r["cores"]
    print(f"rejected {r['rejected']} {r['rejected_by_code']}, conflict flashes {r['flashes']}, "
          f"fallbacks {r['fallbacks']}; messages in {r['messages_in']:,}, out "
          f"{r['messages_out']:,}; cores: bridge {c['bridge']:.2f}, broker {c['broker']:.2f}, "
          f"devices {c['devices']:.2f}")
    if "profile" in r:
        print(r["profile"])


# -- command line -----------------------------------------------------------------------------
def _rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def machine() -> str:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    try:
        version = subprocess.run([mosquitto, "-h"], capture_output=True, text=True,
                                 timeout=5).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        version = "mosquitto ?"
    return (f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, {version}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated subset of {', '.join(PARTS)} (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    p.add_argument("--lockstep-devices", type=_ints, default=[1, 10, 100], metavar="N,N",
                   help="device counts of part 2 (default: 1,10,100)")
    p.add_argument("--lockstep-ticks", type=int, default=600, help="ticks per run of part 2")
    p.add_argument("--meters", type=int, default=1000, help="meters of part 3")
    p.add_argument("--meter-hosts", type=int, default=4,
                   help="processes the meters run in (paho's select() loop limits a process "
                   "to ~330 links; default: 4)")
    p.add_argument("--meter-rates", type=_rates,
                   default=[1000.0, 2000.0, 4000.0, 6000.0, math.inf],
                   metavar="R,R", help="offered readings/s of part 3, each meter on its own "
                   "link ('inf': flat out)")
    p.add_argument("--shared-rates", type=_rates,
                   default=[6000.0, 8000.0, 10000.0, 12000.0, 15000.0, math.inf], metavar="R,R",
                   help="offered readings/s of part 3 sent on one shared link per host process")
    p.add_argument("--device-nice", type=int, default=10, metavar="N",
                   help="niceness of the device host processes: they stand in for hardware "
                   "elsewhere and must not take the simulator's CPU (default: 10)")
    p.add_argument("--vehicles", type=int, default=11000, help="trips of part 4")
    p.add_argument("--realtime-seconds", type=float, default=60.0,
                   help="wall seconds of part 4")
    p.add_argument("--profile", action="store_true", help="part 4 under cProfile (slower)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where device logs go (default: a temporary folder, removed)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--log-level", default="error",
                   choices=("debug", "info", "warning", "error"))
    args = p.parse_args()
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; "
          f"{'quick' if args.quick else 'full'} run")
    results: dict[str, Any] = {}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        for part in parts:
            t0 = time.perf_counter()
            if part == "latency":
                results[part] = bench_latency(args, workdir)
                print_latency(results[part])
            elif part == "lockstep":
                results[part] = bench_lockstep(args, workdir)
                print_lockstep(results[part])
            elif part == "meters":
                results[part] = bench_meters(args, workdir)
                print_meters(results[part], args)
            else:
                results[part] = bench_realtime(args, workdir)
                print_realtime(results[part])
            print(f"({part}: {time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
