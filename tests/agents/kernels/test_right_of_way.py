"""Right of way inside junctions: who a vehicle entering a connection waits for."""

from __future__ import annotations

import numpy as np

from citytwin.agents.kernels.right_of_way import HALT_SPEED, foes_inside
from citytwin.scenarios.loader import load_scenario


def _one_foe(yields: int):
    """Connection 0 meets connection 1 at 5 m along 0; 1 holds one vehicle standing at its
    wait point, short of the conflict (its back at 2 m of the 8 m where it is clear of 0)."""
    foe_ptr = np.array([0, 1, 1], np.int32)
    foe = np.array([1], np.int32)
    clear, at = np.array([8.0]), np.array([5.0])
    occ, min_back = np.array([0, 1], np.int32), np.array([np.inf, 2.0])
    occ_go, min_back_go = np.array([0, 0], np.int32), np.array([np.inf, np.inf])
    return (foe_ptr, foe, clear, at, np.array([yields], np.uint8), occ, min_back, occ_go,
            min_back_go)


def test_a_vehicle_entering_to_wait_lets_the_foe_standing_inside_clear_first():
    arrays = _one_foe(yields=1)
    # Driving through: the standing foe yields to it there and does not hold it up.
    assert not foes_inside(0, 0.0, np.inf, *arrays, False)
    # Entering to stand at its wait point (7.8 m), past the conflict at 5 m: it would stand
    # in the foe's way, so it waits for the foe to clear.
    assert foes_inside(0, 0.0, 7.8, *arrays, True)
    # A foe that does not yield holds it up either way.
    assert foes_inside(0, 0.0, np.inf, *_one_foe(yields=0), False)


def test_left_turners_of_two_stages_do_not_lock_a_junction():
    """Under max-pressure at the saturated peak (seed 102), left turners of both stages used
    to end up inside junction F2 together, each standing in the next one's way: a ring of
    four that stood for minutes until teleported, and the grid jammed behind it."""
    scenario = load_scenario("signals_saturated").with_signals({"policy": "max-pressure"},
                                                                 "max-pressure")
    city = scenario.build_city(102)
    city.run_for(900.0)
    veh, nn = city.fleet.veh, city.network.n_normal_lanes
    inside = np.flatnonzero((veh.alive == 1) & (veh.lane >= nn) & (veh.speed < HALT_SPEED))
    assert veh.halt_cont[inside].max(initial=0.0) < 60.0
