"""Whole runs against SUMO 1.28's own traces of the same network and routes
(``tests/data/sumo_traces.py`` made them; SUMO is not needed here)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.sumo_net import read_sumo_net
from citytwin.model.sumo_routes import read_sumo_routes

DATA = Path(__file__).parents[1] / "data"


def _sumo(name: str) -> dict[str, dict[float, tuple[str, float, float]]]:
    out: dict[str, dict[float, tuple[str, float, float]]] = {}
    with open(DATA / name) as f:
        for row in csv.DictReader(f):
            out.setdefault(row["id"], {})[float(row["time"])] = (
                row["lane"], float(row["pos"]), float(row["speed"]))
    return out


def test_a_queue_at_a_red_light_forms_and_discharges_as_in_sumo():
    """15 cars meet a light red for 60 s: their positions and speeds on the approach (the red
    light slows every one of them from the lane's start, leader or not), where they stand (1 m
    before the line, then 7.5 m apart) and the second each crosses the line, step for step
    as SUMO's."""
    net = read_sumo_net(DATA / "sumo_queue.net.xml")
    demand = read_sumo_routes(DATA / "sumo_queue.rou.xml", net)
    city = City(net, demand, rng=1, config=SimConfig(mesa_agents=False, reroute_period=0))
    sumo = _sumo("sumo_queue.csv")
    approach = net.lane("ab_0")
    veh = city.fleet.veh
    ours: dict[str, dict[float, tuple[int, float, float]]] = {}
    while city.sim_time < 120:
        city.step()
        for i in np.flatnonzero(veh.alive):
            ours.setdefault(f"v{int(veh.trip[i])}", {})[city.sim_time] = (
                int(veh.lane[i]), float(veh.pos[i]), float(veh.speed[i]))
    assert set(ours) == set(sumo)
    for vid, steps in sumo.items():
        crossed = min(t for t, (lane, _, _) in steps.items() if lane != "ab_0")
        assert crossed == min(t for t, (lane, _, _) in ours[vid].items() if lane != approach)
        for t, (lane, pos, speed) in steps.items():
            if lane == "ab_0" and t in ours[vid]:
                assert ours[vid][t][1:] == pytest.approx((pos, speed), abs=0.01), (vid, t)
    standing = [ours[f"v{k}"][59.0][1] for k in range(5)]  # (the others still close up)
    assert standing == pytest.approx([499.0 - 7.5 * k for k in range(5)], abs=0.01)
