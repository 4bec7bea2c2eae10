"""Read and write SUMO demand files (``.rou.xml`` with routes, or trips files).

Read: ``<vType>`` (IDM parameters; other car-following models are run as IDM with the same
parameters), ``<route>``, ``<vehicle>`` (with a named or nested route), ``<trip>`` (origin
and destination edges, routed at load time) and ``<flow>`` (``vehsPerHour``, ``period``,
``probability`` or ``number``). Persons and containers are skipped with a warning. Features
that would change where or when vehicles drive and that the engine does not model
(``via`` waypoints, route and type distributions, stops, triggered departures, random
periods) are refused with a :class:`~citytwin.errors.DemandError` naming the element,
rather than run differently without a word.

SUMO's default ``departSpeed`` is 0; it is kept. ``departLane`` is ignored: citytwin always
inserts on the best lane for the route with room (SUMO's ``departLane="best"``).

Write: :func:`write_sumo_routes` writes trips with explicit routes and IDM vTypes, so the same
demand runs in SUMO for side-by-side comparisons.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

from citytwin.errors import DemandError
from citytwin.model.demand import Demand, Flow, Trip, VehicleType
from citytwin.model.network import Network

#: SUMO vType attribute -> VehicleType field.
_VTYPE_ATTRS = {"length": "length", "minGap": "min_gap", "accel": "accel", "decel": "decel",
                "emergencyDecel": "emergency_decel", "maxSpeed": "max_speed", "tau": "tau",
                "delta": "delta", "speedFactor": "speed_factor"}

_UNSUPPORTED = {"routeDistribution": "route distributions",
                "vTypeDistribution": "vehicle type distributions",
                "stop": "stops", "personTrip": "person trips"}
_SKIPPED = ("person", "personFlow", "container", "containerFlow")
_DIST = re.compile(r"^norm[c]?\(\s*([-+\d.eE]+)")


def read_sumo_routes(path: str | os.PathLike[str], network: Network,
                     demand: Demand | None = None) -> Demand:
    """Add the vehicle types, vehicles, trips and flows of a SUMO demand file to ``demand``.

    Args:
        path: A ``.rou.xml`` / trips file, optionally gzipped.
        network: The network the demand runs on; every edge named must exist in it.
        demand: Demand to add to; a new one when omitted.

    Returns:
        The demand, with everything in the file added.

    Raises:
        DemandError: the file is missing or malformed, names unknown edges, routes or types,
            or uses a feature the engine does not model. The message names the element.
    """
    path = Path(path)
    demand = demand if demand is not None else Demand()
    if not path.is_file():
        raise DemandError(f"{path}: no such demand file")
    try:
        _Reader(path, network, demand).read()
    except ET.ParseError as exc:
        line, col = exc.position
        raise DemandError(f"{path}:{line}:{col}: not valid XML ({exc})") from None
    except DemandError as exc:
        raise DemandError(f"{path}: {exc}") from None
    return demand


class _Reader:
    def __init__(self, path: Path, network: Network, demand: Demand) -> None:
        self.path, self.network, self.demand = path, network, demand
        self.routes: dict[str, tuple[str, ...]] = {}
        self.skipped: dict[str, int] = {}

    def read(self) -> None:
        opener = gzip.open if self.path.suffix == ".gz" else open
        with opener(self.path, "rb") as fh:
            stack: list[ET.Element] = []
            for event, el in ET.iterparse(fh, events=("start", "end")):
                if event == "start":
                    stack.append(el)
                    continue
                stack.pop()
                parent = stack[-1].tag if stack else None
                if parent in ("routes", "additional", "interval", None):
                    self._top_level(el)
                    el.clear()
        if self.skipped:
            what = ", ".join(f"{n} {tag}" for tag, n in sorted(self.skipped.items()))
            warnings.warn(f"{self.path}: skipped {what} (only vehicles are simulated)",
                          stacklevel=3)

    def _top_level(self, el: ET.Element) -> None:
        tag = el.tag
        if tag == "vType":
            self.demand.add_vtype(_vtype(el))
        elif tag == "route":
            rid = _req(el, "id")
            self.routes[rid] = self._edges(el, f"route {rid!r}")
        elif tag == "vehicle":
            self._vehicle(el)
        elif tag == "trip":
            self._trip(el)
        elif tag == "flow":
            self._flow(el)
        elif tag in _UNSUPPORTED:
            raise DemandError(f"<{tag}> found: {_UNSUPPORTED[tag]} are not supported")
        elif tag in _SKIPPED:
            self.skipped[tag] = self.skipped.get(tag, 0) + 1

    # -- elements ---------------------------------------------------------------------------
    def _edges(self, el: ET.Element, what: str) -> tuple[str, ...]:
        edges = tuple(_req(el, "edges").split())
        if not edges:
            raise DemandError(f"{what}: empty edges")
        for e in edges:
            self._check_edge(e, what)
        return edges

    def _check_edge(self, edge: str, what: str) -> None:
        if edge not in self.network.edge_index:
            raise DemandError(f"{what}: unknown edge {edge!r}")

    def _route_of(self, el: ET.Element, what: str) -> tuple[str, ...]:
        """The element's route (children were checked by :meth:`_common`)."""
        nested = el.find("route")
        if nested is not None:
            return self._edges(nested, what)
        rid = el.get("route")
        if rid is None:
            raise DemandError(f"{what}: needs a route (attribute or nested <route>)")
        if rid not in self.routes:
            raise DemandError(f"{what}: unknown route {rid!r} (routes must come before use)")
        return self.routes[rid]

    def _common(self, el: ET.Element, what: str) -> tuple[str, float | str]:
        if el.get("via"):
            raise DemandError(f"{what}: 'via' waypoints are not supported")
        for child in el:
            if child.tag in _UNSUPPORTED:
                raise DemandError(f"{what}: <{child.tag}> is not supported "
                                  f"({_UNSUPPORTED[child.tag]})")
        vtype = el.get("type", "DEFAULT_VEHTYPE")
        if vtype not in self.demand.vtypes:
            raise DemandError(f"{what}: unknown vType {vtype!r} (types must come before use)")
        return vtype, _depart_speed(el.get("departSpeed", "0"), what)

    def _vehicle(self, el: ET.Element) -> None:
        vid = _req(el, "id")
        what = f"vehicle {vid!r}"
        vtype, speed = self._common(el, what)
        route = self._route_of(el, what)
        self.demand.trips.append(Trip(vid, _time(el, "depart", what), route[0], route[-1],
                                      vtype, route, speed))

    def _trip(self, el: ET.Element) -> None:
        vid = _req(el, "id")
        what = f"trip {vid!r}"
        vtype, speed = self._common(el, what)
        o, d = _req(el, "from"), _req(el, "to")
        self._check_edge(o, what)
        self._check_edge(d, what)
        self.demand.trips.append(Trip(vid, _time(el, "depart", what), o, d, vtype, None, speed))

    def _flow(self, el: ET.Element) -> None:
        fid = _req(el, "id")
        what = f"flow {fid!r}"
        vtype, speed = self._common(el, what)
        if el.get("from") is not None or el.get("to") is not None:
            o, d = _req(el, "from"), _req(el, "to")
            self._check_edge(o, what)
            self._check_edge(d, what)
            route = None
        else:
            route = self._route_of(el, what)
            o, d = route[0], route[-1]
        rates: dict[str, float | int | None] = {}
        for attr, key in (("vehsPerHour", "vehs_per_hour"), ("period", "period"),
                          ("probability", "probability"), ("number", "number")):
            raw = el.get(attr)
            if raw is None:
                rates[key] = None
            elif attr == "period" and raw.startswith("exp("):
                raise DemandError(f"{what}: random periods (exp(...)) are not supported")
            else:
                rates[key] = int(_float(raw, attr, what)) if key == "number" else \
                    _float(raw, attr, what)
        begin = _time(el, "begin", what, default="0")
        end = _time(el, "end", what, default="86400")  # SUMO's default: 24 hours
        self.demand.flows.append(Flow(fid, begin, end, o, d, vtype, route,
                                      depart_speed=speed, **rates))  # type: ignore[arg-type]


def _req(el: ET.Element, attr: str) -> str:
    value = el.get(attr)
    if value is None:
        ident = el.get("id")
        raise DemandError(f"<{el.tag}{f' id={ident!r}' if ident else ''}> lacks '{attr}'")
    return value


def _float(raw: str, attr: str, what: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise DemandError(f"{what}: {attr}={raw!r} is not a number") from None


def _time(el: ET.Element, attr: str, what: str, default: str | None = None) -> float:
    raw = el.get(attr, default)
    if raw is None:
        raise DemandError(f"{what}: lacks '{attr}'")
    if ":" in raw:  # SUMO also accepts [[d:]h:]m:s
        parts = [_float(p, attr, what) for p in raw.split(":")]
        seconds = 0.0
        for p, scale in zip(reversed(parts), (1, 60, 3600, 86400), strict=False):
            seconds += p * scale
        return seconds
    value = _float(raw, attr, what) if raw not in ("triggered", "containerTriggered") else None
    if value is None:
        raise DemandError(f"{what}: {attr}={raw!r} is not supported (only times)")
    if value < 0:
        raise DemandError(f"{what}: {attr} must be >= 0, got {value}")
    return value


def _depart_speed(raw: str, what: str) -> float | str:
    if raw in ("max", "desired", "speedLimit"):
        return "max"
    value = _float(raw, "departSpeed", what)
    if value < 0:
        raise DemandError(f"{what}: departSpeed must be >= 0")
    return value


def _vtype(el: ET.Element) -> VehicleType:
    vid = _req(el, "id")
    kwargs: dict[str, float | str] = {"id": vid, "vclass": el.get("vClass", "passenger")}
    for attr, field in _VTYPE_ATTRS.items():
        raw = el.get(attr)
        if raw is None:
            continue
        m = _DIST.match(raw)  # a distribution such as normc(1,0.1,0.2,2): its mean
        kwargs[field] = float(m.group(1)) if m else _float(raw, attr, f"vType {vid!r}")
    return VehicleType(**kwargs)  # type: ignore[arg-type]


def write_sumo_routes(trips: Iterable[Trip], vtypes: Mapping[str, VehicleType],
                      path: str | os.PathLike[str]) -> Path:
    """Write trips that carry routes as a SUMO ``.rou.xml`` with IDM vTypes.

    Vehicles are written in depart order with ``departLane="best"`` and their depart speed,
    and every vType with ``carFollowModel="IDM"``, ``speedDev="0"`` and ``sigma="0"``, so
    that SUMO runs the same vehicles as citytwin.

    Raises:
        DemandError: a trip has no route.
    """
    path = Path(path)
    with open(path, "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<routes>\n')
        for vt in vtypes.values():
            out.write(
                f'    <vType id={quoteattr(vt.id)} vClass={quoteattr(vt.vclass)} '
                f'carFollowModel="IDM" length="{vt.length:g}" minGap="{vt.min_gap:g}" '
                f'accel="{vt.accel:g}" decel="{vt.decel:g}" '
                f'emergencyDecel="{vt.emergency_decel:g}" maxSpeed="{vt.max_speed:g}" '
                f'tau="{vt.tau:g}" delta="{vt.delta:g}" speedFactor="{vt.speed_factor:g}" '
                f'speedDev="0" sigma="0"/>\n')
        for t in sorted(trips, key=lambda t: t.depart):
            if not t.route:
                raise DemandError(f"trip {t.id!r} has no route to write")
            speed = "max" if t.depart_speed == "max" else f"{float(t.depart_speed):g}"
            out.write(f'    <vehicle id={quoteattr(t.id)} type={quoteattr(t.vtype)} '
                      f'depart="{t.depart:.2f}" departLane="best" departSpeed="{speed}">\n'
                      f'        <route edges={quoteattr(" ".join(t.route))}/>\n'
                      f'    </vehicle>\n')
        out.write("</routes>\n")
    return path
