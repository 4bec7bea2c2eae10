"""What every emulated device shares: sessions and seq, routing, sim time, commands, errors."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from citytwin.errors import BridgeError
from citytwin.hil.emulated.commands import Command, CommandMemory, CommandRejected
from citytwin.hil.emulated.device import FIRMWARE, Device, Outbound
from citytwin.hil.emulated.payload import PayloadError, number
from citytwin.hil.protocol import encode
from tests.hil.emulated.conftest import acks, clock, cmd, contract


class Counter(Device):
    """A device that counts: ``add {"n"}`` runs at once, ``slow {}`` finishes on the next
    clock; every clock answers a state."""

    kind = "meter"
    commands = ("add", "slow")

    def __init__(self, device_id: str = "m1", **kwargs: Any) -> None:
        super().__init__(device_id, **kwargs)
        self.total = 0
        self.configured: list[dict[str, Any]] = []
        self.slow: list[str] = []

    def capabilities(self) -> dict[str, Any]:
        return {"test": True}

    def _configure(self, data: dict[str, Any]) -> None:
        if data.get("bad"):
            raise PayloadError("bad: refused")
        self.configured.append(data)

    def _on_clock(self, tick: int, t: float, data: dict[str, Any]) -> None:
        self._state({"tick": tick, "energy_wh": float(self.total), "power_w": 0.0,
                     "relay": "closed"})
        for cmd_id in self.slow:
            self._finish(cmd_id)
        self.slow.clear()

    def _execute(self, command: Command) -> bool:
        if command.name == "slow":
            self.slow.append(command.id)
            return False
        n = number(command.args, "n", lo=0.0)
        if n > 100:
            raise CommandRejected("too_much")
        self.total += int(n)
        return True


@pytest.fixture
def device() -> Counter:
    """A connected counting device."""
    d = Counter()
    d.connected()
    return d


def test_connect_announces_online_and_birth_retained():
    d = Counter(lockstep=True)
    out = d.connected()
    assert [(m.channel, m.qos, m.retain) for m in out] == [("avail", 1, True), ("birth", 1, True)]
    assert out[0].payload == {"v": 1, "status": "online"}
    assert out[1].payload == {"v": 1, "kind": "meter", "fw": FIRMWARE, "lockstep": True,
                              "capabilities": {"test": True, "commands": ["add", "slow"]}}
    assert FIRMWARE.startswith("citytwin-emu ")
    contract(d, out)


def test_will_and_goodbye_say_offline_retained():
    d = Counter()
    assert d.will() == Outbound("avail", {"v": 1, "status": "offline"}, qos=1, retain=True)
    assert d.goodbye() == d.will()


def test_subscriptions_are_own_channels_and_the_simulators_clock_and_avail():
    assert Counter(site="s1").subscriptions() == [
        ("citytwin/v1/s1/meter/m1/config", 1), ("citytwin/v1/s1/meter/m1/input", 1),
        ("citytwin/v1/s1/meter/m1/cmd", 1), ("citytwin/v1/s1/meter/m1/error", 1),
        ("citytwin/v1/s1/sim/+/clock", 1), ("citytwin/v1/s1/sim/+/avail", 1)]


def test_seq_increases_over_state_and_ack_and_restarts_with_each_birth(device):
    seqs = [m.payload["seq"] for m in device.receive("clock", clock(0))]
    seqs += [m.payload["seq"] for m in device.receive("cmd", cmd("c1", "add", n=1))]
    seqs += [m.payload["seq"] for m in device.receive("clock", clock(1))]
    assert seqs == [0, 1, 2, 3]
    device.connected()
    assert [m.payload["seq"] for m in device.receive("clock", clock(2))] == [0]


def test_handle_routes_by_topic_and_ignores_others(device):
    body = encode({"tick": 4, "t": 4.0, "dt": 1.0, "mode": "fast"})
    assert device.handle("citytwin/v1/lab/sim/sim/clock", body)[0].payload["tick"] == 4
    assert device.handle("citytwin/v1/other/sim/sim/clock", body) == []
    assert device.handle("citytwin/v1/lab/meter/m10/cmd", encode(cmd("c1", "add", n=1))) == []
    assert device.handle("citytwin/v1/lab/meter/m1/state", body) == []
    assert device.counters["foreign_topic"] == 3
    assert device.total == 0


@pytest.mark.parametrize("payload", [b"{", b"[1]", b'{"v": 2, "tick": 1, "t": 1}',
                                     json.dumps({"v": 1, "t": 1}).encode(),
                                     json.dumps({"v": 1, "tick": -1, "t": 1}).encode(),
                                     b"x" * 20000])
def test_unusable_messages_are_counted_not_answered(device, payload, caplog):
    with caplog.at_level(logging.WARNING):
        assert device.handle("citytwin/v1/lab/sim/sim/clock", payload) == []
    assert device.counters["malformed"] == 1
    assert "unusable clock message" in caplog.text


def test_commands_run_once_then_accepted_and_done(device):
    out = device.receive("cmd", cmd("c1", "add", n=3))
    assert acks(out) == [("c1", "accepted", ""), ("c1", "done", "")]
    assert device.total == 3
    contract(device, out)


def test_a_repeated_command_id_is_answered_again_but_not_executed(device):
    device.receive("cmd", cmd("c1", "add", n=3))
    again = device.receive("cmd", cmd("c1", "add", n=3))
    assert acks(again) == [("c1", "done", "")]
    assert device.total == 3
    assert device.counters["duplicate_commands"] == 1
    device.receive("cmd", cmd("c2", "add", n=500))
    assert acks(device.receive("cmd", cmd("c2", "add", n=5))) == [("c2", "rejected",
                                                                   "too_much")]
    assert device.total == 3


def test_a_repeated_command_still_running_is_answered_accepted(device):
    assert acks(device.receive("cmd", cmd("s1", "slow"))) == [("s1", "accepted", "")]
    assert acks(device.receive("cmd", cmd("s1", "slow"))) == [("s1", "accepted", "")]
    assert acks(device.receive("clock", clock(1))) == [("s1", "done", "")]
    assert acks(device.receive("cmd", cmd("s1", "slow"))) == [("s1", "done", "")]
    assert device.slow == []


def test_the_memory_of_command_ids_is_bounded():
    d = Counter(memory=2)
    for i in range(3):
        d.receive("cmd", cmd(f"c{i}", "add", n=1))
    assert d.total == 3
    d.receive("cmd", cmd("c0", "add", n=1))  # forgotten: a new command to this device
    d.receive("cmd", cmd("c2", "add", n=1))  # remembered
    assert d.total == 4


def test_expired_commands_are_rejected(device):
    device.receive("clock", clock(100))
    out = device.receive("cmd", cmd("c1", "add", t=60.0, valid_for=30.0, n=1))
    assert acks(out) == [("c1", "rejected", "expired")]
    assert device.total == 0
    ok = device.receive("cmd", cmd("c2", "add", t=60.0, valid_for=40.0, n=1))
    assert acks(ok)[-1] == ("c2", "done", "")
    no_expiry = {"v": 1, "id": "c3", "name": "add", "args": {"n": 1}}
    assert acks(device.receive("cmd", no_expiry))[-1] == ("c3", "done", "")


def test_a_command_can_only_move_sim_time_forward(device):
    device.receive("clock", clock(10))
    device.receive("cmd", cmd("c1", "add", t=50.0, n=1))
    assert device.sim_time == 50.0
    device.receive("cmd", cmd("c2", "add", t=20.0, n=1))
    assert device.sim_time == 50.0
    device.receive("clock", clock(0))  # a new simulator session starts again at 0
    assert device.sim_time == 0.0


@pytest.mark.parametrize("command, reason", [
    (cmd("c1", "explode"), "unknown_command"),
    (cmd("c1", ""), "unknown_command"),
    (cmd("c1", "add"), "bad_args: n: missing"),
    (cmd("c1", "add", n="3"), "bad_args: n: expected a number, got str"),
    (cmd("c1", "add", n=-1), "bad_args: n: must be >= 0, got -1"),
    ({**cmd("c1", "add"), "args": [1]}, "bad_args: args: expected an object"),
    ({**cmd("c1", "add", n=1), "valid_until": "soon"}, "bad_args: valid_until: expected a "
                                                        "number, got str"),
    ({"v": 1, "id": "c1"}, "unknown_command"),
])
def test_bad_commands_are_rejected_with_a_reason(device, command, reason):
    out = device.receive("cmd", command)
    assert acks(out) == [("c1", "rejected", reason)]
    assert device.counters["commands_rejected"] == 1
    contract(device, out)


def test_a_command_without_an_id_cannot_be_answered(device):
    assert device.receive("cmd", {"v": 1, "name": "add", "args": {"n": 1}}) == []
    assert device.receive("cmd", {"v": 1, "id": "", "name": "add", "args": {"n": 1}}) == []
    assert device.counters["malformed"] == 2
    assert device.total == 0


def test_simulator_errors_are_logged_and_counted(device, caplog):
    error = {"v": 1, "code": "out_of_order", "detail": "seq 3 after 5",
             "ref": {"channel": "state", "seq": 3}}
    with caplog.at_level(logging.WARNING):
        assert device.receive("error", error) == []
        device.receive("error", {"v": 1, "code": "stale", "detail": "", "ref": None})
    assert device.counters["errors_received"] == 2
    assert device.counters["error.out_of_order"] == 1
    assert "rejected our state (seq 3): out_of_order: seq 3 after 5" in caplog.text


def test_a_redelivered_config_is_not_applied_again(device, caplog):
    config = {"v": 1, "x": 1}
    device.receive("config", config)
    device.receive("config", dict(config))  # the retained copy after a reconnect
    assert device.configured == [config]
    with caplog.at_level(logging.ERROR):
        device.receive("config", {"v": 1, "bad": True})
    assert device.config == config
    assert device.counters["bad_config"] == 1
    assert "config refused" in caplog.text
    device.receive("config", {"v": 1, "x": 2})
    assert device.config == {"v": 1, "x": 2}


def test_simulator_availability_is_tracked_per_simulator(device):
    assert device.sim_online is None
    device.receive("avail", {"v": 1, "status": "online"}, sim="sim")
    assert device.sim_online is True
    device.receive("avail", {"v": 1, "status": "offline"}, sim="sim")
    assert device.sim_online is False
    device.receive("avail", {"v": 1, "status": "sleeping"}, sim="sim")
    assert device.counters["malformed"] == 1


def test_bad_names_are_refused():
    with pytest.raises(BridgeError, match="device id"):
        Counter("bad/id")
    with pytest.raises(BridgeError, match="site"):
        Counter(site="a b")


def test_command_memory_keeps_the_latest_status():
    memory = CommandMemory(2)
    memory.record("a", "accepted")
    memory.record("a", "done")
    memory.record("b", "rejected", "expired")
    assert memory.get("a") == ("done", "")
    assert len(memory) == 2
    memory.record("c", "accepted")
    assert "a" not in memory and memory.get("b") == ("rejected", "expired")
    with pytest.raises(ValueError):
        CommandMemory(0)
