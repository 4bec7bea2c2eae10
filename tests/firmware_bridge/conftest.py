"""Fixtures for the serial bridge: the firmware modules, boards on real pseudo-terminals,
gateways, a real broker (the HIL suite's fixture) and a hand-played simulator."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tty
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from citytwin.firmware_bridge.emulator import FirmwareEmulator, firmware_dir, load_firmware
from citytwin.firmware_bridge.gateway import GatewayOptions, SerialGateway
from citytwin.firmware_bridge.line import LineOptions
from citytwin.hil.broker import BrokerURL, EmbeddedBroker
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


#: Gateway options for tests: quick retries and HELLO_REQs, a short broker timeout.
FAST = GatewayOptions(retry_first=0.05, retry_cap=0.4, connect_timeout=1.0,
                      line=LineOptions(hello_interval=0.2))


@pytest.fixture
def gateway(broker: EmbeddedBroker) -> Iterator[Callable[..., SerialGateway]]:  # noqa: F811
    """Start gateways to ``broker`` (``gateway(port_url, url=None, **GatewayOptions fields)``,
    quick retries by default); stopped afterwards."""
    made: list[SerialGateway] = []

    def make(port: str, url: BrokerURL | None = None, **options: Any) -> SerialGateway:
        gw = SerialGateway(port, url or broker.url, dataclasses.replace(FAST, **options))
        made.append(gw)
        gw.start()
        return gw

    yield make
    for gw in made:
        gw.stop()


@pytest.fixture
def serial_pair() -> Iterator[tuple[int, str]]:
    """A raw pseudo-terminal the test plays the device on: ``(master fd, slave path)``. The
    bridge opens the path; the test reads and writes the master (or closes it: unplugged)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.set_blocking(master, False)
    yield master, path
    for fd in (master, slave):
        with contextlib.suppress(OSError):
            os.close(fd)

