"""Each device kind as its own ``citytwin device`` process on a real broker, with the simulator's
side played by hand: retained birth and availability, states echoing ticks, acks, expiry,
redelivered command ids, the last will on SIGKILL, a clean ``offline`` on SIGTERM."""

from __future__ import annotations

import signal
import socket
import time
from typing import Any

import pytest

from citytwin.cli import main
from citytwin.errors import BridgeError
from citytwin.hil.broker import BrokerURL
from citytwin.hil.emulated.device import FIRMWARE
from citytwin.hil.emulated.runner import DeviceOptions, DeviceRunner, build_device
from tests.hil.emulated.conftest import (
    DRONE_CONFIG,
    SIM_AVAIL,
    SIM_CLOCK,
    calls,
    clock,
    cmd,
    device_topic,
    eight_phase_config,
)

ONLINE = {"v": 1, "status": "online"}
OFFLINE = {"v": 1, "status": "offline"}


def is_ack(cmd_id: str, status: str | None = None) -> Any:
    return lambda p: p["cmd_id"] == cmd_id and status in (None, p["status"])


def test_signal_controller_process(sim, spawn):
    s = sim()
    topic = lambda ch: device_topic("signal", "ctl1", ch)  # noqa: E731
    s.publish(SIM_AVAIL, ONLINE, retain=True)
    s.publish(topic("config"), eight_phase_config(), retain=True)
    proc = spawn("signal", "ctl1")
    s.wait(topic("birth"))
    late = sim("late-observer")  # subscribes after the birth: sees the retained copies
    birth = late.wait(topic("birth"), retained=True)
    assert birth == {"v": 1, "kind": "signal", "fw": FIRMWARE, "lockstep": False,
                     "capabilities": birth["capabilities"]}
    assert birth["capabilities"]["commands"] == ["call"]
    assert late.wait(topic("avail"), retained=True) == ONLINE

    for tick in range(12):
        s.publish(topic("input"), {"v": 1, "seq": tick + 1, "tick": tick, "t": float(tick),
                                   "calls": calls(2, 6, 4) if tick == 0 else calls(),
                                   "counts": calls()}, qos=0)
        state = s.wait(topic("state"), lambda p, k=tick: p["tick"] == k)
        assert state["seq"] == tick
    heads = [p["heads"] for p in s.seen(topic("state"))]
    assert heads[:11] == ["rGrrrGrr"] * 5 + ["ryrrryrr"] * 3 + ["rrrrrrrr"] * 2 + ["rrrGrrrr"]

    s.publish(topic("cmd"), cmd("c1", "call", t=2.0, valid_for=5.0, phase=2))  # sim time 11
    assert s.wait(topic("ack"), is_ack("c1"))["reason"] == "expired"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    s.wait(topic("avail"), lambda p: p == OFFLINE)
    assert sim("after-exit").wait(topic("avail"), retained=True) == OFFLINE


def test_drone_process_acks_and_redelivered_commands(sim, spawn):
    s = sim()
    topic = lambda ch: device_topic("drone", "dr1", ch)  # noqa: E731
    s.publish(topic("config"), DRONE_CONFIG, retain=True)
    proc = spawn("drone", "dr1", "--link-timeout", "30", "--lockstep")
    assert s.wait(topic("birth"))["lockstep"] is True
    s.publish(SIM_CLOCK, clock(0), qos=0)
    assert s.wait(topic("state"), lambda p: p["tick"] == 0)["mode"] == "landed"
    s.publish(topic("cmd"), cmd("c1", "goto", x=120.0, y=0.0))
    s.wait(topic("ack"), is_ack("c1", "accepted"))
    for tick in range(1, 31):
        s.publish(SIM_CLOCK, clock(tick), qos=0)
        s.wait(topic("state"), lambda p, k=tick: p["tick"] == k)
    s.wait(topic("ack"), is_ack("c1", "done"))
    state = s.seen(topic("state"))[-1]
    assert (state["x"], state["alt"], state["mode"]) == (120.0, 60.0, "idle")

    s.publish(topic("cmd"), cmd("c1", "goto", x=120.0, y=0.0))  # QoS 1 redelivery
    s.publish(SIM_CLOCK, clock(31), qos=0)
    s.wait(topic("state"), lambda p: p["tick"] == 31)
    assert [a["status"] for a in s.seen(topic("ack"))] == ["accepted", "done", "done"]
    assert s.seen(topic("state"))[-1]["mode"] == "idle"  # not flown again

    s.publish(topic("cmd"), cmd("c2", "goto", x=5.0, y=0.0, t=31.0, valid_for=-1.0))
    assert s.wait(topic("ack"), is_ack("c2"))["reason"] == "expired"

    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    s.wait(topic("avail"), lambda p: p == OFFLINE)  # the broker published the last will
    assert sim("after-kill").wait(topic("avail"), retained=True) == OFFLINE


def test_drone_process_link_loss_failsafe(sim, spawn):
    s = sim()
    topic = lambda ch: device_topic("drone", "dr2", ch)  # noqa: E731
    s.publish(topic("config"), DRONE_CONFIG, retain=True)
    proc = spawn("drone", "dr2", "--link-timeout", "0.5")
    s.publish(SIM_CLOCK, clock(0), qos=0)
    s.publish(topic("cmd"), cmd("c1", "goto", x=500.0, y=0.0))
    s.wait(topic("ack"), is_ack("c1", "accepted"))
    started = time.monotonic()
    assert s.wait(topic("ack"), is_ack("c1", "rejected"))["reason"] == "link_lost"
    assert 0.4 < time.monotonic() - started < 3.0

    proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop too
    assert proc.wait(5) == 0
    s.wait(topic("avail"), lambda p: p == OFFLINE)


def test_meter_process_commands_reconnect_and_exit_after(broker, sim, spawn):
    s = sim()
    topic = lambda ch: device_topic("meter", "m1", ch)  # noqa: E731
    s.publish(SIM_AVAIL, ONLINE, retain=True)
    proc = spawn("meter", "m1", "--period", "5", "--seed", "3", "--exit-after", "0.5")
    s.wait(topic("birth"))
    for tick in range(11):
        s.publish(SIM_CLOCK, clock(tick), qos=0)
    s.wait(topic("state"), lambda p: p["tick"] == 10)
    assert [p["tick"] for p in s.seen(topic("state"))] == [0, 5, 10]

    s.publish(topic("cmd"), cmd("c1", "curtail", t=10.0, limit_w=1000.0))
    s.wait(topic("ack"), is_ack("c1", "done"))
    s.publish(topic("cmd"), cmd("c2", "relay", t=10.0, state="open"))
    s.wait(topic("ack"), is_ack("c2", "done"))
    s.publish(topic("cmd"), cmd("c3", "relay", t=10.0, state="closed"))
    s.wait(topic("ack"), is_ack("c3", "done"))
    s.publish(topic("cmd"), cmd("c2", "relay", t=10.0, state="open"))  # redelivered
    for tick in range(11, 16):
        s.publish(SIM_CLOCK, clock(tick), qos=0)
    state = s.wait(topic("state"), lambda p: p["tick"] == 15)
    assert state["relay"] == "closed" and 0 < state["power_w"] <= 1000.0
    assert [a["status"] for a in s.seen(topic("ack")) if a["cmd_id"] == "c2"] == [
        "accepted", "done", "done"]

    broker.restart()  # every reconnect: online and birth again, seq from 0
    s.wait(topic("birth"), lambda p: len(s.seen(topic("birth"))) >= 2, timeout=8.0)
    s.wait(topic("avail"), lambda p: p == ONLINE and len(s.seen(topic("avail"))) >= 2)
    s.publish(SIM_CLOCK, clock(20), qos=0)
    assert s.wait(topic("state"), lambda p: p["tick"] == 20)["seq"] == 0

    s.publish(SIM_AVAIL, OFFLINE, retain=True)  # the simulator is gone for good
    assert proc.wait(5) == 0
    s.wait(topic("avail"), lambda p: p == OFFLINE)


def test_bad_arguments_exit_2(capsys):
    assert main(["device", "toaster", "--id", "t1"]) == 2
    assert main(["device", "meter", "--id", "a/b"]) == 2
    assert main(["device", "meter", "--id", "m1", "--broker", "http://x"]) == 2
    assert main(["device", "meter", "--id", "m1", "--period", "0"]) == 2
    assert main(["device", "meter", "--id", "m1", "--seed", "-1"]) == 2
    assert "mqtt:// or mqtts://" in capsys.readouterr().err


def test_an_unreachable_broker_raises_a_clear_bridge_error():
    runner = DeviceRunner(build_device(DeviceOptions(kind="meter", device_id="m1")),
                          BrokerURL("127.0.0.1", _closed_port()), connect_timeout=0.5)
    with pytest.raises(BridgeError, match="cannot reach the MQTT broker"):
        runner.run()


def test_build_device_makes_each_kind():
    for kind in ("signal", "drone", "meter"):
        device = build_device(DeviceOptions(kind=kind, device_id="x1", site="s1"))
        assert (device.kind, device.site) == (kind, "s1")
    with pytest.raises(BridgeError, match="unknown device kind"):
        build_device(DeviceOptions(kind="toaster", device_id="x1"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
