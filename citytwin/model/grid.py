"""Generated grid networks: a downtown of rows x cols junctions, signalised or not.

Junction ``r{r}c{c}`` stands at x = c * edge_length, y = r * edge_length. Every junction has four
arms: border arms lead to fringe dead ends ``r{r}c{c}_N`` (``_E``, ``_S``, ``_W``) so demand can
enter and leave the grid, as SUMO's ``netgenerate --grid --grid.attach-length`` does. Edge ids
are ``{from}_{to}``. Per approach, lane 0 (rightmost) turns right, the leftmost lane turns left
and every lane goes straight; U-turns are not generated.

Signalised junctions get a fixed-time (or actuated) two-phase program: north-south, then
east-west, each with protected through and right movements, permissive left turns (``g``),
then yellow and all-red.
"""

from __future__ import annotations

import math

from citytwin.errors import NetworkError
from citytwin.model.network import Network, NetworkBuilder, Phase, SignalProgram

LANE_WIDTH = 3.2
# Arms as unit vectors pointing from the junction outwards.
_ARMS = {"N": (0.0, 1.0), "E": (1.0, 0.0), "S": (0.0, -1.0), "W": (-1.0, 0.0)}


def grid_network(rows: int, cols: int, *, edge_length: float = 200.0, lanes: int = 1,
                 speed: float = 13.89, signalised: bool = True, attach_length: float = 100.0,
                 cycle: float = 90.0, yellow: float = 3.0, all_red: float = 2.0,
                 actuated: bool = False, min_green: float = 10.0,
                 max_green: float = 60.0) -> Network:
    """Build a rows x cols grid; see the module docstring for ids and geometry.

    Raises:
        NetworkError: a parameter is out of range (the message says which).
    """
    if rows < 1 or cols < 1:
        raise NetworkError(f"grid needs rows >= 1 and cols >= 1, got {rows}x{cols}")
    if lanes < 1 or lanes > 6:
        raise NetworkError(f"grid lanes must be 1..6, got {lanes}")
    if edge_length <= 4 * lanes * LANE_WIDTH or attach_length <= 2 * lanes * LANE_WIDTH:
        raise NetworkError("grid edge_length and attach_length must exceed the junction size "
                           f"({4 * lanes * LANE_WIDTH:.1f} m)")
    green = (cycle - 2 * (yellow + all_red)) / 2
    if signalised and green < 5:
        raise NetworkError(f"grid cycle {cycle} s leaves {green:.1f} s of green per phase")
    if speed <= 0:
        raise NetworkError("grid speed must be > 0")

    b = NetworkBuilder()
    half = lanes * LANE_WIDTH  # distance from junction centre to its stop lines

    def jid(r: int, c: int) -> str:
        return f"r{r}c{c}"

    for r in range(rows):
        for c in range(cols):
            b.add_junction(jid(r, c), c * edge_length, r * edge_length,
                           "traffic_light" if signalised else "priority")
    # Neighbour of each arm: an inner junction or a fringe dead end.
    arm_node: dict[tuple[int, int, str], str] = {}
    for r in range(rows):
        for c in range(cols):
            for arm, (dx, dy) in _ARMS.items():
                nr, nc = r + int(dy), c + int(dx)
                if 0 <= nr < rows and 0 <= nc < cols:
                    arm_node[(r, c, arm)] = jid(nr, nc)
                else:
                    fid = f"{jid(r, c)}_{arm}"
                    b.add_junction(fid, c * edge_length + dx * attach_length,
                                   r * edge_length + dy * attach_length, "dead_end")
                    arm_node[(r, c, arm)] = fid

    made: set[tuple[str, str]] = set()
    for r in range(rows):
        for c in range(cols):
            here = jid(r, c)
            for arm, (dx, _dy) in _ARMS.items():
                other = arm_node[(r, c, arm)]
                fringe = other.startswith(here + "_")
                length = (attach_length if fringe else edge_length) - (half if fringe else 2 * half)
                # East-west roads have priority at unsignalised junctions.
                prio = 2 if dx != 0 else 1
                for a, z in ((here, other), (other, here)):
                    if (a, z) not in made:
                        made.add((a, z))
                        b.add_edge(f"{a}_{z}", a, z, [(length, speed)] * lanes, priority=prio)

    for r in range(rows):
        for c in range(cols):
            _add_junction_logic(b, rows, cols, r, c, jid(r, c), arm_node, lanes, half,
                                signalised, green, yellow, all_red, actuated, min_green,
                                max_green)
    if signalised:
        # The program separates crossing streams; within a phase, permissive left turns
        # yield to the opposing through and right movements.
        b.derive_conflicts([0 if c.direction == "l" else 1 for c in b._conns])
    else:
        b.derive_conflicts()  # minor (north-south) roads yield to east-west ones
    return b.build()


def _add_junction_logic(b: NetworkBuilder, rows: int, cols: int, r: int, c: int, here: str,
                        arm_node: dict[tuple[int, int, str], str], lanes: int, half: float,
                        signalised: bool, green: float, yellow: float, all_red: float,
                        actuated: bool, min_green: float, max_green: float) -> None:
    cx, cy = b._junction_xy[b._junction_index[here]]
    # Movements: (in arm, out arm, direction, from lane, to lane)
    moves: list[tuple[str, str, str, int, int]] = []
    for a_in, (ax, ay) in _ARMS.items():
        tx, ty = -ax, -ay  # travel direction of vehicles coming from arm a_in
        for a_out, (bx, by) in _ARMS.items():
            if a_out == a_in:
                continue
            cross = tx * by - ty * bx
            if a_out == _opposite(a_in):
                moves.extend((a_in, a_out, "s", k, k) for k in range(lanes))
            elif cross < 0:
                moves.append((a_in, a_out, "r", 0, 0))
            else:
                moves.append((a_in, a_out, "l", lanes - 1, lanes - 1))

    ns_green = "".join(("g" if d == "l" else "G") if a in "NS" else "r" for a, _, d, _, _ in moves)
    ew_green = "".join(("g" if d == "l" else "G") if a in "EW" else "r" for a, _, d, _, _ in moves)
    tls = None
    if signalised:
        def yellow_of(s: str) -> str:
            return "".join("y" if ch in "Gg" else "r" for ch in s)
        red = "r" * len(moves)
        lo, hi = (min_green, max_green) if actuated else (None, None)
        phases = (Phase(green, ns_green, lo, hi), Phase(yellow, yellow_of(ns_green)),
                  Phase(all_red, red), Phase(green, ew_green, lo, hi),
                  Phase(yellow, yellow_of(ew_green)), Phase(all_red, red))
        tls = here
        b.add_signal_program(SignalProgram(here, phases, 0.0,
                                           "actuated" if actuated else "static"), [here])

    for link, (a_in, a_out, d, kin, kout) in enumerate(moves):
        in_edge = f"{arm_node[(r, c, a_in)]}_{here}"
        out_edge = f"{here}_{arm_node[(r, c, a_out)]}"
        p0 = _lane_point(cx, cy, a_in, kin, lanes, half, incoming=True)
        p1 = _lane_point(cx, cy, a_out, kout, lanes, half, incoming=False)
        shape = _turn_shape(p0, p1, _ARMS[a_in], _ARMS[a_out], d)
        length = sum(math.dist(shape[i], shape[i + 1]) for i in range(len(shape) - 1))
        major = a_in in "EW" and d != "l"
        b.add_connection(in_edge, kin, out_edge, kout, length=length, direction=d,
                         state="M" if (major or signalised) else "m",
                         tls=tls, link_index=link if tls else -1, shape=shape)


def _opposite(arm: str) -> str:
    return {"N": "S", "S": "N", "E": "W", "W": "E"}[arm]


def _lane_point(cx: float, cy: float, arm: str, k: int, lanes: int, half: float,
                incoming: bool) -> tuple[float, float]:
    ax, ay = _ARMS[arm]
    tx, ty = (-ax, -ay) if incoming else (ax, ay)  # travel direction
    rx, ry = ty, -tx  # right-hand normal of the travel direction
    off = (lanes - 1 - k + 0.5) * LANE_WIDTH
    return (cx + ax * half + rx * off, cy + ay * half + ry * off)


def _turn_shape(p0: tuple[float, float], p1: tuple[float, float], arm_in: tuple[float, float],
                arm_out: tuple[float, float], d: str) -> list[tuple[float, float]]:
    if d == "s":
        return [p0, p1]
    tx, ty = -arm_in[0], -arm_in[1]
    along = (p1[0] - p0[0]) * tx + (p1[1] - p0[1]) * ty
    ctrl = (p0[0] + tx * along, p0[1] + ty * along)
    pts = []
    for i in range(7):  # quadratic Bezier, 6 segments
        s = i / 6
        pts.append(((1 - s) ** 2 * p0[0] + 2 * (1 - s) * s * ctrl[0] + s * s * p1[0],
                    (1 - s) ** 2 * p0[1] + 2 * (1 - s) * s * ctrl[1] + s * s * p1[1]))
    return pts
