"""The gateway with real parts: the reference firmware on real pseudo-terminals (and on a local
socket), pyserial URLs, a real broker (the HIL suite's Mosquitto, or amqtt), and a
hand-played simulator on MQTT. Every message is checked with the simulator's own validator."""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import serial

from citytwin.firmware_bridge import gateway as gateway_module
from citytwin.firmware_bridge.emulator import FirmwareEmulator
from citytwin.firmware_bridge.frames import Frame, FrameType, Nak, encode, parse, unpack_nak
from citytwin.firmware_bridge.framing import FrameDecoder
from citytwin.firmware_bridge.gateway import Backoff, SerialGateway
from citytwin.firmware_bridge.port import open_port
from citytwin.hil.broker import EmbeddedBroker
from citytwin.hil.protocol import Ack, Avail, Birth, MeterState, SignalState, decode, parse_topic
from citytwin.hil.transport import MqttLink
from tests.firmware_bridge.wire import master_read, misbaud
from tests.hil.conftest import Inbox, wait_for

SIG = "citytwin/v1/lab/signal/ctl-r1c1"
MET = "citytwin/v1/lab/meter/meter-hall"
SIM = "citytwin/v1/lab/sim/sim"
Connect = Callable[..., tuple[MqttLink, Inbox]]


def checked(topic: str, payload: bytes) -> Any:
    """The message as the simulator validates it (fails the test if it would refuse it)."""
    return decode(parse_topic(topic), payload)


def retained(connect: Connect, topic: str) -> bytes:
    """What a subscriber arriving now gets on ``topic`` (the broker's retained message)."""
    _, inbox = connect(f"late-{time.monotonic_ns()}", [(topic, 1)])
    return inbox.expect(topic, timeout=2.0)


def hello(device_id: str = "dev-a", kind: str = "meter", seq: int = 0, hb_ms: int = 1000
          ) -> bytes:
    info = {"kind": kind, "id": device_id, "fw": "hand 1", "hb_ms": hb_ms}
    return encode(Frame(FrameType.HELLO, seq, json.dumps(info).encode(), True))


# -- a board on a pty becomes an MQTT device ---------------------------------------------------
def test_signal_board_on_a_pty_is_a_native_mqtt_device(
        board: Callable[..., FirmwareEmulator], gateway: Callable[..., SerialGateway],
        connect: Connect, eight_phase: dict[str, Any]) -> None:
    sim, inbox = connect("sim", [(f"{SIG}/#", 1)])
    ctl = board("signal", "ctl-r1c1", lockstep=True)
    gw = gateway(ctl.plug())
    avail = checked(f"{SIG}/avail", inbox.expect(f"{SIG}/avail", timeout=5))
    birth = checked(f"{SIG}/birth", inbox.expect(f"{SIG}/birth"))
    assert isinstance(avail, Avail) and avail.status == "online"
    assert isinstance(birth, Birth) and birth.lockstep and birth.fw.startswith("citytwin-fw")
    sim.publish(f"{SIG}/config", json.dumps(eight_phase).encode(), 1, True)
    states = []
    for tick in range(12):
        sim.publish(f"{SIG}/input", json.dumps({"v": 1, "seq": tick + 1, "tick": tick,
                                                "t": float(tick), "calls": [1] * 8,
                                                "counts": [0] * 8}).encode(), 0)
        msg = checked(f"{SIG}/state", inbox.expect(f"{SIG}/state"))
        assert isinstance(msg, SignalState)
        states.append(msg)
    assert [s.tick for s in states] == list(range(12))
    assert [s.seq for s in states] == list(range(12))  # the gateway's seq: 0, 1, 2, ...
    assert states[0].heads == "r" * 8 and any("G" in s.heads for s in states)
    assert gw.online and gw.device is not None and gw.device.device_id == "ctl-r1c1"
    assert ctl.board.counters == {"configs": 1}


def test_meter_board_reports_on_the_clock_and_executes_commands(
        board: Callable[..., FirmwareEmulator], gateway: Callable[..., SerialGateway],
        connect: Connect) -> None:
    sim, inbox = connect("sim", [(f"{MET}/#", 1)])
    meter = board("meter", "meter-hall", lockstep=True)
    gateway(meter.plug())
    inbox.expect(f"{MET}/birth", timeout=5)
    sim.publish(f"{SIM}/clock", b'{"v":1,"tick":1,"t":1.0,"dt":1.0,"mode":"lockstep"}', 0)
    first = checked(f"{MET}/state", inbox.expect(f"{MET}/state"))
    assert isinstance(first, MeterState) and first.power_w > 0 and first.relay == "closed"
    sim.publish(f"{MET}/cmd", b'{"v":1,"seq":1,"id":"c1","name":"relay","args":'
                b'{"state":"open"},"t":1.0,"valid_until":30.0}', 1)
    acks = [checked(f"{MET}/ack", inbox.expect(f"{MET}/ack")) for _ in range(2)]
    assert all(isinstance(a, Ack) for a in acks)
    assert [a.status for a in acks] == ["accepted", "done"]
    sim.publish(f"{SIM}/clock", b'{"v":1,"tick":2,"t":2.0,"dt":1.0,"mode":"lockstep"}', 0)
    second = checked(f"{MET}/state", inbox.expect(f"{MET}/state"))
    assert second.relay == "open" and second.power_w == 0.0
    assert second.seq > acks[1].seq > acks[0].seq > first.seq  # one counter, both channels


# -- unplug, replug, silence --------------------------------------------------------------------
def test_unplug_is_offline_at_once_and_replug_is_a_fresh_session(
        board: Callable[..., FirmwareEmulator], gateway: Callable[..., SerialGateway],
        connect: Connect, tmp_path: Path) -> None:
    _, inbox = connect("watch", [(f"{MET}/avail", 1), (f"{MET}/birth", 1)])
    meter = board("meter", "meter-hall", alias=tmp_path / "ttyMETER")
    gw = gateway(meter.plug())
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=5))["status"] == "online"
    first_link = meter.link
    t0 = time.monotonic()
    meter.unplug()  # the cable is pulled: the pty is gone, reads fail
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=2))["status"] == "offline"
    assert time.monotonic() - t0 < 0.5
    assert json.loads(retained(connect, f"{MET}/avail"))["status"] == "offline"
    wait_for(lambda: gw.counters["open_failures"] >= 3, 3, "retries to open the port")
    time.sleep(1.0)  # unplugged for a second: the waits double up to the cap (0.4 s)
    failures = gw.counters["open_failures"]
    assert 4 <= failures <= 8, failures  # 0.05+0.1+0.2+0.4+0.4+...; not a busy loop
    meter.plug()  # the same alias, a new pty
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=3))["status"] == "online"
    inbox.expect(f"{MET}/birth")
    assert meter.link is not first_link  # a new connection: the board said HELLO again
    wait_for(lambda: meter.link.online, 2, "the board's HELLO acknowledged")
    assert gw.counters["port_lost"] == 1 and gw.counters["port_opened"] == 2
    assert gw.session.counters["sessions"] == 2


def test_silent_board_is_offline_after_its_heartbeat_timeout_and_rejoins(
        board: Callable[..., FirmwareEmulator], gateway: Callable[..., SerialGateway],
        connect: Connect) -> None:
    _, inbox = connect("watch", [(f"{MET}/avail", 1)])
    meter = board("meter", "meter-hall", hb_ms=100)
    gw = gateway(meter.plug())
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=5))["status"] == "online"
    t0 = time.monotonic()
    meter.pause()  # hung firmware: the port stays open, nothing answers
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=2))["status"] == "offline"
    silent = time.monotonic() - t0
    assert 0.25 < silent < 1.0, silent  # three heartbeat intervals of 100 ms
    assert gw.session.counters["heartbeat_timeouts"] == 1 and gw.port_open
    meter.resume()
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=3))["status"] == "online"
    assert gw.session.counters["sessions"] == 2


def test_a_broker_that_is_down_is_retried_while_the_line_stays_up(
        make_broker: Callable[..., EmbeddedBroker], board: Callable[..., FirmwareEmulator],
        gateway: Callable[..., SerialGateway], connect: Connect) -> None:
    late = make_broker()
    url = late.url
    late.stop()
    meter = board("meter", "meter-hall", hb_ms=200)
    gw = gateway(meter.plug(), url=url, connect_timeout=0.3)
    wait_for(lambda: gw.counters["mqtt_failures"] >= 2, 5, "MQTT retries")
    assert meter.link.online and meter.link.counters.get("bridge_timeouts", 0) == 0
    assert gw.session.counters["heartbeat_timeouts"] == 0  # the line kept its heartbeats
    late.start()  # the same port
    wait_for(lambda: gw.online, 5, "the device online once the broker is up")
    _, inbox = connect("watch", [(f"{MET}/avail", 1)], url=url)
    assert json.loads(inbox.expect(f"{MET}/avail"))["status"] == "online"


# -- other pyserial URLs ------------------------------------------------------------------------
def test_socket_url_to_a_board_behind_a_local_socket(
        firmware: dict[str, Any], board: Callable[..., FirmwareEmulator],
        gateway: Callable[..., SerialGateway], connect: Connect) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    _, inbox = connect("watch", [(f"{MET}/avail", 1)])
    try:
        gw = gateway(f"socket://127.0.0.1:{server.getsockname()[1]}")
        conn, _ = server.accept()
        meter = board("meter", "meter-hall")
        meter.attach(firmware["ctfw_port"].FdPort(conn.detach()))
        assert json.loads(inbox.expect(f"{MET}/avail", timeout=5))["status"] == "online"
        meter.unplug()  # the socket closes: the device is gone
        assert json.loads(inbox.expect(f"{MET}/avail", timeout=2))["status"] == "offline"
        assert gw.counters["port_lost"] == 1
    finally:
        server.close()


def test_spy_url_bridges_and_logs(board: Callable[..., FirmwareEmulator],
                                  gateway: Callable[..., SerialGateway], connect: Connect,
                                  tmp_path: Path) -> None:
    _, inbox = connect("watch", [(f"{MET}/birth", 1)])
    meter = board("meter", "meter-hall")
    log = tmp_path / "spy.txt"
    gateway(f"spy://{meter.plug()}?file={log}")
    inbox.expect(f"{MET}/birth", timeout=5)
    lines = log.read_text().splitlines()
    # pyserial's hex dump: "000000.007 RX   0010  6D 65 74 ...  meter", one line per 16 bytes
    received = b"".join(bytes.fromhex(line[22:71]) for line in lines if line[11:13] == "RX")
    assert b'"id": "meter-hall"' in received  # the board's HELLO, as read by the bridge
    assert any(line[11:13] == "TX" for line in lines)  # HELLO_REQ, ACK


def test_loop_url_hears_only_itself_and_publishes_nothing(
        gateway: Callable[..., SerialGateway], connect: Connect) -> None:
    _, inbox = connect("watch", [("citytwin/#", 1)])
    gw = gateway("loop://")
    wait_for(lambda: gw.session.counters["refused.no_session"] >= 2, 3, "its own frames")
    assert gw.device is None and inbox.topics(quiet=0.3) == []


# -- bad input on a real pty --------------------------------------------------------------------
def test_noise_and_wrong_baud_rates_are_rejected_and_counted(
        serial_pair: tuple[int, str], gateway: Callable[..., SerialGateway],
        connect: Connect) -> None:
    master, path = serial_pair
    _, inbox = connect("watch", [("citytwin/#", 1)])
    gw = gateway(path)
    wait_for(lambda: gw.port_open, 2, "port open")
    rng = random.Random(6)
    frames = b"".join(hello(seq=k) + encode(Frame(FrameType.HEARTBEAT, 100 + k))
                      for k in range(3))
    assert misbaud(frames, 115200, 115200) == frames  # the model of the UART is right
    sent = 0
    for chunk in [bytes(rng.getrandbits(8) for _ in range(4000)),
                  b"\x55" * 5000,  # a floating line: oversized, dropped as it comes
                  misbaud(frames, 9600, 115200), misbaud(frames, 57600, 115200),
                  misbaud(frames, 230400, 115200), misbaud(frames, 460800, 115200)]:
        os.write(master, chunk)
        sent += len(chunk)
    framing = gw.session.decoder.counters
    wait_for(lambda: framing["bytes"] >= sent, 3, "all noise read")
    assert framing["rejected"] >= 5 and framing["frames"] == 0
    assert framing["oversized"] >= 1 and gw.session.decoder.pending <= 1037
    assert gw.device is None and inbox.topics(quiet=0.3) == []
    os.write(master, hello(device_id="dev-a"))  # the right baud rate at last
    wait_for(lambda: gw.online, 3, "a session after the noise")
    assert framing["frames"] == 1


def test_another_device_on_the_line_takes_over(
        serial_pair: tuple[int, str], gateway: Callable[..., SerialGateway],
        connect: Connect) -> None:
    master, path = serial_pair
    a, b = "citytwin/v1/lab/meter/dev-a", "citytwin/v1/lab/meter/dev-b"
    _, inbox = connect("watch", [(f"{a}/avail", 1), (f"{b}/avail", 1)])
    gateway(path)
    os.write(master, hello("dev-a"))
    assert json.loads(inbox.expect(f"{a}/avail", timeout=3))["status"] == "online"
    os.write(master, hello("dev-b", seq=1))
    # Two MQTT clients publish these, so they may arrive in either order.
    status: dict[str, str] = {}
    while len(status) < 2:
        topic, payload, _ = inbox.get(timeout=3)
        status[topic] = json.loads(payload)["status"]
    assert status == {f"{a}/avail": "offline", f"{b}/avail": "online"}


def test_hand_played_device_gets_nak_for_bad_frames(
        serial_pair: tuple[int, str], gateway: Callable[..., SerialGateway]) -> None:
    """A device's refused frame is answered on the line with a NAK and its reason."""
    master, path = serial_pair
    gw = gateway(path)
    wait_for(lambda: gw.port_open, 2, "port open")
    os.write(master, encode(Frame(FrameType.HEADS, 9, b"\x00\x00\x00\x01GG", True)))
    decoder, naks = FrameDecoder(), []
    end = time.monotonic() + 2
    while not naks and time.monotonic() < end:
        for body in decoder.feed(master_read(master, 1)):
            frame = parse(body)
            if frame.type == FrameType.NAK:
                naks.append(unpack_nak(frame.payload))
    assert naks == [(9, Nak.NO_SESSION)]
    assert gw.session.counters["refused.no_session"] == 1


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    b = Backoff(0.1, 0.5)
    assert [b.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    b.reset()
    assert b.next() == 0.1


@pytest.mark.parametrize("url", ["bogus://x", "socket://no-port"])
def test_a_bad_port_url_fails_at_start(url: str, broker: EmbeddedBroker) -> None:
    from citytwin.errors import BridgeError

    gw = SerialGateway(url, broker.url)
    with pytest.raises(BridgeError):
        gw.start()


class _FailingWrites:
    """A real port whose writes start failing on demand (a USB adapter gone bad: EIO on
    write while reads just hang)."""

    def __init__(self, port: Any) -> None:
        self._port = port
        self.fail = False

    def write(self, data: bytes) -> int:
        if self.fail:
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        return int(self._port.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


def test_write_errors_take_the_device_offline_at_once(
        board: Callable[..., FirmwareEmulator], gateway: Callable[..., SerialGateway],
        connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    ports: list[_FailingWrites] = []

    def open_failing(url: str, baudrate: int = 115200) -> _FailingWrites:
        ports.append(_FailingWrites(open_port(url, baudrate)))
        return ports[-1]

    monkeypatch.setattr(gateway_module, "open_port", open_failing)
    sim, inbox = connect("sim", [(f"{MET}/avail", 1)])
    meter = board("meter", "meter-hall")
    gw = gateway(meter.plug())
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=5))["status"] == "online"
    ports[0].fail = True
    sim.publish(f"{SIM}/clock", b'{"v":1,"tick":1,"t":1.0,"dt":1.0,"mode":"fast"}', 0)
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=2))["status"] == "offline"
    assert gw.counters["port_lost"] == 1
    assert json.loads(inbox.expect(f"{MET}/avail", timeout=3))["status"] == "online"  # reopened
