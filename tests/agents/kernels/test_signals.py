"""The signal kernel against a direct reading of the program timeline."""

from __future__ import annotations

import numpy as np

from citytwin.agents.signals import SignalFleet
from citytwin.model.network import Phase, SignalProgram
from tests import naive


def _run(program, ticks):
    fleet = SignalFleet([program], [[[] for _ in program.phases]], n_conns=program.n_links)
    conn_tls = np.zeros(program.n_links, np.int32)
    conn_link = np.arange(program.n_links, dtype=np.int32)
    under = np.arange(program.n_links, dtype=np.int32)
    state = np.zeros(program.n_links, np.uint8)
    phases = []
    for k in range(ticks):
        fleet.step(float(k), 1.0, 3.0, np.zeros(0), conn_tls, conn_link, under, state)
        phases.append(int(fleet.cur[0]))
    return phases


def test_fixed_time_program_follows_its_timeline():
    prog = SignalProgram("J", (Phase(31, "GGrr"), Phase(4, "yyrr"), Phase(2, "rrrr"),
                              Phase(25, "rrGG"), Phase(4, "rryy"), Phase(2, "rrrr")))
    assert _run(prog, 400) == naive.signal_states(prog, 400)


def test_offset_shifts_the_program():
    prog = SignalProgram("J", (Phase(30, "Gr"), Phase(3, "yr"), Phase(27, "rG")), offset=17)
    assert _run(prog, 200) == naive.signal_states(prog, 200)


def test_actuated_phase_gaps_out_without_traffic_and_holds_to_max_with_it():
    prog = SignalProgram("J", (Phase(30, "Gr", min_dur=5, max_dur=50), Phase(3, "yr"),
                               Phase(30, "rG", min_dur=5, max_dur=50), Phase(3, "ry")),
                         kind="actuated")
    fleet = SignalFleet([prog], [[[0], [], [1], []]], n_conns=2)
    args = (np.zeros(2, np.int32), np.arange(2, dtype=np.int32), np.arange(2, dtype=np.int32),
            np.zeros(2, np.uint8))
    last_on = np.full(2, -1e18)
    t = 0.0
    while fleet.cur[0] == 0:  # no detections: ends right after min green + gap
        fleet.step(t, 1.0, 3.0, last_on, *args)
        t += 1
    # The first tick runs under the program at 1 s (SUMO's first step): four more ticks of
    # min green, then it switches on the fifth.
    assert t == 5
    while fleet.cur[0] != 2:
        fleet.step(t, 1.0, 3.0, last_on, *args)
        t += 1
    start = t - 1
    while fleet.cur[0] == 2:  # a vehicle on the detector every tick: held to max green
        last_on[1] = t
        fleet.step(t, 1.0, 3.0, last_on, *args)
        t += 1
    assert t - 1 - start == 50


def test_actuated_phase_without_loops_ends_at_its_min_duration():
    prog = SignalProgram("J", (Phase(30, "Gr", min_dur=7, max_dur=50), Phase(3, "yr"),
                               Phase(20, "rG")), kind="actuated")
    # Phase 0 for its 7 s min (the first tick already runs 1 s into it), 3 s yellow, phase 2.
    assert _run(prog, 40)[:12] == [0] * 6 + [1] * 3 + [2] * 3
