"""The one exception tree of citytwin.

Every error the package raises on purpose derives from :class:`CityTwinError`, so callers can
catch the whole family with one clause. Third-party errors (sumolib, pydantic, paho, pyserial)
are translated at the boundary into one of these, with a message that says what to do.

::

    CityTwinError
    ├── NetworkError          a road network is malformed or cannot be imported
    ├── DemandError           trips, flows or routes do not fit the network
    ├── ScenarioError         a scenario file or name is invalid (CLI exit code 2)
    ├── SimulationError       a run failed while stepping (CLI exit code 1)
    └── BridgeError           a device bridge (MQTT or serial) failed
        └── SerialLinkError   a serial port is missing, unplugged or failing (retry later)
"""

from __future__ import annotations


class CityTwinError(Exception):
    """Base class of every error citytwin raises on purpose."""


class NetworkError(CityTwinError):
    """A road network is malformed or cannot be imported."""


class DemandError(CityTwinError):
    """Trips, flows or routes refer to edges that do not exist or cannot be routed."""


class ScenarioError(CityTwinError):
    """A scenario file or name is invalid; the message names the field and the problem."""


class SimulationError(CityTwinError):
    """A run failed while stepping."""


class BridgeError(CityTwinError):
    """A device bridge (MQTT or serial) failed."""


class SerialLinkError(BridgeError):
    """A serial port cannot be opened or used now (missing, unplugged, I/O error or timeout).

    Retrying later can help, unlike a :class:`BridgeError` for a port URL that is wrong in
    itself. Raised in place of pyserial's ``SerialException`` and the ``OSError`` of a port.
    """
