"""The ``citytwin`` command line: run a scenario and write its run folder, list scenarios.

Each subcommand is one ``_add_<name>(subparsers)`` function that registers its parser and sets
``handler``; :func:`main` parses, dispatches and turns errors into exit codes, so a new
subcommand (``device``, ``bridge``, ``replay``, ``compare``) is one more function in
:data:`_COMMANDS`.

Exit codes: 0 ok; 1 the run failed (stepping or writing outputs, or an unexpected error);
2 bad input (arguments, unknown scenario, invalid scenario file); 130 interrupted. Errors are
one line on stderr plus a hint; ``--debug`` or ``CITYTWIN_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from citytwin import _argtypes as argtypes
from citytwin.errors import CityTwinError, DemandError, NetworkError, ScenarioError

#: Errors that mean "the input is wrong" (exit code 2); every other error is a failed run (1).
_BAD_INPUT = (ScenarioError, NetworkError, DemandError)
#: Progress bar refreshes at most this often (seconds of wall time).
_PROGRESS_INTERVAL = 0.25


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, bad arguments (argparse printed why)
        return exc.code if isinstance(exc.code, int) else 2
    debug = bool(getattr(args, "debug", False)) or os.environ.get("CITYTWIN_DEBUG", "") not in (
        "", "0")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("citytwin: interrupted", file=sys.stderr)
        return 130
    except _BAD_INPUT as exc:
        _report(exc, "check the scenario file (docs/scenarios.md describes every key)", debug)
        return 2
    except CityTwinError as exc:
        _report(exc, "rerun with --debug for the traceback", debug)
        return 1
    except OSError as exc:
        _report(exc, "check that the run folder (--out) can be written", debug)
        return 1
    except Exception as exc:  # the CLI's last line of defence
        _report(exc, "this is a bug in citytwin; rerun with --debug and report the traceback",
                debug, unexpected=True)
        return 1


def _report(exc: BaseException, hint: str, debug: bool, unexpected: bool = False) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    name = f"{type(exc).__name__}: " if unexpected else ""
    print(f"citytwin: error: {name}{exc}", file=sys.stderr)
    if not debug:
        print(f"hint: {hint}", file=sys.stderr)


# -- parsers ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    from citytwin import __version__

    parser = argparse.ArgumentParser(
        prog="citytwin", description="A city traffic digital twin on Mesa and Numba.")
    parser.add_argument("--version", action="version", version=f"citytwin {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="print tracebacks of errors (also: CITYTWIN_DEBUG=1)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub, common)
    return parser


def _add_run(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="run a scenario and write its outputs",
                       description="Run a scenario and write manifest.json, kpis.json and "
                       "trips/summary/junctions.parquet into a run folder.")
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a built-in scenario name (see 'citytwin list') or a .toml file")
    p.add_argument("--seed", type=argtypes.non_negative_int, default=None,
                   help="seed of the run (default: the scenario's seed)")
    p.add_argument("--duration", type=argtypes.positive_float, default=None, metavar="S",
                   help="run exactly S sim seconds (default: the scenario's duration, or "
                   "until every trip finished)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="run folder (default: runs/<scenario>-<seed>-<UTC time>)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no KPI table; print only the run folder")
    hil = p.add_argument_group("devices (scenarios with a [hil] table)")
    hil.add_argument("--broker", metavar="URL", default=None,
                     help="external broker, mqtt://[user:pass@]host[:port] or mqtts://...?ca="
                     "FILE (default: an embedded broker on a free loopback port)")
    hil.add_argument("--clock", choices=("fast", "realtime", "lockstep"), default=None,
                     help="clock mode (default: the scenario's)")
    hil.add_argument("--factor", type=argtypes.positive_float, default=None, metavar="F",
                     help="realtime: sim seconds per wall second (default: the scenario's)")
    hil.add_argument("--strict", action="store_true",
                     help="realtime: fail at the first overrun")
    hil.add_argument("--no-emulate", dest="emulate", action="store_false",
                     help="start no emulated devices; wait for real ones")
    p.set_defaults(handler=_cmd_run)


def _add_replay(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("replay", parents=[common], help="re-run a recorded HIL session",
                       description="Re-run the HIL session recorded in RUN_DIR (its "
                       "devices.jsonl) without broker or devices, and write its outputs.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="folder of the recorded run")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder for the replay's outputs")
    p.add_argument("--quiet", action="store_true", help="print only the run folder")
    p.set_defaults(handler=_cmd_replay)


def _add_list(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("list", parents=[common], help="list the built-in scenarios")
    p.set_defaults(handler=_cmd_list)


def _add_device(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from citytwin.hil.emulated.runner import add_device_arguments, run_device

    p = sub.add_parser("device", parents=[common], help="run an emulated device over MQTT",
                       description="Run an emulated signal controller, drone or meter that "
                       "speaks the HIL contract (docs/hil-protocol.md) until SIGINT/SIGTERM.")
    add_device_arguments(p)
    p.set_defaults(handler=run_device)


def _add_bridge(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from citytwin.firmware_bridge.runner import add_bridge_arguments, run_bridge

    p = sub.add_parser("bridge", parents=[common], help="connect devices on other links",
                       description="Connect devices that do not speak MQTT themselves to the "
                       "HIL contract (docs/hil-protocol.md).")
    links = p.add_subparsers(title="links", metavar="LINK", required=True)
    s = links.add_parser("serial", parents=[common], help="microcontroller boards on serial "
                         "ports (docs/firmware-protocol.md)",
                         description="Map each device on a serial port (framed protocol of "
                         "docs/firmware-protocol.md) onto the MQTT device contract, until "
                         "SIGINT/SIGTERM.")
    add_bridge_arguments(s)
    s.set_defaults(handler=run_bridge)


def _add_firmware_emulator(sub: argparse._SubParsersAction,
                           common: argparse.ArgumentParser) -> None:
    from citytwin.firmware_bridge.runner import add_emulator_arguments, run_emulator

    p = sub.add_parser("firmware-emulator", parents=[common],
                       help="run the reference board firmware on a pseudo-terminal",
                       description="Run the reference firmware (firmware/) of a signal or "
                       "meter board on a pseudo-terminal and print the port to give to "
                       "'citytwin bridge serial', until SIGINT/SIGTERM.")
    add_emulator_arguments(p)
    p.set_defaults(handler=run_emulator)


def _add_compare(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compare", parents=[common], help="compare signal policies over seeds",
                       description="Run every signal policy on the same demand and seeds and "
                       "write comparison.json and report.md with PNG plots into DIR.")
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a built-in scenario name (see 'citytwin list') or a .toml file")
    p.add_argument("--policies", required=True, metavar="P[,P...]",
                   help="policies, the first is the reference: fixed, actuated, "
                   "max-pressure, sotl, green-wave, program; parameters as "
                   "name:key=value (e.g. max-pressure:min_green=8)")
    p.add_argument("--seeds", type=argtypes.positive_int, required=True, metavar="N",
                   help="number of seeds (the scenario's seed and the N-1 after it)")
    p.add_argument("--first-seed", type=argtypes.non_negative_int, default=None, metavar="S",
                   help="first seed (default: the scenario's)")
    p.add_argument("--duration", type=argtypes.positive_float, default=None, metavar="S",
                   help="run exactly S sim seconds (default: the scenario's)")
    p.add_argument("--workers", type=argtypes.positive_int, default=2, metavar="W",
                   help="worker processes (default 2; 1 runs in this process)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--quiet", action="store_true", help="print only where the outputs went")
    p.set_defaults(handler=_cmd_compare)


_COMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    _add_run, _add_list, _add_replay, _add_compare, _add_device, _add_bridge,
    _add_firmware_emulator]


# -- commands ---------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace) -> int:
    from citytwin.scenarios import builtin_scenarios

    found = builtin_scenarios()
    width = max((len(n) for n in found), default=0)
    for name, description in found.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from citytwin.model.outputs import write_run
    from citytwin.scenarios import load_scenario

    scenario = load_scenario(args.scenario)
    seed = scenario.seed if args.seed is None else args.seed
    city = scenario.build_city(seed)
    started = datetime.now(UTC)
    out = args.out or _default_out(scenario.name, seed, started)
    duration = args.duration if args.duration is not None else scenario.spec.duration
    show_progress = not args.quiet and sys.stderr.isatty()
    kpis = None
    with _Progress(duration, enabled=show_progress) as progress:
        if scenario.spec.hil is not None:
            from citytwin.hil.session import SessionOptions, run_session

            bridge = run_session(scenario, city, Path(out), SessionOptions(
                broker=args.broker, clock=args.clock, factor=args.factor, strict=args.strict,
                emulate=args.emulate), duration=duration, callback=progress.update)
            kpis = {**city.kpis(), "hil": bridge.kpis()}
        else:
            scenario.run(city, duration=args.duration, callback=progress.update)
    tables = scenario.emergency_outputs(city, seed, args.duration)
    path = write_run(city, out, scenario_name=scenario.name, scenario_path=scenario.path,
                     scenario_sha256=scenario.sha256, seed=seed, started=started,
                     extra={"duration_requested_s": duration,
                            "max_duration_s": scenario.spec.max_duration}, kpis=kpis,
                     tables=tables)
    if not args.quiet:
        _print_kpis(kpis or city.kpis(), sys.stdout)
    print(f"outputs written to {path}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    import json

    from citytwin.hil.session import replay_session
    from citytwin.model.outputs import write_run
    from citytwin.scenarios import load_scenario

    manifest_path = args.run_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{args.run_dir}: cannot read manifest.json ({exc})") from None
    scenario = load_scenario(manifest.get("scenario_file") or manifest["scenario"])
    if manifest.get("scenario_sha256") not in (None, scenario.sha256):
        print("citytwin: warning: the scenario file changed since the run", file=sys.stderr)
    seed = int(manifest["seed"])
    city = scenario.build_city(seed)
    started = datetime.now(UTC)
    bridge = replay_session(args.run_dir, scenario, city)
    extra = {"replay_of": str(args.run_dir), **manifest.get("extra", {})}
    kpis = {**city.kpis(), "hil": bridge.kpis()}
    path = write_run(city, args.out, scenario_name=scenario.name, scenario_path=scenario.path,
                     scenario_sha256=scenario.sha256, seed=seed, started=started, extra=extra,
                     kpis=kpis)
    if not args.quiet:
        _print_kpis(kpis, sys.stdout)
    print(f"outputs written to {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from citytwin.scenarios import load_scenario
    from citytwin.scenarios.compare import (
        METRICS,
        parse_policies,
        run_comparison,
        write_comparison,
    )
    from citytwin.scenarios.report import write_report

    scenario = load_scenario(args.scenario)
    policies = parse_policies(args.policies)
    for p in policies:  # every policy's parameters are checked before anything runs
        scenario.with_signals(p.table, f"--policies {p.label}")
    first = scenario.seed if args.first_seed is None else args.first_seed
    seeds = list(range(first, first + args.seeds))

    def progress(done: int, total: int) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\rruns {done}/{total}", end="", file=sys.stderr, flush=True)

    result = run_comparison(str(scenario.path), policies, seeds, duration=args.duration,
                            workers=args.workers, progress=progress)
    write_comparison(result, args.out, scenario.name, scenario.sha256)
    command = "citytwin compare " + " ".join(
        [args.scenario, "--policies", args.policies, "--seeds", str(args.seeds)]
        + (["--first-seed", str(args.first_seed)] if args.first_seed is not None else [])
        + (["--duration", f"{args.duration:g}"] if args.duration is not None else [])
        + ["--out", str(args.out)])
    write_report(result, args.out, scenario.name, command)
    if not args.quiet:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        for key, unit, _ in METRICS:
            row = []
            for p in result["policies"]:
                m = result["results"][p][key]
                if m["mean"] is None:
                    row.append("n/a")
                    continue
                ch = m.get("change_vs_first")
                tail = (f" ({100 * ch['mean']:+.1f} %)" if ch and ch["mean"] is not None
                        else "")
                row.append(f"{m['mean']:.4g}{tail}")
            print(f"{key + ' (' + unit + ')':<34}" + "  ".join(f"{c:>22}" for c in row))
    print(f"outputs written to {args.out}")
    return 0


def _default_out(name: str, seed: int, started: datetime) -> Path:
    stamp = started.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name}-{seed}-{stamp}"
    out, k = base, 1
    while out.exists():  # two runs in the same second
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


class _Progress:
    """A tqdm bar over sim seconds, refreshed at most every :data:`_PROGRESS_INTERVAL` s."""

    def __init__(self, total: float | None, *, enabled: bool) -> None:
        self._bar = None
        self._shown = 0.0
        self._last = 0.0
        if enabled:
            from tqdm import tqdm

            fmt = ("{l_bar}{bar}| {n:.0f}/{total:.0f} sim s [{elapsed}<{remaining}, "
                   "{rate_fmt}]" if total else "{n:.0f} sim s [{elapsed}, {rate_fmt}]")
            self._bar = tqdm(total=total, unit=" sim s", file=sys.stderr, dynamic_ncols=True,
                             mininterval=_PROGRESS_INTERVAL, leave=False, bar_format=fmt)

    def update(self, sim_time: float) -> None:
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._last >= _PROGRESS_INTERVAL:
            self._last = now
            self._bar.update(sim_time - self._shown)
            self._shown = sim_time

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


_TABLE = (
    ("inserted", "vehicles_inserted", "{:d}"),
    ("arrived", "vehicles_arrived", "{:d}"),
    ("running at end", "vehicles_running_end", "{:d}"),
    ("teleports", "teleports", "{:d}"),
    ("mean duration", "mean_duration_s", "{:.1f} s"),
    ("mean time loss", "mean_time_loss_s", "{:.1f} s"),
    ("mean waiting", "mean_waiting_time_s", "{:.1f} s"),
    ("sim time", "sim_seconds", "{:.0f} s"),
    ("updates/s", "updates_per_second", "{:,.0f}"),
    ("wall time (steps)", "step_wall_seconds", "{:.2f} s"),
)


_HIL_TABLE = (
    ("devices seen", "devices_seen", "{:d}"),
    ("messages in / out", ("messages_in", "messages_out"), "{:d} / {:d}"),
    ("rejected", "rejected", "{:d}"),
    ("commands sent / acked", ("commands_sent", "commands_acked"), "{:d} / {:d}"),
    ("overruns", "overruns", "{:d}"),
    ("lockstep misses", "lockstep_misses", "{:d}"),
    ("fallbacks", "fallbacks", "{:d}"),
    ("conflict flashes", "conflict_flashes", "{:d}"),
)


def _print_kpis(kpis: dict, out: TextIO) -> None:
    hil = kpis.get("hil")
    rows = list(_TABLE) + (list(_HIL_TABLE) if hil else [])
    width = max(len(label) for label, _, _ in rows)
    for label, key, fmt in _TABLE:
        value = kpis[key]
        text = "n/a" if isinstance(value, float) and value != value else fmt.format(value)
        print(f"{label:<{width}}  {text:>12}", file=out)
    if hil:
        print(f"devices ({hil['clock']} clock, {hil['devices_configured']} configured)",
              file=out)
        for label, keys, fmt in _HIL_TABLE:
            values = [hil[k] for k in (keys if isinstance(keys, tuple) else (keys,))]
            print(f"{label:<{width}}  {fmt.format(*values):>12}", file=out)
