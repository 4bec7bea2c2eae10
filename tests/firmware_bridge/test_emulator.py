"""The command lines as a user runs them: ``citytwin firmware-emulator`` prints a real pty,
``citytwin bridge serial`` maps the board on it onto the broker, both stop cleanly on SIGTERM;
and the firmware's own ``main.py`` runs unchanged under CPython on a pty."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from citytwin.errors import BridgeError
from citytwin.firmware_bridge.emulator import FirmwareEmulator, firmware_dir
from citytwin.firmware_bridge.gateway import SerialGateway
from citytwin.hil.broker import EmbeddedBroker
from citytwin.hil.transport import MqttLink
from tests.hil.conftest import Inbox

MET = "citytwin/v1/lab/meter/m-cli"
Connect = Callable[..., tuple[MqttLink, Inbox]]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes the test starts; killed afterwards if still running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(5)


def start(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    procs.append(p)
    return p


def first_line(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    assert line, p.stderr.read() if p.stderr else "no output"
    return line


def test_emulator_and_bridge_commands_end_to_end(broker: EmbeddedBroker, connect: Connect,
                                                 procs: list[subprocess.Popen[str]],
                                                 tmp_path: Path) -> None:
    _, inbox = connect("watch", [(f"{MET}/avail", 1), (f"{MET}/birth", 1)])
    link = tmp_path / "ttyMETER"
    emu = start(procs, sys.executable, "-m", "citytwin", "firmware-emulator", "--kind", "meter",
                "--id", "m-cli", "--link", str(link), "--heartbeat", "200")
    port = first_line(emu)
    assert port == str(link)
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)  # a real pseudo-terminal, as a USB serial board would be
    finally:
        os.close(fd)
    bridge = start(procs, sys.executable, "-m", "citytwin", "bridge", "serial", "--port", port,
                   "--broker", str(broker.url), "--log-level", "warning")
    assert first_line(bridge).startswith(f"bridging serial port {port} to")
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=15))["status"] == "online"
    birth = json.loads(inbox.expect(f"{MET}/birth"))
    assert birth["kind"] == "meter" and birth["fw"].startswith("citytwin-fw-meter")
    bridge.send_signal(signal.SIGTERM)  # the device goes offline as the bridge leaves
    assert bridge.wait(10) == 0
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=5))["status"] == "offline"
    emu.send_signal(signal.SIGTERM)
    assert emu.wait(10) == 0
    assert not link.exists()  # the alias goes with the board


def test_bridge_refuses_a_bad_port_url_as_bad_input() -> None:
    res = subprocess.run([sys.executable, "-m", "citytwin", "bridge", "serial", "--port",
                          "socket://nohost", "--broker", "mqtt://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "socket:// needs a host and a port" in res.stderr


def test_firmware_main_runs_unchanged_under_cpython_on_a_pty(
        gateway: Callable[..., SerialGateway], connect: Connect,
        procs: list[subprocess.Popen[str]]) -> None:
    _, inbox = connect("watch", [(f"{MET}/birth", 1)])
    fw = start(procs, sys.executable, str(firmware_dir() / "main.py"), "--kind", "meter",
               "--id", "m-cli")
    gateway(first_line(fw))
    birth = json.loads(inbox.expect(f"{MET}/birth", timeout=15))
    assert birth["capabilities"]["commands"] == ["curtail", "relay"]
    fw.send_signal(signal.SIGINT)  # Ctrl-C: it says BYE and closes its pty
    assert fw.wait(10) == 0


def test_emulator_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match="unknown board kind"):
        FirmwareEmulator("drone", "d1")
    with pytest.raises(BridgeError, match="bad device id"):
        FirmwareEmulator("meter", "not ok")
    with pytest.raises(BridgeError, match="no reference firmware"):
        FirmwareEmulator("meter", "m1", firmware=tmp_path)


def test_a_board_outlives_its_cable(board: Callable[..., FirmwareEmulator]) -> None:
    meter = board("meter", "m1")
    first = meter.plug()
    assert os.path.exists(first) and meter.running
    meter.board.energy_wh = 12.5
    meter.unplug()
    assert not meter.running and meter.path is None
    second = meter.plug()
    assert os.path.exists(second) and meter.board.energy_wh == 12.5  # the same board
