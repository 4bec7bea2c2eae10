"""The road network: junctions, edges with lanes, connections through junctions, signal programs.

A :class:`Network` is built once (by :func:`citytwin.model.grid.grid_network`, by
:func:`citytwin.model.sumo_net.read_sumo_net` or by hand with :class:`NetworkBuilder`) and is
read-only afterwards. It follows SUMO's semantics: a connection leads from a lane of one edge to
a lane of another through a junction, has a length inside the junction, a signal link index
when the junction is signalised, and conflict relations (``foes``: the connections whose paths
cross or merge with it; ``response``: the foes it must yield to).

Kernels see the network as :class:`citytwin.agents.roads.RoadArrays`; Mesa users see a
networkx ``MultiDiGraph`` through :meth:`Network.graph`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np

from citytwin.agents.kernels.geometry import conflict_points
from citytwin.agents.roads import MAJOR, MINOR, RoadArrays, state_code
from citytwin.errors import NetworkError
from citytwin.model.junctions import polylines_cross, wait_points

#: Smallest length an internal (junction) lane may have; SUMO nets built without internal
#: links give connections no length at all.
MIN_INTERNAL_LENGTH = 0.5


@dataclass(frozen=True)
class Phase:
    """One phase of a signal program: a SUMO state string held for ``duration`` seconds.

    ``min_dur`` and ``max_dur`` bound an actuated phase; for fixed-time both equal ``duration``.
    """

    duration: float
    state: str
    min_dur: float | None = None
    max_dur: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise NetworkError(f"signal phase duration must be > 0, got {self.duration}")
        for ch in self.state:
            state_code(ch)  # raises ValueError for unknown letters

    @property
    def bounds(self) -> tuple[float, float]:
        """``(min_dur, max_dur)``, each ``duration`` where not given."""
        return (self.duration if self.min_dur is None else self.min_dur,
                self.duration if self.max_dur is None else self.max_dur)

    @property
    def is_actuated(self) -> bool:
        """True if the phase may last between a min and a larger max duration."""
        lo, hi = self.bounds
        return lo < hi

    @property
    def is_green(self) -> bool:
        """True if any link may drive and no link shows yellow (a phase an actuated
        controller can extend)."""
        return any(c in "Gg" for c in self.state) and not any(c in "yY" for c in self.state)


@dataclass(frozen=True)
class SignalProgram:
    """The program of one traffic-light controller (SUMO ``<tlLogic>``)."""

    tls_id: str
    phases: tuple[Phase, ...]
    offset: float = 0.0
    kind: str = "static"  # "static" (fixed-time) or "actuated"
    program_id: str = "0"

    def __post_init__(self) -> None:
        if not self.phases:
            raise NetworkError(f"signal program {self.tls_id!r} has no phases")
        widths = {len(p.state) for p in self.phases}
        if len(widths) != 1:
            raise NetworkError(
                f"signal program {self.tls_id!r} mixes state strings of lengths {sorted(widths)}")
        if self.kind not in ("static", "actuated"):
            raise NetworkError(
                f"signal program {self.tls_id!r}: kind must be 'static' or 'actuated', "
                f"got {self.kind!r}")

    @property
    def n_links(self) -> int:
        """Number of signal links (the length of each state string)."""
        return len(self.phases[0].state)

    @property
    def cycle(self) -> float:
        """Cycle time in seconds (sum of the phase durations)."""
        return float(sum(p.duration for p in self.phases))


@dataclass
class _Conn:
    from_edge: int
    from_lane: int
    to_edge: int
    to_lane: int
    length: float
    junction: int
    direction: str
    static_state: int
    tls: int
    link: int
    shape: list[tuple[float, float]]
    speed: float | None = None
    wait: float | None = None
    foes: set[int] = field(default_factory=set)
    response: set[int] = field(default_factory=set)


class NetworkBuilder:
    """Collects junctions, edges, connections and signal programs, then builds a Network.

    Conflicts between connections are either given (``set_conflicts``, as the SUMO importer
    does from the net's request matrices) or computed from the connection shapes by
    :meth:`derive_conflicts`.
    """

    def __init__(self) -> None:
        self._junction_ids: list[str] = []
        self._junction_xy: list[tuple[float, float]] = []
        self._junction_kind: list[str] = []
        self._junction_index: dict[str, int] = {}
        self._edge_ids: list[str] = []
        self._edge_index: dict[str, int] = {}
        self._edge_from: list[int] = []
        self._edge_to: list[int] = []
        self._edge_priority: list[int] = []
        self._edge_lanes: list[list[tuple[float, float]]] = []  # (length, speed) per lane
        self._edge_shape: list[list[tuple[float, float]]] = []
        self._lane_ids: list[str] = []
        self._conns: list[_Conn] = []
        self._programs: list[SignalProgram] = []
        self._tls_index: dict[str, int] = {}
        self._tls_junctions: list[list[int]] = []

    # -- elements ---------------------------------------------------------------------------
    def add_junction(self, junction_id: str, x: float, y: float, kind: str = "priority") -> int:
        """Add a junction and return its index."""
        if junction_id in self._junction_index:
            raise NetworkError(f"duplicate junction id {junction_id!r}")
        self._junction_index[junction_id] = len(self._junction_ids)
        self._junction_ids.append(junction_id)
        self._junction_xy.append((float(x), float(y)))
        self._junction_kind.append(kind)
        return len(self._junction_ids) - 1

    def add_edge(self, edge_id: str, from_junction: str, to_junction: str,
                 lanes: Sequence[tuple[float, float]], priority: int = 0,
                 shape: Sequence[tuple[float, float]] | None = None,
                 lane_ids: Sequence[str] | None = None) -> int:
        """Add a directed edge with ``lanes`` given as (length m, speed limit m/s), rightmost
        first, and return its index.

        Lanes are named ``"{edge_id}_{k}"`` unless ``lane_ids`` names them (the SUMO importer
        keeps SUMO's ids when it leaves out lanes cars may not use).
        """
        if edge_id in self._edge_index:
            raise NetworkError(f"duplicate edge id {edge_id!r}")
        if not lanes:
            raise NetworkError(f"edge {edge_id!r} has no lanes")
        if lane_ids is None:
            lane_ids = [f"{edge_id}_{k}" for k in range(len(lanes))]
        elif len(lane_ids) != len(lanes):
            raise NetworkError(f"edge {edge_id!r}: {len(lane_ids)} lane ids for "
                               f"{len(lanes)} lanes")
        for length, speed in lanes:
            if not (length > 0 and speed > 0):
                raise NetworkError(
                    f"edge {edge_id!r}: lane length and speed must be > 0, got {length}, {speed}")
        try:
            fj, tj = self._junction_index[from_junction], self._junction_index[to_junction]
        except KeyError as exc:
            raise NetworkError(f"edge {edge_id!r} refers to unknown junction {exc}") from None
        self._edge_index[edge_id] = len(self._edge_ids)
        self._edge_ids.append(edge_id)
        self._edge_from.append(fj)
        self._edge_to.append(tj)
        self._edge_priority.append(int(priority))
        self._edge_lanes.append([(float(a), float(b)) for a, b in lanes])
        if shape is None:
            shape = [self._junction_xy[fj], self._junction_xy[tj]]
        self._edge_shape.append([(float(a), float(b)) for a, b in shape])
        self._lane_ids.extend(lane_ids)
        return len(self._edge_ids) - 1

    def edge_index(self, edge_id: str) -> int:
        """Index of an edge added before."""
        try:
            return self._edge_index[edge_id]
        except KeyError:
            raise NetworkError(f"unknown edge {edge_id!r}") from None

    def add_signal_program(self, program: SignalProgram, junctions: Iterable[str]) -> int:
        """Add the program of a traffic-light controller that governs ``junctions``."""
        if program.tls_id in self._tls_index:
            raise NetworkError(f"duplicate traffic light id {program.tls_id!r}")
        self._tls_index[program.tls_id] = len(self._programs)
        self._programs.append(program)
        self._tls_junctions.append([self._junction_index[j] for j in junctions])
        return len(self._programs) - 1

    def add_connection(self, from_edge: str, from_lane: int, to_edge: str, to_lane: int, *,
                       length: float, direction: str = "s", state: str = "M",
                       tls: str | None = None, link_index: int = -1,
                       shape: Sequence[tuple[float, float]] | None = None,
                       speed: float | None = None, wait: float | None = None) -> int:
        """Add a lane-to-lane connection through the junction at the end of ``from_edge``.

        ``state`` is the SUMO link state of an unsignalised connection (``M`` major, ``m``
        minor, ...); a signalised one names its controller ``tls`` and ``link_index``.
        ``speed``: the speed limit through the junction, m/s (SUMO's internal lanes have one
        from the turn's radius); by default the slower of the two lanes, turns at most 50 km/h.
        ``wait``: where along its path a vehicle that yields waits inside the junction, m
        (SUMO's internal junction); by default just short of the first point where it meets
        a foe it yields to.
        """
        fe, te = self.edge_index(from_edge), self.edge_index(to_edge)
        if not 0 <= from_lane < len(self._edge_lanes[fe]):
            raise NetworkError(f"connection from {from_edge!r}: no lane {from_lane}")
        if not 0 <= to_lane < len(self._edge_lanes[te]):
            raise NetworkError(f"connection to {to_edge!r}: no lane {to_lane}")
        if self._edge_to[fe] != self._edge_from[te]:
            raise NetworkError(
                f"connection {from_edge!r} -> {to_edge!r}: the edges do not meet at a junction")
        tls_i = -1
        if tls is not None:
            if tls not in self._tls_index:
                raise NetworkError(f"connection {from_edge!r} -> {to_edge!r}: unknown tls {tls!r}")
            tls_i = self._tls_index[tls]
            if not 0 <= link_index < self._programs[tls_i].n_links:
                raise NetworkError(
                    f"connection {from_edge!r} -> {to_edge!r}: link index {link_index} outside "
                    f"tls {tls!r} (0..{self._programs[tls_i].n_links - 1})")
        code = state_code(state)
        static = MAJOR if code == MAJOR else MINOR
        if shape is None:
            shape = [self._edge_shape[fe][-1], self._edge_shape[te][0]]
        length = max(float(length), MIN_INTERNAL_LENGTH)
        if speed is not None and not speed > 0:
            raise NetworkError(f"connection {from_edge!r} -> {to_edge!r}: speed must be > 0, "
                               f"got {speed}")
        if wait is not None and not 0.0 <= wait <= length:
            raise NetworkError(f"connection {from_edge!r} -> {to_edge!r}: wait must be within "
                               f"its length (0 to {length:g} m), got {wait}")
        self._conns.append(_Conn(fe, from_lane, te, to_lane, length, self._edge_to[fe],
                                 direction, static, tls_i, int(link_index),
                                 [(float(a), float(b)) for a, b in shape],
                                 None if speed is None else float(speed),
                                 None if wait is None else float(wait)))
        return len(self._conns) - 1

    def set_conflicts(self, conn: int, foes: Iterable[int], response: Iterable[int]) -> None:
        """Set the foes of a connection and the subset it must yield to."""
        c = self._conns[conn]
        c.foes = {int(f) for f in foes if f != conn}
        c.response = {int(r) for r in response if r != conn} & c.foes

    def derive_conflicts(self, rank: Sequence[int] | None = None) -> None:
        """Compute foes from connection shapes, and response from a priority rank.

        Two connections of one junction are foes when their shapes cross or they end on the
        same lane. A connection yields to a foe of higher rank; by default the rank is the
        incoming edge's priority, with left turns and U-turns one below straight and right
        turns of the same priority. Equal ranks yield to nobody (a signal program separates
        them).
        """
        if rank is None:
            rank = [2 * self._edge_priority[c.from_edge] + (0 if c.direction in "lLt" else 1)
                    for c in self._conns]
        by_junction: dict[int, list[int]] = {}
        for i, c in enumerate(self._conns):
            by_junction.setdefault(c.junction, []).append(i)
        for members in by_junction.values():
            for a_pos, a in enumerate(members):
                ca = self._conns[a]
                for b in members[a_pos + 1:]:
                    cb = self._conns[b]
                    if ca.from_edge == cb.from_edge and ca.from_lane == cb.from_lane:
                        continue  # same lane: car-following, not a conflict
                    merge = ca.to_edge == cb.to_edge and ca.to_lane == cb.to_lane
                    if ca.from_edge == cb.from_edge and not merge:
                        continue  # side by side lanes of one approach
                    if merge or polylines_cross(ca.shape, cb.shape):
                        ca.foes.add(b)
                        cb.foes.add(a)
                        if rank[a] < rank[b]:
                            ca.response.add(b)
                        elif rank[b] < rank[a]:
                            cb.response.add(a)

    # -- result -----------------------------------------------------------------------------
    def build(self) -> Network:
        """Freeze everything added into a :class:`Network`."""
        if not self._edge_ids:
            raise NetworkError("the network has no edges")
        return Network(self)


def _csr(rows: Sequence[Iterable[int]]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(rows) + 1, dtype=np.int32)
    flat: list[int] = []
    for i, row in enumerate(rows):
        flat.extend(sorted(row))
        ptr[i + 1] = len(flat)
    return ptr, np.asarray(flat, dtype=np.int32)


def _conflict_points(conns: Sequence[_Conn], lane_length: np.ndarray, n_normal: int,
                     conn_to_lane: np.ndarray, foe_ptr: np.ndarray,
                     foe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([len(c.shape) for c in conns], dtype=np.int64)
    shape_ptr = np.zeros(len(conns) + 1, dtype=np.int64)
    np.cumsum(sizes, out=shape_ptr[1:])
    xy = np.array([p for c in conns for p in c.shape], dtype=np.float64).reshape(-1, 2)
    return conflict_points(shape_ptr, np.ascontiguousarray(xy[:, 0]),
                           np.ascontiguousarray(xy[:, 1]), lane_length, n_normal, conn_to_lane,
                           foe_ptr, foe)


class Network:
    """A read-only road network. Build one with :class:`NetworkBuilder` or a generator."""

    def __init__(self, b: NetworkBuilder) -> None:
        self.junction_ids: list[str] = list(b._junction_ids)
        self.junction_xy = np.asarray(b._junction_xy, dtype=np.float64).reshape(-1, 2)
        self.junction_kind: list[str] = list(b._junction_kind)
        self.edge_ids: list[str] = list(b._edge_ids)
        self.edge_index: dict[str, int] = dict(b._edge_index)
        self.edge_from = np.asarray(b._edge_from, dtype=np.int32)
        self.edge_to = np.asarray(b._edge_to, dtype=np.int32)
        self.edge_priority = np.asarray(b._edge_priority, dtype=np.int32)
        self.edge_shapes: list[list[tuple[float, float]]] = [list(s) for s in b._edge_shape]
        self.programs: list[SignalProgram] = list(b._programs)
        self.tls_ids: list[str] = [p.tls_id for p in b._programs]
        self.tls_junctions: list[list[int]] = [list(j) for j in b._tls_junctions]

        nlanes = np.array([len(ls) for ls in b._edge_lanes], dtype=np.int32)
        self.edge_num_lanes = nlanes
        self.edge_first_lane = np.zeros(len(nlanes), dtype=np.int32)
        self.edge_first_lane[1:] = np.cumsum(nlanes)[:-1]
        n_normal = int(nlanes.sum())
        conns = b._conns
        n_lanes = n_normal + len(conns)
        self.n_normal_lanes = n_normal
        #: Id of each normal lane (SUMO style, ``"{edge id}_{k}"`` unless imported otherwise).
        self.lane_ids: list[str] = list(b._lane_ids)

        lane_length = np.empty(n_lanes)
        lane_speed = np.empty(n_lanes)
        lane_edge = np.full(n_lanes, -1, dtype=np.int32)
        lane_index = np.zeros(n_lanes, dtype=np.int32)
        lane_conn = np.full(n_lanes, -1, dtype=np.int32)
        for e, lanes in enumerate(b._edge_lanes):
            first = self.edge_first_lane[e]
            for k, (length, speed) in enumerate(lanes):
                lane_length[first + k] = length
                lane_speed[first + k] = speed
                lane_edge[first + k] = e
                lane_index[first + k] = k
        self.edge_length = np.array([ls[0][0] for ls in b._edge_lanes])
        self.edge_speed = np.array([max(s for _, s in ls) for ls in b._edge_lanes])

        out_rows: list[list[int]] = [[] for _ in range(n_lanes)]
        c_from = np.empty(len(conns), dtype=np.int32)
        c_to = np.empty(len(conns), dtype=np.int32)
        for i, c in enumerate(conns):
            via = n_normal + i
            from_lane = int(self.edge_first_lane[c.from_edge]) + c.from_lane
            to_lane = int(self.edge_first_lane[c.to_edge]) + c.to_lane
            c_from[i], c_to[i] = from_lane, to_lane
            lane_length[via] = c.length
            if c.speed is not None:
                lane_speed[via] = c.speed
            else:  # the slower of the two lanes, and turns at most 50 km/h
                v = min(lane_speed[from_lane], lane_speed[to_lane])
                lane_speed[via] = min(v, 13.89) if c.direction in "lLrRt" else v
            lane_conn[via] = i
            out_rows[from_lane].append(i)
        self.conn_from_lane, self.conn_to_lane = c_from, c_to
        self.conn_from_edge = np.array([c.from_edge for c in conns], dtype=np.int32)
        self.conn_to_edge = np.array([c.to_edge for c in conns], dtype=np.int32)
        self.conn_junction = np.array([c.junction for c in conns], dtype=np.int32)
        self.conn_tls = np.array([c.tls for c in conns], dtype=np.int32)
        self.conn_link = np.array([c.link for c in conns], dtype=np.int32)
        self.conn_direction: list[str] = [c.direction for c in conns]
        self.conn_static = np.array([c.static_state for c in conns], dtype=np.uint8)
        self.conn_shapes: list[list[tuple[float, float]]] = [c.shape for c in conns]
        self.lane_length, self.lane_speed = lane_length, lane_speed
        self.lane_edge, self.lane_index, self.lane_conn = lane_edge, lane_index, lane_conn
        self.lane_out_ptr, self.lane_out = _csr(out_rows)
        self.conn_foe_ptr, self.conn_foe = _csr([c.foes for c in conns])
        self.conn_resp_ptr, self.conn_resp = _csr([c.response for c in conns])
        self.conn_foe_clear, self.conn_foe_at = _conflict_points(
            conns, lane_length, n_normal, c_to, self.conn_foe_ptr, self.conn_foe)
        self._validate()
        self.conn_wait, self.conn_foe_yields = wait_points(
            self.conn_foe_ptr, self.conn_foe, self.conn_foe_at, self.conn_resp_ptr,
            self.conn_resp, self._green_together, [c.wait for c in conns])

    def _green_together(self, a: int, b: int) -> bool:
        """Can connections ``a`` and ``b`` be green at once (always, unless one signal
        program controls both and none of its phases shows both green)?"""
        k = int(self.conn_tls[a])
        if k < 0 or k != int(self.conn_tls[b]):
            return True
        la, lb = int(self.conn_link[a]), int(self.conn_link[b])
        return any(ph.state[la] in "Gg" and ph.state[lb] in "Gg"
                   for ph in self.programs[k].phases)

    def _validate(self) -> None:
        for tls, program in enumerate(self.programs):
            links = self.conn_link[self.conn_tls == tls]
            if links.size and links.max() >= program.n_links:
                raise NetworkError(
                    f"tls {program.tls_id!r}: a connection uses link {links.max()} but the "
                    f"program has {program.n_links} links")

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_junctions(self) -> int:
        return len(self.junction_ids)

    @property
    def n_edges(self) -> int:
        return len(self.edge_ids)

    @property
    def n_connections(self) -> int:
        return len(self.conn_from_lane)

    @property
    def n_lanes(self) -> int:
        """All lanes, normal and internal."""
        return len(self.lane_length)

    # -- views ------------------------------------------------------------------------------
    @cached_property
    def arrays(self) -> RoadArrays:
        """The structure-of-arrays view the kernels take."""
        return RoadArrays(
            n_normal=self.n_normal_lanes,
            lane_length=self.lane_length, lane_speed=self.lane_speed,
            lane_edge=self.lane_edge, lane_index=self.lane_index, lane_conn=self.lane_conn,
            lane_out_ptr=self.lane_out_ptr, lane_out=self.lane_out,
            edge_first_lane=self.edge_first_lane, edge_num_lanes=self.edge_num_lanes,
            edge_length=self.edge_length, edge_to_junction=self.edge_to,
            conn_from_lane=self.conn_from_lane, conn_to_lane=self.conn_to_lane,
            conn_to_edge=self.conn_to_edge, conn_junction=self.conn_junction,
            conn_tls=self.conn_tls, conn_link=self.conn_link, conn_static=self.conn_static,
            tls_conns=np.flatnonzero(self.conn_tls >= 0).astype(np.int32),
            conn_foe_ptr=self.conn_foe_ptr, conn_foe=self.conn_foe,
            conn_resp_ptr=self.conn_resp_ptr, conn_resp=self.conn_resp,
            conn_foe_clear=self.conn_foe_clear, conn_foe_at=self.conn_foe_at,
            conn_foe_yields=self.conn_foe_yields, conn_wait=self.conn_wait,
        )

    @cached_property
    def graph(self) -> nx.MultiDiGraph:
        """A networkx view: junction ids as nodes, one arc per edge keyed by the edge id,
        with ``length`` (m), ``speed`` (m/s), ``lanes`` and ``index`` attributes."""
        g = nx.MultiDiGraph()
        for j, jid in enumerate(self.junction_ids):
            g.add_node(jid, x=float(self.junction_xy[j, 0]), y=float(self.junction_xy[j, 1]),
                       kind=self.junction_kind[j])
        for e, eid in enumerate(self.edge_ids):
            g.add_edge(self.junction_ids[self.edge_from[e]], self.junction_ids[self.edge_to[e]],
                       key=eid, index=e, length=float(self.edge_length[e]),
                       speed=float(self.edge_speed[e]), lanes=int(self.edge_num_lanes[e]))
        return g

    @cached_property
    def successors(self) -> tuple[np.ndarray, np.ndarray]:
        """Edge-to-edge CSR (``ptr``, ``next_edge``): which edges a vehicle can enter from
        each edge through some connection."""
        rows: list[set[int]] = [set() for _ in range(self.n_edges)]
        for fe, te in zip(self.conn_from_edge, self.conn_to_edge, strict=True):
            rows[int(fe)].add(int(te))
        return _csr(rows)

    def edge(self, edge_id: str) -> int:
        """Index of an edge by id.

        Raises:
            NetworkError: no such edge.
        """
        try:
            return self.edge_index[edge_id]
        except KeyError:
            raise NetworkError(f"unknown edge {edge_id!r}") from None

    @cached_property
    def _lane_index_of(self) -> dict[str, int]:
        return {lane_id: k for k, lane_id in enumerate(self.lane_ids)}

    def lane(self, lane_id: str) -> int:
        """Index of a normal lane by its SUMO-style id ``"{edge id}_{k}"`` (k = 0 rightmost).

        Raises:
            NetworkError: no such lane.
        """
        try:
            return self._lane_index_of[lane_id]
        except KeyError:
            pass
        edge_id = lane_id.rpartition("_")[0]
        if edge_id in self.edge_index:
            have = ", ".join(self.lane_ids[k] for k in self.lanes_of(self.edge_index[edge_id]))
            raise NetworkError(f"unknown lane {lane_id!r}: edge {edge_id!r} has lanes {have}")
        raise NetworkError(f"unknown lane {lane_id!r} (lane ids are '<edge id>_<k>')")

    def lanes_of(self, edge: int) -> range:
        """Normal-lane indices of an edge, rightmost first."""
        first = int(self.edge_first_lane[edge])
        return range(first, first + int(self.edge_num_lanes[edge]))

    def incoming_lanes(self, junction: int) -> np.ndarray:
        """Normal lanes that end at a junction."""
        edges = np.flatnonzero(self.edge_to == junction)
        return np.concatenate([np.arange(self.edge_first_lane[e],
                                         self.edge_first_lane[e] + self.edge_num_lanes[e])
                               for e in edges]) if edges.size else np.empty(0, np.int64)

    @cached_property
    def _lane_ends(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and end point of every lane (normal lanes along their edge's shape ends,
        internal lanes from the end of their from-lane to the start of their to-lane)."""
        start = np.empty((self.n_lanes, 2))
        end = np.empty((self.n_lanes, 2))
        for e, shape in enumerate(self.edge_shapes):
            lanes = self.lanes_of(e)
            if shape:
                start[lanes], end[lanes] = shape[0], shape[-1]
            else:
                start[lanes] = self.junction_xy[self.edge_from[e]]
                end[lanes] = self.junction_xy[self.edge_to[e]]
        via = self.n_normal_lanes + np.arange(self.n_connections)
        start[via] = end[self.conn_from_lane]
        end[via] = start[self.conn_to_lane]
        return start, end

    def positions(self, lane: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Approximate x, y (n x 2, metres) of points ``pos`` metres along lanes ``lane``:
        on the straight line between each lane's ends (exact on straight roads)."""
        start, end = self._lane_ends
        f = np.clip(pos / np.maximum(self.lane_length[lane], 1e-9), 0.0, 1.0)[:, None]
        return start[lane] + f * (end[lane] - start[lane])

    def __repr__(self) -> str:
        return (f"Network({self.n_junctions} junctions, {self.n_edges} edges, "
                f"{self.n_normal_lanes} lanes, {self.n_connections} connections, "
                f"{len(self.programs)} signals)")
