"""Shared fixtures: small networks and cities that tests can step in well under a second."""

from __future__ import annotations

import numpy as np
import pytest

from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.demand import Demand
from citytwin.model.grid import grid_network
from citytwin.model.network import Network
from citytwin.model.routing import random_trips


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def small_grid() -> Network:
    """A signalised 3x3 grid with two lanes per direction."""
    return grid_network(3, 3, lanes=2, edge_length=150.0)


def make_city(net: Network, *, vehs_per_hour: float = 3000.0, end: float = 600.0,
              seed: int = 7, **config) -> City:
    """A city with random fringe-to-fringe trips (``seed`` drives demand and the model)."""
    trips = random_trips(net, begin=0.0, end=end, vehs_per_hour=vehs_per_hour,
                         rng=np.random.default_rng(seed))
    return City(net, Demand(trips=trips), rng=seed, config=SimConfig(**config))


@pytest.fixture
def small_city(small_grid: Network) -> City:
    """A busy 3x3 grid city with rerouting on."""
    return make_city(small_grid, reroute_period=60.0)


# -- scenario files -------------------------------------------------------------------------
#: A valid scenario using every table: a 2x2 grid, one flow, one routed trip, random trips
#: with a profile, a vehicle type and a detector. Runs 120 s in a fraction of a second.
TINY_SCENARIO = """\
name = "tiny"
description = "a 2x2 test grid"
seed = 3
duration = 120

[network.grid]
rows = 2
cols = 2
edge_length = 100.0
attach_length = 60.0
lanes = 1
cycle = 40.0

[demand]

[[demand.flows]]
id = "east"
from = "r0c0_W_r0c0"
to = "r0c1_r0c1_E"
begin = 0
end = 100
vehs_per_hour = 360
vtype = "car"

[[demand.trips]]
id = "solo"
depart = 5
route = ["r0c0_W_r0c0", "r0c0_r0c1", "r0c1_r0c1_E"]

[demand.random]
begin = 0
end = 100
vehs_per_hour = 900
profile = [[0, 0.5], [50, 1.0], [100, 0.5]]

[[vtypes]]
id = "car"
accel = 2.0
max_speed = 30.0

[simulation]
summary_interval = 30
reroute_period = 60

[[detectors]]
id = "loop"
lane = "r0c0_r0c1_0"
pos = 20.0
"""


@pytest.fixture
def write_toml(tmp_path):
    """Write text to ``tmp_path / name`` and return the path."""
    def write(text: str, name: str = "scenario.toml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write


@pytest.fixture
def tiny_scenario(write_toml):
    """Path of :data:`TINY_SCENARIO` written to a temporary folder."""
    return write_toml(TINY_SCENARIO, "tiny.toml")
