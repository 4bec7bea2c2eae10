"""The emulated signal controller as the simulator sees it: config, inputs, states, calls."""

from __future__ import annotations

from typing import Any

import pytest

from citytwin.hil.emulated.signal import SignalDevice
from tests.hil.emulated.conftest import acks, calls, cmd, contract, eight_phase_config


def signal_input(tick: int, present: list[Any], **extra: Any) -> dict[str, Any]:
    return {"v": 1, "seq": tick + 1, "tick": tick, "t": float(tick), "calls": present,
            "counts": [0] * len(present), **extra}


@pytest.fixture
def ctl() -> SignalDevice:
    """A connected, configured signal controller."""
    device = SignalDevice("ctl1")
    device.connected()
    device.receive("config", eight_phase_config())
    return device


def test_every_input_is_answered_with_its_tick_and_one_letter_per_link(ctl):
    states = []
    for tick in range(20):
        out = ctl.receive("input", signal_input(tick, calls(2, 6, 4) if tick == 0 else calls()))
        assert [m.channel for m in out] == ["state"]
        states += contract(ctl, out)
    assert [s["tick"] for s in states] == list(range(20))
    assert [s["seq"] for s in states] == list(range(20))
    assert [s["heads"] for s in states[:11]] == (
        ["rGrrrGrr"] * 5 + ["ryrrryrr"] * 3 + ["rrrrrrrr"] * 2 + ["rrrGrrrr"])


def test_counts_also_actuate(ctl):
    ctl.receive("input", signal_input(0, calls(2)))
    out = ctl.receive("input", {**signal_input(1, calls()), "counts": calls(4)})
    assert ctl.controller is not None and "4" in ctl.controller.calls
    assert out[0].payload["heads"] == "rGrrrrrr"


def test_input_before_config_is_not_answered():
    device = SignalDevice("ctl1")
    device.connected()
    assert device.receive("input", signal_input(0, calls())) == []
    assert device.counters["input_without_config"] == 1


def test_a_bad_calls_vector_is_counted_and_the_tick_still_answered(ctl):
    out = ctl.receive("input", signal_input(0, [1, 0]))
    assert out[0].payload["tick"] == 0
    out = ctl.receive("input", signal_input(1, [1, "x", 0, 0, 0, 0, 0, 0]))
    assert out[0].payload["tick"] == 1
    assert ctl.counters["bad_input"] == 2


def test_an_invalid_config_keeps_the_controller_in_force(ctl):
    before = ctl.controller
    ctl.receive("config", {**eight_phase_config(), "barriers": []})
    assert ctl.controller is before
    assert ctl.counters["bad_config"] == 1


def test_conflicts_prevented_are_counted(ctl):
    config = eight_phase_config()
    config["conflicts"][1].append(5)
    ctl.receive("config", config)
    out = ctl.receive("input", signal_input(0, calls(2, 6)))
    assert out[0].payload["heads"] == "r" * 8
    assert ctl.counters["conflicts_prevented"] == 1


def test_a_call_command_is_done_when_its_phase_turns_green(ctl):
    ctl.receive("input", signal_input(0, calls(2, 6)))
    out = ctl.receive("cmd", cmd("c1", "call", phase=4))
    assert acks(out) == [("c1", "accepted", "")]
    done_at = None
    for tick in range(1, 20):
        out = ctl.receive("input", signal_input(tick, calls()))
        if acks(out):
            assert acks(out) == [("c1", "done", "")]
            assert out[0].payload["heads"] == "rrrGrrrr"
            done_at = tick
    assert done_at == 10
    assert acks(ctl.receive("cmd", cmd("c2", "call", phase="2")))[-1] == ("c2", "accepted", "")


@pytest.mark.parametrize("args, reason", [({"phase": "9"}, "bad_args: phase: '9' is not a "
                                                            "phase of this junction"),
                                          ({}, "bad_args: phase: None is not a phase of this "
                                               "junction")])
def test_a_call_to_an_unknown_phase_is_rejected(ctl, args, reason):
    assert acks(ctl.receive("cmd", cmd("c1", "call", **args))) == [("c1", "rejected", reason)]


def test_commands_before_config_are_rejected():
    device = SignalDevice("ctl1")
    out = device.receive("cmd", cmd("c1", "call", phase=2))
    assert acks(out) == [("c1", "rejected", "not_configured")]


def test_a_new_config_replaces_the_controller_and_drops_pending_calls(ctl):
    ctl.receive("input", signal_input(0, calls(2, 6)))
    ctl.receive("cmd", cmd("c1", "call", phase=4))
    out = ctl.receive("config", eight_phase_config(min_green=7.0))
    assert acks(out) == [("c1", "rejected", "reconfigured")]
    assert ctl.controller is not None and ctl.controller.config.phases["1"].timing.min_green == 7


def test_the_simulators_own_config_is_understood():
    # the shape citytwin.hil.signal_twin publishes: recall "min" on the first group, rings
    # that may be empty, no per-phase timing
    config = {"v": 1, "junction": "C", "links": 4, "detectors": ["a", "b"],
              "conflicts": [[2, 3], [2, 3], [0, 1], [0, 1]],
              "timing": {"min_green": 5.0, "max_green": 30.0, "passage": 2.0, "yellow": 3.0,
                         "red_clear": 2.0},
              "barriers": [{"rings": [[1], [2]]}, {"rings": [[3], []]}],
              "phases": {"1": {"green": {"0": "G"}, "detectors": [0], "recall": "min"},
                         "2": {"green": {"1": "g"}, "detectors": [], "recall": "min"},
                         "3": {"green": {"2": "G", "3": "G"}, "detectors": [1],
                               "recall": "none"}}}
    device = SignalDevice("c1")
    device.receive("config", config)
    heads = [device.receive("input", signal_input(k, [0, 1] if k == 0 else [0, 0]))[0]
             .payload["heads"] for k in range(20)]
    assert heads[0] == "Ggrr"
    assert "rrGG" in heads
    assert device.counters["conflicts_prevented"] == 0
