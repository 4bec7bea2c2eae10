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
