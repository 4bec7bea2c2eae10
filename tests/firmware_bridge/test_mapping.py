"""The MQTT side of a serial device: the topics and payloads a native device would use, checked
with the simulator's own validator (citytwin.hil.protocol.decode)."""

from __future__ import annotations

import json

import pytest

from citytwin.firmware_bridge import mapping
from citytwin.firmware_bridge.frames import Calls, Channel, Clock, Hello
from citytwin.firmware_bridge.line import Inbound
from citytwin.hil.protocol import Avail, Birth, MeterState, SignalState, decode, parse_topic

SIGNAL = Hello("signal", "ctl-r1c1", "fw 1", lockstep=True, capabilities={"letters": "ryGg"})
METER = Hello("meter", "meter-hall", "fw 2")


def test_avail_birth_and_will_are_what_the_simulator_accepts() -> None:
    for pub in (mapping.avail("lab", SIGNAL, True), mapping.birth("lab", SIGNAL),
                mapping.will("lab", SIGNAL)):
        topic, payload, qos, retain = pub
        assert (qos, retain) == (1, True)
        decode(parse_topic(topic), payload)  # raises if the simulator would refuse it
    assert mapping.avail("lab", SIGNAL, True)[0] == "citytwin/v1/lab/signal/ctl-r1c1/avail"
    msg = decode(parse_topic(mapping.birth("lab", SIGNAL)[0]), mapping.birth("lab", SIGNAL)[1])
    assert isinstance(msg, Birth) and msg.lockstep and msg.capabilities == {"letters": "ryGg"}
    will = decode(parse_topic(mapping.will("lab", METER)[0]), mapping.will("lab", METER)[1])
    assert isinstance(will, Avail) and will.status == "offline"


def test_subscriptions_are_a_native_devices() -> None:
    assert mapping.subscriptions("lab", METER) == [
        ("citytwin/v1/lab/meter/meter-hall/config", 1),
        ("citytwin/v1/lab/meter/meter-hall/input", 1),
        ("citytwin/v1/lab/meter/meter-hall/cmd", 1),
        ("citytwin/v1/lab/meter/meter-hall/error", 1),
        ("citytwin/v1/lab/sim/+/clock", 1), ("citytwin/v1/lab/sim/+/avail", 1)]
    assert mapping.client_id("lab", METER) == "citytwin-serial-lab-meter-meter-hall"


def test_uplink_takes_the_gateways_seq_and_version() -> None:
    state = Inbound("state", {"v": 9, "seq": 999, "tick": 4, "heads": "GGrr"})
    topic, payload, qos, retain = mapping.uplink("lab", SIGNAL, state, 17)
    msg = decode(parse_topic(topic), payload)
    assert isinstance(msg, SignalState) and (msg.seq, msg.tick, msg.heads) == (17, 4, "GGrr")
    assert (qos, retain) == (1, False)  # a lockstep device: the simulator waits for it
    meter = Inbound("state", {"tick": 2, "energy_wh": 1.5, "power_w": 3000.0,
                              "relay": "closed"})
    topic, payload, qos, _ = mapping.uplink("lab", METER, meter, 0)
    assert isinstance(decode(parse_topic(topic), payload), MeterState) and qos == 0
    ack = mapping.uplink("lab", METER, Inbound("ack", {"cmd_id": "c1", "status": "done"}), 1)
    assert ack[0].endswith("/ack") and ack[2] == 1


def test_downlink_turns_simulator_messages_into_frames() -> None:
    base = "citytwin/v1/lab/signal/ctl-r1c1"
    clock = mapping.downlink("citytwin/v1/lab/sim/sim/clock",
                             b'{"v":1,"tick":5,"t":5.0,"dt":1.0,"mode":"lockstep"}')
    assert clock == Clock(5, 5.0, 1.0, "lockstep")
    assert mapping.downlink("citytwin/v1/lab/sim/sim/avail",
                            b'{"v":1,"status":"offline"}') == mapping.SimAvail(False)
    calls = mapping.downlink(f"{base}/input", json.dumps(
        {"v": 1, "seq": 3, "tick": 7, "t": 7.0, "calls": [0, 1, 1], "counts": [4, 5, 6]}
    ).encode())
    assert calls == Calls(7, 7.0, (False, True, True))
    drone_input = b'{"v":1,"seq":3,"tick":7,"t":7.0,"vehicles_in_view":4}'
    assert mapping.downlink("citytwin/v1/lab/drone/d1/input", drone_input) == \
        mapping.ToDevice(Channel.INPUT, drone_input)
    config = b'{"v":1,"links":16}'
    assert mapping.downlink(f"{base}/config", config) == mapping.ToDevice(Channel.CONFIG, config)
    assert mapping.downlink(f"{base}/config", b"") is None  # a retained message cleared


@pytest.mark.parametrize(("topic", "payload"), [
    ("citytwin/v1/lab/sim/sim/clock", b'{"v":1,"t":5.0}'),
    ("citytwin/v1/lab/sim/sim/clock", b'{"v":1,"tick":-1,"t":5.0}'),
    ("citytwin/v1/lab/sim/sim/clock", b'{"v":1,"tick":1,"t":NaN}'),
    ("citytwin/v1/lab/sim/sim/clock", b'{"v":1,"tick":true,"t":1}'),
    ("citytwin/v1/lab/sim/sim/clock", b"not json"),
    ("citytwin/v1/lab/sim/sim/event", b'{"v":1}'),
    ("citytwin/v1/lab/signal/c/input", b'{"v":1,"tick":1,"t":1.0,"calls":"01"}'),
    ("citytwin/v1/lab/signal/c/state", b"{}"),
    ("citytwin/v1/lab/signal", b"{}"),
])
def test_downlink_refuses_what_it_cannot_use(topic: str, payload: bytes) -> None:
    with pytest.raises(ValueError):
        mapping.downlink(topic, payload)
