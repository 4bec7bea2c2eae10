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
from typing import TYPE_CHECKING, Any

from citytwin.errors import (
    BridgeError,
    CityTwinError,
    DemandError,
    NetworkError,
    ScenarioError,
    SimulationError,
)

#: Where each public name lives. They are imported on first use (PEP 562), so that light
#: processes (an emulated device, the serial bridge) do not load Numba and Mesa.
_LAZY = {
    "LoopDetector": "citytwin.agents.detectors",
    "SignalController": "citytwin.agents.signals",
    "Vehicle": "citytwin.agents.vehicles",
    "City": "citytwin.model.city",
    "SimConfig": "citytwin.model.config",
    "Demand": "citytwin.model.demand",
    "Flow": "citytwin.model.demand",
    "Trip": "citytwin.model.demand",
    "VehicleType": "citytwin.model.demand",
    "grid_network": "citytwin.model.grid",
    "Network": "citytwin.model.network",
    "NetworkBuilder": "citytwin.model.network",
    "Phase": "citytwin.model.network",
    "SignalProgram": "citytwin.model.network",
    "random_trips": "citytwin.model.routing",
    "Scenario": "citytwin.scenarios",
    "builtin_scenarios": "citytwin.scenarios",
    "load_scenario": "citytwin.scenarios",
}

if TYPE_CHECKING:
    from citytwin.agents.detectors import LoopDetector
    from citytwin.agents.signals import SignalController
    from citytwin.agents.vehicles import Vehicle
    from citytwin.model.city import City
    from citytwin.model.config import SimConfig
    from citytwin.model.demand import Demand, Flow, Trip, VehicleType
    from citytwin.model.grid import grid_network
    from citytwin.model.network import Network, NetworkBuilder, Phase, SignalProgram
    from citytwin.model.routing import random_trips
    from citytwin.scenarios import Scenario, builtin_scenarios, load_scenario


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'citytwin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
