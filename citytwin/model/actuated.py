"""Where the loop detectors of actuated signal programs lie, and which of them extend which
green phase: SUMO's rules (``MSActuatedTrafficLightLogic::init``), so that an imported
actuated program switches as it does in SUMO.

- One loop per lane with a link green in an actuated phase (min duration below max), at
  ``min(detector_gap x speed limit, (min green / PASSING_TIME + 0.5) x LENGTH_WITH_GAP)``
  before the stop line, where min green is the least min duration of those phases: the loop
  must not lie beyond the queue that the min green clears. On a lane too short for that the
  loop moves upstream, through the junction's path into the lane (a lane of its own) and on,
  while the lane has a single incoming connection and no signal on it; else it lies at the
  lane's start.
- A loop extends an actuated phase only if every link of its lane is green in it (``G``, or
  ``g`` on a link that is never major, or a turnaround, from a lane with a major link in the
  phase, or from an edge with one lane), and, at a joined signal, the loop of the lane its
  links lead to extends it too.
- A phase without loops ends at its min duration (the kernel's rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from citytwin.model.network import Network, SignalProgram

#: Seconds a vehicle of a discharging queue takes to pass the stop line (SUMO's passing-time).
PASSING_TIME = 1.9
#: Metres a queued car takes up, gap included (SUMO's DEFAULT_VEH_LENGTH_WITH_GAP).
LENGTH_WITH_GAP = 7.5


@dataclass
class DetectorLayout:
    """The generated loops (``ids``, ``lanes``, ``pos``), per program the loops of each phase,
    and the loop of each signal-fed lane (by the lane a program's links leave from)."""

    ids: list[str] = field(default_factory=list)
    lanes: list[int] = field(default_factory=list)
    pos: list[float] = field(default_factory=list)
    of_phase: list[list[list[int]]] = field(default_factory=list)
    of_lane: dict[int, int] = field(default_factory=dict)

    def add(self, name: str, lane: int, pos: float) -> int:
        self.ids.append(name)
        self.lanes.append(lane)
        self.pos.append(pos)
        return len(self.ids) - 1


def detector_layout(net: Network, detector_gap: float, all_signals: bool) -> DetectorLayout:
    """Loops for every actuated program (SUMO's placement and phase rules), and where
    ``all_signals`` one per signal-fed lane of every other program as well (``detector_gap``
    seconds before the stop line, for controllers that sense every signal)."""
    out = DetectorLayout()
    incoming = np.bincount(net.conn_to_lane, minlength=net.n_lanes)
    feeder = np.full(net.n_lanes, -1, np.int64)  # the connection into a lane fed by one
    feeder[net.conn_to_lane] = np.arange(net.n_connections)
    for k, prog in enumerate(net.programs):
        conns = np.flatnonzero(net.conn_tls == k)
        if prog.kind == "actuated":
            det_of_lane = _sumo_loops(out, net, prog, conns, detector_gap, incoming, feeder)
            out.of_phase.append(_sumo_phase_loops(net, prog, conns, det_of_lane))
        else:
            det_of_lane = {}
            if all_signals:
                for c in conns:
                    lane = int(net.conn_from_lane[c])
                    if lane not in det_of_lane:
                        length = float(net.lane_length[lane])
                        x = max(length - detector_gap * float(net.lane_speed[lane]),
                                0.1 * length)
                        det_of_lane[lane] = out.add(f"{prog.tls_id}_{len(det_of_lane)}",
                                                    lane, x)
            out.of_phase.append([[] for _ in prog.phases])
        out.of_lane.update(det_of_lane)
    return out


def _sumo_loops(out: DetectorLayout, net: Network, prog: SignalProgram, conns: np.ndarray,
                detector_gap: float, incoming: np.ndarray, feeder: np.ndarray) -> dict[int, int]:
    min_green: dict[int, float] = {}
    for ph in prog.phases:
        if ph.is_actuated:
            for c in conns:
                if ph.state[net.conn_link[c]] in "Gg":
                    lane = int(net.conn_from_lane[c])
                    min_green[lane] = min(min_green.get(lane, np.inf), ph.bounds[0])
    det_of_lane: dict[int, int] = {}
    for c in conns:
        lane = int(net.conn_from_lane[c])
        if lane not in min_green or lane in det_of_lane:
            continue
        back = min(detector_gap * float(net.lane_speed[lane]),
                   (min_green[lane] / PASSING_TIME + 0.5) * LENGTH_WITH_GAP)
        at, x = lane, float(net.lane_length[lane]) - back
        while x < 0:  # upstream through the junction's path (a lane of its own) and on
            if at >= net.n_normal_lanes:
                at = int(net.conn_from_lane[at - net.n_normal_lanes])
            elif incoming[at] == 1 and net.conn_tls[feeder[at]] < 0:
                at = net.n_normal_lanes + int(feeder[at])
            else:
                break
            x += float(net.lane_length[at])
        det_of_lane[lane] = out.add(f"{prog.tls_id}_{len(det_of_lane)}", at, max(x, 0.0))
    return det_of_lane


def _sumo_phase_loops(net: Network, prog: SignalProgram, conns: np.ndarray,
                      det_of_lane: dict[int, int]) -> list[list[int]]:
    lanes_of_link: dict[int, set[int]] = {}
    for c in conns:
        lanes_of_link.setdefault(int(net.conn_link[c]), set()).add(int(net.conn_from_lane[c]))
    turnaround = {i: all(net.conn_direction[c] == "t" for c in conns if net.conn_link[c] == i)
                  for i in lanes_of_link}
    never_major = {i: all(ph.state[i] != "G" for ph in prog.phases) for i in lanes_of_link}
    one_lane = {i: any(net.edge_num_lanes[net.lane_edge[lane]] == 1 for lane in lanes)
                for i, lanes in lanes_of_link.items()}
    links_of_lane: dict[int, set[int]] = {}
    for i, lanes in lanes_of_link.items():
        for lane in lanes:
            links_of_lane.setdefault(lane, set()).add(i)
    phases: list[list[int]] = []
    for ph in prog.phases:
        if not ph.is_actuated:
            phases.append([])
            continue
        major_lanes = {lane for i, lanes in lanes_of_link.items() if ph.state[i] == "G"
                       for lane in lanes}
        green = {i for i, lanes in lanes_of_link.items()
                 if ph.state[i] == "G" or (ph.state[i] == "g" and (
                     ((never_major[i] or turnaround[i]) and lanes & major_lanes)
                     or one_lane[i]))}

        all_green = {lane for lane, links in links_of_lane.items() if links <= green}
        loops = set()
        for lane, det in det_of_lane.items():
            if lane not in all_green:
                continue
            outs = net.lane_out[net.lane_out_ptr[lane]:net.lane_out_ptr[lane + 1]]
            nexts = [int(net.conn_to_lane[c]) for c in outs if net.conn_direction[c] != "t"]
            if all(n not in det_of_lane or n in all_green for n in nexts):
                loops.add(det)
        phases.append(sorted(loops))
    return phases
