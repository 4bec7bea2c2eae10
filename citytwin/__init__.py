"""citytwin: a city digital twin that hardware can be plugged into.

Agents for vehicles and signals run the city on Mesa, with their per-tick work compiled by
Numba. The short public API::

    from citytwin import load_scenario
    city = load_scenario("downtown").build_city(seed=1)
    city.run_for(3600)
    print(city.kpis())

or build the parts yourself: :func:`grid_network` or :func:`read_sumo_net` for the roads,
:class:`Demand` for the traffic, :class:`City` to run them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from citytwin.agents.detectors import LoopDetector
from citytwin.agents.signals import SignalController
from citytwin.agents.vehicles import Vehicle
from citytwin.errors import (
    BridgeError,
    CityTwinError,
    DemandError,
    NetworkError,
    ScenarioError,
    SimulationError,
)
from citytwin.model.city import City
from citytwin.model.config import SimConfig
from citytwin.model.demand import Demand, Flow, Trip, VehicleType
from citytwin.model.grid import grid_network
from citytwin.model.network import Network, NetworkBuilder, Phase, SignalProgram
from citytwin.model.routing import random_trips
from citytwin.scenarios import Scenario, builtin_scenarios, load_scenario

try:
    __version__ = version("citytwin")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BridgeError",
    "City",
    "CityTwinError",
    "Demand",
    "DemandError",
    "Flow",
    "LoopDetector",
    "Network",
    "NetworkBuilder",
    "NetworkError",
    "Phase",
    "Scenario",
    "ScenarioError",
    "SignalController",
    "SignalProgram",
    "SimConfig",
    "SimulationError",
    "Trip",
    "Vehicle",
    "VehicleType",
    "__version__",
    "builtin_scenarios",
    "grid_network",
    "load_scenario",
    "random_trips",
]
