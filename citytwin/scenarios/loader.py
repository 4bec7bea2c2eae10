"""Load scenario files, find built-in scenarios, and build a :class:`~citytwin.model.city.City`.

A scenario is read in two steps. :func:`load_scenario` parses the TOML, validates it against
:mod:`citytwin.scenarios.schema` and checks that every file it names exists; a
:class:`Scenario` then builds the network, the demand and the city on demand, checking what
needs the network (edge, lane and vehicle type ids). Every problem, from a TOML syntax error to
an unroutable flow, is raised as a :class:`~citytwin.errors.ScenarioError` whose message starts
with the file path and names the field::

    downtown.toml: demand.flows[2].vehs_per_hour: must be > 0

Relative file names inside a scenario are relative to the scenario file's folder.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import os
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from citytwin.errors import DemandError, NetworkError, ScenarioError
from citytwin.model.city import City
from citytwin.model.demand import Demand, Flow, Trip
from citytwin.model.network import Network
from citytwin.scenarios._messages import toml_message, validation_message
from citytwin.scenarios.schema import FlowSpec, ScenarioSpec, TripSpec

_KEEP_EXTRACTED = ExitStack()  # built-in files extracted from a zipped install live until exit


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file, ready to build cities from.

    Attributes:
        spec: The validated file contents.
        path: Absolute path of the scenario file; relative names in it are relative to its
            folder.
        sha256: Hex SHA-256 of the file's bytes, to record which file a run came from.
    """

    spec: ScenarioSpec
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def seed(self) -> int:
        return self.spec.seed

    # -- building ---------------------------------------------------------------------------
    def build_network(self) -> Network:
        """The road network: the SUMO file read, or the grid generated.

        Raises:
            ScenarioError: the network file cannot be imported or the grid is out of range.
        """
        net = self.spec.network
        if net.grid is not None:
            from citytwin.model.grid import grid_network

            try:
                return grid_network(**net.grid.model_dump())
            except NetworkError as exc:
                raise self._error("network.grid", str(exc)) from None
        from citytwin.model.sumo_net import read_sumo_net

        try:
            return read_sumo_net(self._file(str(net.sumo_net)))
        except NetworkError as exc:
            raise self._error("network.sumo_net", str(exc)) from None
        except (OSError, EOFError) as exc:  # e.g. a damaged .gz
            raise self._error("network.sumo_net", f"cannot read {net.sumo_net}: {exc}") from None

    def build_demand(self, network: Network, rng: np.random.Generator) -> Demand:
        """Vehicle types, the SUMO demand file, flows, trips and random trips, combined.

        Args:
            network: The network the demand runs on.
            rng: Draws the random trips (``[demand.random]``).

        Raises:
            ScenarioError: a file cannot be read, or an edge, route or vehicle type does not
                exist; the message names the field.
        """
        spec = self.spec.demand
        demand = Demand()
        mine = {}
        for k, vt in enumerate(self.spec.vtypes):
            mine[vt.id] = (k, vt.to_vtype())
            demand.add_vtype(mine[vt.id][1])
        if spec.sumo_routes is not None:
            from citytwin.model.sumo_routes import read_sumo_routes

            try:
                read_sumo_routes(self._file(spec.sumo_routes), network, demand)
            except DemandError as exc:
                raise self._error("demand.sumo_routes", str(exc)) from None
            except (OSError, EOFError) as exc:  # e.g. a damaged .gz
                raise self._error("demand.sumo_routes",
                                  f"cannot read {spec.sumo_routes}: {exc}") from None
            for vid, (k, made) in mine.items():
                if demand.vtypes[vid] is not made:
                    raise self._error(f"vtypes[{k}].id", f"{vid!r} is also defined in "
                                      f"{spec.sumo_routes}; define it in one place")
        for k, f in enumerate(spec.flows):
            self._check_route(f"demand.flows[{k}]", f, network, demand)
        for k, t in enumerate(spec.trips):
            self._check_route(f"demand.trips[{k}]", t, network, demand)
        self._check_reachable(network)
        demand.flows.extend(
            Flow(f.id, f.begin, f.end, f.origin, f.destination, f.vtype,
                 tuple(f.route) if f.route else None, f.vehs_per_hour, f.period, f.probability,
                 f.number, f.depart_speed, f.planned) for f in spec.flows)
        demand.trips.extend(
            Trip(t.id, t.depart, t.origin, t.destination, t.vtype,
                 tuple(t.route) if t.route else None, t.depart_speed, t.planned)
            for t in spec.trips)
        if spec.random is not None:
            from citytwin.model.routing import random_trips

            r = spec.random
            self._check_vtype("demand.random.vtype", r.vtype, demand)
            try:
                demand.trips.extend(random_trips(
                    network, begin=r.begin, end=r.end, vehs_per_hour=r.vehs_per_hour, rng=rng,
                    profile=[(p[0], p[1]) for p in r.profile] if r.profile else None,
                    fringe_only=r.fringe_only, vtype=r.vtype))
            except DemandError as exc:
                raise self._error("demand.random", str(exc)) from None
        return demand

    def build_city(self, seed: int | None = None) -> City:
        """Network, demand and city, seeded.

        Args:
            seed: Seed of the run; ``None`` takes the file's ``seed``. The city's rng is
                seeded with it; random trips draw from an independent child stream
                (``numpy.random.SeedSequence(seed).spawn(1)[0]``).

        Raises:
            ScenarioError: any part of the scenario does not fit (the message names it).
        """
        seed = self.seed if seed is None else seed
        if seed < 0:
            raise ScenarioError(f"seed must be >= 0, got {seed}")
        network = self.build_network()
        demand_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        demand = self.build_demand(network, demand_rng)
        detectors = []
        for k, d in enumerate(self.spec.detectors):
            try:
                lane = network.lane(d.lane)
            except NetworkError as exc:
                raise self._error(f"detectors[{k}].lane", str(exc)) from None
            if d.pos > network.lane_length[lane]:
                raise self._error(f"detectors[{k}].pos", f"must be <= the length of lane "
                                  f"{d.lane!r} ({network.lane_length[lane]:.1f} m)")
            detectors.append((d.id, d.lane, d.pos))
        if self.spec.hil is not None:
            from citytwin.hil.bridge import hil_detectors

            try:
                detectors += hil_detectors(network, self.spec.hil,
                                           self.spec.simulation.detector_gap)
            except ScenarioError as exc:
                raise self._error("hil", str(exc)) from None
        self._check_signals(network)
        try:
            return City(network, demand, config=self.spec.simulation.to_config(), rng=seed,
                        detectors=detectors, signals=self.spec.signals.to_policy())
        except DemandError as exc:
            raise self._error("demand", str(exc)) from None
        except NetworkError as exc:
            raise self._error("detectors", str(exc)) from None
        except ScenarioError as exc:
            raise self._error(f"signals.{self.spec.signals.policy.replace('-', '_')}",
                              str(exc)) from None

    def emergency_outputs(self, city: City, seed: int, duration: float | None = None
                          ) -> dict[str, pa.Table]:
        """``{"emergency": table}`` for a city with emergency vehicles (else empty): one row
        per emergency trip; with pre-emption and ``counterfactual``, the cross-traffic delay
        comes from a second run of the same seed without pre-emption."""
        from citytwin.model.emergency import emergency_table

        if city.emergency.ev_slot.size == 0:
            return {}
        pol = city.signal_policy
        baseline = None
        if pol.staged and pol.preemption.enabled and pol.preemption.counterfactual:
            other = self.with_signals({"preemption": {"enabled": False}}, str(self.path))
            baseline = other.build_city(seed)
            other.run(baseline, duration=duration)
        return {"emergency": emergency_table(city, baseline)}

    def with_signals(self, table: dict, label: str) -> Scenario:
        """This scenario with its ``[signals]`` table updated by ``table`` (nested keys as in
        the file); problems are reported as ``{label}: signals.<field>: ...``.

        Raises:
            ScenarioError: a key or value of ``table`` is invalid.
        """
        merged = self.spec.model_dump(by_alias=True, exclude_unset=True)
        sig = dict(merged.get("signals", {}))
        for key, value in table.items():
            if isinstance(value, dict):
                sig[key] = {**sig.get(key, {}), **value}
            else:
                sig[key] = value
        merged["signals"] = sig
        try:
            spec = ScenarioSpec.model_validate(merged)
        except ValidationError as exc:
            msg = validation_message(Path(label), exc)
            raise ScenarioError(msg) from None
        return Scenario(spec, self.path, self.sha256)

    def run(self, city: City, *, duration: float | None = None,
            callback: Callable[[float], None] | None = None) -> None:
        """Step ``city`` as the scenario says: ``duration`` seconds when set, else until
        every trip has finished (at most ``max_duration`` seconds).

        Args:
            city: A city built from this scenario.
            duration: Overrides the file's ``duration``.
            callback: Called with the sim time as stepping goes (see ``City.run_for``).

        Raises:
            SimulationError: stepping failed.
        """
        duration = self.spec.duration if duration is None else duration
        if duration is not None:
            city.run_for(duration, callback)
            return
        city.run_until_done(self.spec.max_duration, callback)

    # -- checks -------------------------------------------------------------------------------
    def _error(self, field: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.path}: {field}: {message}")

    def _file(self, name: str) -> Path:
        return self.path.parent / name

    def _check_vtype(self, where: str, vtype: str, demand: Demand) -> None:
        if vtype not in demand.vtypes:
            raise self._error(where, f"unknown vehicle type {vtype!r} (defined: "
                              f"{', '.join(sorted(demand.vtypes))})")

    def _check_route(self, where: str, spec: FlowSpec | TripSpec, network: Network,
                     demand: Demand) -> None:
        self._check_vtype(f"{where}.vtype", spec.vtype, demand)
        named = ([(f"route[{i}]", e) for i, e in enumerate(spec.route)] if spec.route else [])
        named += [(key, e) for key, e in (("from", spec.from_edge), ("to", spec.to_edge))
                  if e is not None]
        for key, edge in named:
            if edge not in network.edge_index:
                hint = difflib.get_close_matches(edge, network.edge_ids, n=1)
                raise self._error(f"{where}.{key}", f"unknown edge {edge!r}"
                                  + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        if spec.route:
            ptr, succ = network.successors
            idx = [network.edge_index[e] for e in spec.route]
            for a, z in itertools.pairwise(idx):
                if z not in succ[ptr[a]:ptr[a + 1]]:
                    raise self._error(f"{where}.route", f"no connection from edge "
                                      f"{network.edge_ids[a]!r} to {network.edge_ids[z]!r}")

    def _check_signals(self, network: Network) -> None:
        arterial = self.spec.signals.green_wave.arterial or []
        for i, edge in enumerate(arterial):
            if edge not in network.edge_index:
                hint = difflib.get_close_matches(edge, network.edge_ids, n=1)
                raise self._error(f"signals.green_wave.arterial[{i}]", f"unknown edge {edge!r}"
                                  + (f" (did you mean {hint[0]!r}?)" if hint else ""))

    def _check_reachable(self, network: Network) -> None:
        from citytwin.model.routing import shortest_routes

        items: list[tuple[str, FlowSpec | TripSpec]] = [
            (f"demand.flows[{k}]", f) for k, f in enumerate(self.spec.demand.flows)]
        items += [(f"demand.trips[{k}]", t) for k, t in enumerate(self.spec.demand.trips)]
        items = [(w, s) for w, s in items if not s.route]
        if not items:
            return
        o = np.array([network.edge_index[s.origin] for _, s in items])
        d = np.array([network.edge_index[s.destination] for _, s in items])
        ptr, _ = shortest_routes(network, o, d)
        for k in np.flatnonzero(np.diff(ptr) == 0).tolist():
            where, s = items[k]
            raise self._error(where, f"no route from edge {s.origin!r} to {s.destination!r}")


# -- loading ----------------------------------------------------------------------------------
def load_scenario(name_or_path: str | os.PathLike[str]) -> Scenario:
    """Load and validate a scenario.

    Args:
        name_or_path: A built-in scenario's name (no path separator, no ``.toml`` suffix;
            see :func:`builtin_scenarios`) or the path of a TOML file.

    Raises:
        ScenarioError: unknown name, missing or unreadable file, invalid TOML, or a value
            that fails validation; the message starts with the file path and names the field.
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and not _looks_like_path(text):
        found = _builtin_files()
        if text not in found:
            raise ScenarioError(f"unknown scenario {text!r}; built-in scenarios: "
                                f"{', '.join(sorted(found)) or 'none'} (or give a path to a "
                                ".toml file)")
        return _load_file(found[text])
    return _load_file(Path(text))


def builtin_scenarios() -> dict[str, str]:
    """Names and descriptions of the built-in scenarios, sorted by name.

    Raises:
        ScenarioError: a built-in file is invalid (a packaging bug).
    """
    return {name: load_scenario(name).description for name in sorted(_builtin_files())}


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or os.sep in text or (
        os.altsep is not None and os.altsep in text)


@functools.cache
def _builtin_dir() -> Path:
    res = resources.files("citytwin.scenarios") / "builtin"
    if isinstance(res, Path):
        return res
    return _KEEP_EXTRACTED.enter_context(resources.as_file(res))  # pragma: no cover - zipped


def _builtin_files() -> dict[str, Path]:
    folder = _builtin_dir()
    return {p.name.removesuffix(".toml"): p for p in sorted(folder.glob("*.toml"))}


def _load_file(path: Path) -> Scenario:
    path = path.resolve()  # messages name the file unambiguously; later builds need no cwd
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(toml_message(path, exc)) from None
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(validation_message(path, exc)) from None
    scenario = Scenario(spec, path, hashlib.sha256(raw).hexdigest())
    for field, name in (("network.sumo_net", spec.network.sumo_net),
                        ("demand.sumo_routes", spec.demand.sumo_routes)):
        if name is not None and not scenario._file(name).is_file():
            raise scenario._error(field, f"no such file {name!r} (relative names are looked "
                                  f"up in {scenario.path.parent})")
    return scenario
