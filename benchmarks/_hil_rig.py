"""The simulator side of hil_bench.py: cities with devices, and a whole HIL session around them.

:func:`session` wires what :func:`citytwin.hil.session.run_session` wires (a Mosquitto from
:class:`~citytwin.hil.broker.EmbeddedBroker` on 127.0.0.1, the simulator's
:class:`~citytwin.hil.transport.MqttLink`, the :class:`~citytwin.hil.bridge.HilBridge` with its
device log) but starts the devices as a few :mod:`_hil_devices` host processes instead of one
``citytwin device`` process per device, and hands the bridge back before it runs, so a
benchmark can time it. Everything is torn down on exit, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from citytwin.agents.vehicles import VehicleFleet, type_arrays
from citytwin.hil.bridge import HilBridge, hil_detectors
from citytwin.hil.broker import EmbeddedBroker
from citytwin.hil.record import FILE_NAME, Recorder
from citytwin.hil.session import connect
from citytwin.hil.transport import MqttLink
from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.demand import Demand
from citytwin.model.grid import grid_network
from citytwin.scenarios.loader import Scenario
from citytwin.scenarios.schema import (
    DemandSpec,
    GridSpec,
    HilMeterSpec,
    HilSignalSpec,
    HilSpec,
    NetworkSpec,
    RandomSpec,
    ScenarioSpec,
    SimulationSpec,
)

HERE = Path(__file__).resolve().parent
#: ``(kind, device id, lockstep)`` of one emulated device.
DeviceRow = tuple[str, str, bool]


# -- cities -----------------------------------------------------------------------------------
def central_junctions(rows: int, cols: int, n: int) -> list[str]:
    """The ``n`` grid junctions (``r{i}c{j}``) nearest the grid's centre."""
    cr, cc = (rows - 1) / 2, (cols - 1) / 2
    cells = sorted(((r - cr) ** 2 + (c - cc) ** 2, r, c) for r in range(rows)
                   for c in range(cols))
    if n > len(cells):
        raise ValueError(f"a {rows}x{cols} grid has {len(cells)} junctions, not {n}")
    return [f"r{r}c{c}" for _, r, c in cells[:n]]


def hil_spec(site: str, clock: str, signals: Sequence[str] = (), *, lockstep: bool = True,
             meters: int = 0) -> HilSpec:
    """A ``[hil]`` table: a controller ``ctl-{tls}`` per junction and ``meters`` meters
    (never lockstep: a meter answers a clock only every reporting period)."""
    return HilSpec(
        site=site, clock=clock,
        signal=[HilSignalSpec(id=f"ctl-{t}", tls=t, lockstep=lockstep) for t in signals],
        meter=[HilMeterSpec(id=f"meter-{k:04d}", building=f"bldg-{k:04d}", lockstep=False)
               for k in range(meters)])


def devices_of(spec: HilSpec) -> list[DeviceRow]:
    """The emulated devices a scenario's ``[hil]`` table asks for."""
    return ([("signal", s.id, s.lockstep) for s in spec.signal]
            + [("meter", m.id, m.lockstep) for m in spec.meter])


def grid_city(side: int, spec: HilSpec, *, vph: float, dt: float, seed: int = 7) -> City:
    """A lab-like scenario: a signalised ``side`` x ``side`` grid of two-lane streets on 200 m
    blocks, random fringe-to-fringe trips for an hour, built as ``citytwin run`` builds it."""
    scenario_spec = ScenarioSpec(
        name="hil-bench", seed=seed,
        network=NetworkSpec(grid=GridSpec(rows=side, cols=side, lanes=2)),
        demand=DemandSpec(random=RandomSpec(end=3600.0, vehs_per_hour=vph)),
        simulation=SimulationSpec(dt=dt), hil=spec)
    return Scenario(scenario_spec, HERE / "hil_bench.py", "").build_city(seed)


def busy_city(side: int, vehicles: int, spec: HilSpec, *, dt: float, seed: int = 1) -> City:
    """A ``side`` x ``side`` grid holding ``vehicles`` at once: one-turn routes of up to 24
    blocks, all departing in the first 60 s (scaling.py's demand), with the devices' loop
    detectors. Routes are built as index arrays (``City`` would route 10k trips in Python)."""
    from _scaling_child import ATTACH, BLOCK, DEPART_WINDOW, LANES, edge_table, one_turn_routes

    net = grid_network(side, side, edge_length=BLOCK, lanes=LANES, attach_length=ATTACH)
    rng = np.random.default_rng(seed)
    ptr, edges = one_turn_routes(edge_table(net, side), vehicles, rng)
    depart = np.sort(rng.uniform(0.0, DEPART_WINDOW, vehicles))
    config = SimConfig(dt=dt)
    city = City(net, Demand(), config=config, rng=seed,
                detectors=hil_detectors(net, spec, config.detector_gap))
    city.fleet = VehicleFleet(
        net.arrays, net.edge_ids, type_arrays(city.vtypes), [f"v{k}" for k in range(vehicles)],
        depart, np.zeros(vehicles, np.int32), ptr[:-1], np.diff(ptr).astype(np.int32), edges,
        np.full(vehicles, -1.0))
    return city


# -- device host processes --------------------------------------------------------------------
class Host:
    """One ``_hil_devices.py`` process serving ``devices``."""

    def __init__(self, name: str, url: str, site: str, devices: list[DeviceRow], workdir: Path,
                 *, flood: bool = False, trace: bool = False, nice: int = 0) -> None:
        self.name = name
        self.result_path = workdir / f"{name}.result.json"
        config = workdir / f"{name}.json"
        config.write_text(json.dumps({"broker": url, "site": site, "devices": devices,
                                      "flood": flood, "trace": trace, "nice": nice,
                                      "result": str(self.result_path)}))
        with (workdir / f"{name}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "_hil_devices.py"), str(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                bufsize=1)
        self.result: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        """Block until every link of the host is up."""
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if '"ready"' not in line:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            raise RuntimeError(f"device host {self.name} failed to start (exit code "
                               f"{self.proc.poll()}); see its .log")

    def send(self, command: str) -> None:
        if self.proc.stdin and self.proc.poll() is None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()

    def stats(self) -> dict[str, Any]:
        """``{"sent": readings published, "t": its monotonic clock}``."""
        self.send("stats")
        return json.loads(self.proc.stdout.readline()) if self.proc.stdout else {}

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the host to say goodbye and exit; kill it if it does not; read its result."""
        with contextlib.suppress(OSError):
            self.send("stop")
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.result_path.is_file():
            self.result = json.loads(self.result_path.read_text())


# -- sessions ---------------------------------------------------------------------------------
@dataclass
class Session:
    """A running HIL session: the bridge (not yet stepped), its link, broker and hosts."""

    bridge: HilBridge
    link: MqttLink
    broker_pid: int
    hosts: list[Host] = field(default_factory=list)

    def pids(self) -> dict[str, list[int]]:
        """Process ids by role, for CPU accounting."""
        return {"bridge": [psutil.Process().pid], "broker": [self.broker_pid],
                "devices": [h.pid for h in self.hosts]}


@contextlib.contextmanager
def session(city: City, spec: HilSpec, workdir: Path, *, groups: list[list[DeviceRow]],
            clock: str | None = None, flood: bool = False, trace: bool = False,
            nice: int = 10, wait: float = 120.0) -> Iterator[Session]:
    """Broker, simulator link and bridge, and one device host per group, all online.

    The device hosts run at ``nice`` (they stand in for hardware on other machines: on this
    one they must not take the simulator's CPU).

    Raises:
        RuntimeError: a device did not come online within ``wait`` seconds.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(prefer="mosquitto"))
        url = broker.url
        log_path = broker.log_path
        if log_path is not None:  # kept for diagnosis (the broker deletes its own on exit)
            stack.callback(lambda: shutil.copy(log_path, workdir / "mosquitto.log")
                           if log_path.is_file() else None)
        broker_pid = next(p.pid for p in psutil.Process().children()
                          if "mosquitto" in p.name())
        bridge = HilBridge(city, spec, recorder=Recorder(workdir / FILE_NAME), clock=clock)
        link = connect(bridge, url, stack)
        hosts: list[Host] = []

        def stop_hosts() -> None:
            for h in hosts:
                h.send("stop")
            for h in hosts:
                h.stop()

        stack.callback(stop_hosts)
        for k, group in enumerate(groups):
            hosts.append(Host(f"host{k}", str(url), spec.site, group, workdir, flood=flood,
                              trace=trace, nice=nice))
        for h in hosts:
            h.wait_ready()
        expected = sum(len(g) for g in groups)
        missing = bridge.wait_for_devices(wait) if expected else []
        if expected and missing:
            raise RuntimeError(f"{len(missing)} devices not online after {wait} s: "
                               f"{', '.join(missing[:5])} ...")
        yield Session(bridge, link, broker_pid, hosts)


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each role's processes."""
    out = {}
    for role, ids in pids.items():
        total = 0.0
        for pid in ids:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
        out[role] = total
    return out


def split(rows: list[DeviceRow], parts: int) -> list[list[DeviceRow]]:
    """``rows`` in ``parts`` groups of nearly equal size (empty groups dropped)."""
    return [g for g in (rows[k::parts] for k in range(parts)) if g]
