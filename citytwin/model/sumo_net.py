"""Import a SUMO ``.net.xml`` (or ``.net.xml.gz``) road network, with its traffic lights.

sumolib, the SUMO project's own reader, parses the file; this module maps what it finds onto a
:class:`~citytwin.model.network.Network`:

- edges with at least one lane open to passenger cars, and only those lanes (lane ids stay
  SUMO's, so ``"e_1"`` is the same lane in both tools even when ``e_0`` is a sidewalk);
- each lane-to-lane connection between kept lanes, with the length of its chain of internal
  (``via``) lanes, their speed limit, its direction, its signal link index, its
  unsignalised state and, where an internal junction splits that chain (a left turn's), the
  wait point at its end;
- conflicts straight from the junctions' request matrices: ``foes`` are the links that cross
  or merge, ``response`` the links a connection must yield to;
- the last loaded program of each traffic light (SUMO's active one), static or actuated, with
  its offset and phases.

Anything the engine cannot represent (pedestrian crossings, rail, programs of other types) is
left out or refused with a :class:`~citytwin.errors.NetworkError` naming the element.
"""

from __future__ import annotations

import os
import xml.sax
from pathlib import Path

from citytwin.errors import NetworkError
from citytwin.model.network import Network, NetworkBuilder, Phase, SignalProgram

#: The vehicle class whose lanes are imported.
VCLASS = "passenger"

#: SUMO program types and the citytwin controller that runs them.
_PROGRAM_KINDS = {"static": "static", "actuated": "actuated", "delay_based": "actuated"}


def read_sumo_net(path: str | os.PathLike[str]) -> Network:
    """Read a SUMO network file.

    Args:
        path: A ``.net.xml`` or ``.net.xml.gz`` file written by netconvert or netgenerate.

    Raises:
        NetworkError: the file is missing, is not a SUMO network, or holds something the
            engine cannot represent; the message names the file and the element.
    """
    import sumolib  # heavy import, only needed here

    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"{path}: no such network file")
    try:
        net = sumolib.net.readNet(str(path), withInternal=True, withPrograms=True)
    except xml.sax.SAXParseException as exc:
        raise NetworkError(f"{path}:{exc.getLineNumber()}: not valid XML: "
                           f"{exc.getMessage()}") from None
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise NetworkError(f"{path}: not a readable SUMO network ({type(exc).__name__}: "
                           f"{exc})") from None
    try:
        return _convert(net)
    except NetworkError as exc:
        raise NetworkError(f"{path}: {exc}") from None


def _convert(net) -> Network:
    b = NetworkBuilder()
    edges = [e for e in net.getEdges(withInternal=False)
             if any(lane.allows(VCLASS) for lane in e.getLanes())]
    if not edges:
        raise NetworkError("no edge has a lane open to passenger cars")
    nodes = {e.getFromNode() for e in edges} | {e.getToNode() for e in edges}
    for node in sorted(nodes, key=lambda n: n.getID()):
        x, y = node.getCoord()
        b.add_junction(node.getID(), x, y, node.getType())

    kept_lane: dict[str, int] = {}  # SUMO lane id -> index among the edge's kept lanes
    for e in edges:
        lanes = [lane for lane in e.getLanes() if lane.allows(VCLASS)]
        for k, lane in enumerate(lanes):
            kept_lane[lane.getID()] = k
        b.add_edge(e.getID(), e.getFromNode().getID(), e.getToNode().getID(),
                   [(lane.getLength(), lane.getSpeed()) for lane in lanes],
                   priority=e.getPriority(), shape=e.getShape(),
                   lane_ids=[lane.getID() for lane in lanes])

    programs = _programs(net, edges)
    for program, junctions in programs:
        b.add_signal_program(program, junctions)
    tls_kept = {program.tls_id for program, _ in programs}

    # Connections, numbered per junction by SUMO's request index (incoming lanes in the
    # junction's order, each lane's links in file order; walking-area connections and the
    # pedestrian crossings that follow all vehicle links have none we use).
    conn_of_link: dict[tuple[str, int], int] = {}
    for node in sorted(nodes, key=lambda n: n.getID()):
        request = 0
        for lane_id in node._incLanes:  # sumolib offers no accessor for incLanes
            if not lane_id or lane_id.startswith(":"):
                continue
            lane = net.getLane(lane_id)
            for c in lane.getOutgoing():
                if c.getToLane().getID().startswith(":"):
                    continue  # sidewalk into a walking area: not a link of the junction logic
                index = request
                request += 1
                from_lane, to_lane = c.getFromLane(), c.getToLane()
                if (from_lane.getID() not in kept_lane or to_lane.getID() not in kept_lane
                        or not c.allows(VCLASS)):
                    continue
                length, shape, speed, wait = _via_chain(net, c)
                tls = c.getTLSID() or None
                if tls is not None and tls not in tls_kept:
                    raise NetworkError(f"connection {from_lane.getID()} -> {to_lane.getID()} "
                                       f"names traffic light {tls!r}, which has no program")
                conn_of_link[node.getID(), index] = b.add_connection(
                    c.getFrom().getID(), kept_lane[from_lane.getID()],
                    c.getTo().getID(), kept_lane[to_lane.getID()],
                    length=length, direction=c.getDirection(), state=_static_state(c),
                    tls=tls, link_index=c.getTLLinkIndex() if tls else -1, shape=shape,
                    speed=speed, wait=wait)

    for (node_id, index), conn in conn_of_link.items():
        node = net.getNode(node_id)
        foes = _bits(node._foes.get(index, ""))
        response = _bits(node._prohibits.get(index, ""))
        b.set_conflicts(conn,
                        [conn_of_link[node_id, j] for j in foes if (node_id, j) in conn_of_link],
                        [conn_of_link[node_id, j] for j in response
                         if (node_id, j) in conn_of_link])
    return b.build()


def _bits(mask: str) -> list[int]:
    """Link indices set in a SUMO request mask (the rightmost character is link 0)."""
    return [j for j, ch in enumerate(reversed(mask)) if ch == "1"]


def _static_state(c) -> str:
    state = c.getState()
    if state in ("G", "g", "y", "Y", "r", "u", "o", "O"):  # signalised or switched off
        return "m" if state in "oO" else "M"
    return state


def _via_chain(net, c) -> tuple[float, list[tuple[float, float]], float | None, float | None]:
    """Length, shape and speed limit (the least of its internal lanes', None without any) of
    a connection's path through its junction, and where a yielding vehicle waits on it: at
    the end of its first internal lane when an internal junction splits the path (None
    when none does)."""
    length = 0.0
    wait: float | None = None
    speed: float | None = None
    shape: list[tuple[float, float]] = []
    via = c.getViaLaneID()
    seen = set()
    while via and via not in seen:
        seen.add(via)
        lane = net.getLane(via)
        length += lane.getLength()
        speed = lane.getSpeed() if speed is None else min(speed, lane.getSpeed())
        shape.extend(lane.getShape())
        nxt = lane.getOutgoing()
        via = nxt[0].getViaLaneID() if nxt else ""
        if via and wait is None:
            wait = length
    if not shape:
        shape = [c.getFromLane().getShape()[-1], c.getToLane().getShape()[0]]
    return length, shape, speed, wait


def _programs(net, edges) -> list[tuple[SignalProgram, list[str]]]:
    """The active (last loaded) program of every traffic light that controls a kept edge."""
    kept = {e.getID() for e in edges}
    out = []
    for tls in sorted(net.getTrafficLights(), key=lambda t: t.getID()):
        junctions = sorted({lane_in.getEdge().getToNode().getID()
                            for lane_in, _, _ in tls.getConnections()
                            if lane_in.getEdge().getID() in kept})
        programs = list(tls.getPrograms().values())
        if not junctions or not programs:
            continue
        p = programs[-1]
        kind = _PROGRAM_KINDS.get(p.getType())
        if kind is None:
            raise NetworkError(f"traffic light {tls.getID()!r}: program type {p.getType()!r} "
                               f"is not supported (supported: {', '.join(_PROGRAM_KINDS)})")
        phases = []
        for ph in p.getPhases():
            min_dur = ph.minDur if ph.minDur is not None and ph.minDur >= 0 else ph.duration
            max_dur = ph.maxDur if ph.maxDur is not None and ph.maxDur >= 0 else ph.duration
            try:
                phases.append(Phase(float(ph.duration), ph.state, float(min_dur),
                                    float(max_dur), ph.name))
            except ValueError as exc:
                raise NetworkError(f"traffic light {tls.getID()!r}: {exc}") from None
        out.append((SignalProgram(tls.getID(), tuple(phases), float(p._offset), kind,
                                  str(p._id)), junctions))
    return out
