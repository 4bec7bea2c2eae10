"""The curated public API stays curated: every name in ``__all__`` exists, nothing else
public leaks, and importing does nothing (no threads, no files, no network)."""

from __future__ import annotations

import subprocess
import sys

import citytwin

EXPECTED = {
    "BridgeError", "City", "CityTwinError", "Demand", "DemandError", "Flow", "LoopDetector",
    "Network", "NetworkBuilder", "NetworkError", "Phase", "ScenarioError", "SignalController",
    "SignalProgram", "SimConfig", "SimulationError", "Trip", "Vehicle", "VehicleType",
    "__version__", "grid_network", "random_trips",
}


def test_all_is_the_expected_set():
    assert set(citytwin.__all__) >= EXPECTED
    for name in citytwin.__all__:
        assert hasattr(citytwin, name), name


def test_errors_form_one_tree():
    for name in ("NetworkError", "DemandError", "ScenarioError", "SimulationError",
                 "BridgeError"):
        assert issubclass(getattr(citytwin, name), citytwin.CityTwinError)


def test_model_layer_does_not_import_devices():
    code = ("import sys, citytwin, citytwin.model.city; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('paho', 'serial') "
            "or m.startswith(('citytwin.hil', 'citytwin.firmware_bridge', 'citytwin.cli'))]; "
            "print(bad); import threading; print(threading.active_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "[]"
    assert out[1] == "1"  # importing started no thread
