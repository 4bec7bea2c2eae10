"""Fixtures for the serial bridge: the firmware modules, boards on real pseudo-terminals,
gateways, a real broker (the HIL suite's fixture) and a hand-played simulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from citytwin.firmware_bridge.emulator import FirmwareEmulator, firmware_dir, load_firmware
from tests.hil.conftest import broker, connect, make_broker  # noqa: F401 - the broker fixtures
from tests.hil.emulated.conftest import eight_phase_config


@pytest.fixture(scope="session")
def firmware() -> dict[str, ModuleType]:
    """The reference firmware's modules (``ctfw_wire``, ``ctfw_device``, ...)."""
    return load_firmware(firmware_dir())


@pytest.fixture
def board() -> Iterator[Callable[..., FirmwareEmulator]]:
    """Make firmware boards (``board(kind, id, **FirmwareEmulator kwargs)``); unplugged after."""
    made: list[FirmwareEmulator] = []

    def make(kind: str, device_id: str, **kwargs: Any) -> FirmwareEmulator:
        emulator = FirmwareEmulator(kind, device_id, **kwargs)
        made.append(emulator)
        return emulator

    yield make
    for emulator in made:
        emulator.close()


@pytest.fixture
def eight_phase() -> dict[str, Any]:
    """The signal ``config`` of a standard NEMA eight-phase junction (one link per phase)."""
    return eight_phase_config()
