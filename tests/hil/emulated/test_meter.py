"""The emulated meter: a seeded deterministic load, an energy register, curtailment, a relay."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from citytwin.hil.emulated.meter import LoadProfile, MeterDevice
from citytwin.hil.protocol import encode
from tests.hil.emulated.conftest import acks, clock, cmd, contract


def run(meter: MeterDevice, first: int, last: int, dt: float = 1.0) -> list[dict[str, Any]]:
    """Feed clocks for ticks ``first..last`` (``dt`` apart); return the states published."""
    out = []
    for tick in range(first, last + 1):
        out += meter.receive("clock", clock(tick, tick * dt, dt))
    contract(meter, out)
    return [m.payload for m in out if m.channel == "state"]


def test_the_load_is_seeded_by_id_and_seed_and_stays_within_2_to_8_kw():
    t = np.arange(0.0, 86400.0, 60.0)
    def curve(device_id: str, seed: int) -> np.ndarray:
        profile = LoadProfile(device_id, seed)
        return np.array([profile.power(x) for x in t])

    assert curve("m1", 7).tolist() == curve("m1", 7).tolist()
    assert curve("m1", 7).tolist() != curve("m2", 7).tolist()
    assert curve("m1", 7).tolist() != curve("m1", 8).tolist()
    for device_id in ("m1", "m2", "building-17"):
        for seed in range(5):
            p = curve(device_id, seed)
            assert p.min() >= 2000.0 and p.max() <= 8000.0
            assert p.max() - p.min() > 200.0  # it does vary, slowly
            assert np.abs(np.diff(p)).max() < 500.0  # per minute


def test_same_seed_same_bytes():
    def session(seed: int) -> list[bytes]:
        meter = MeterDevice("m1", seed=seed)
        meter.connected()
        out = []
        for tick in range(0, 200):
            out += meter.receive("clock", clock(tick))
        return [encode(m.payload) for m in out]

    assert session(3) == session(3)
    assert session(3) != session(4)


def test_reports_on_the_first_clock_then_every_period():
    meter = MeterDevice("m1", period=5.0)
    states = run(meter, 0, 21)
    assert [s["tick"] for s in states] == [0, 5, 10, 15, 20]
    assert [s["seq"] for s in states] == [0, 1, 2, 3, 4]
    meter = MeterDevice("m1", period=5.0)
    assert [s["tick"] for s in run(meter, 0, 10, dt=2.0)] == [0, 3, 5, 8, 10]  # t 0 6 10 16 20


def test_energy_integrates_power_over_sim_time():
    meter = MeterDevice("m1", seed=1, period=60.0)
    states = run(meter, 0, 3600)
    energy = [s["energy_wh"] for s in states]
    assert energy[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(energy))
    fine = np.arange(0.0, 3600.0 + 1e-9, 0.25)
    exact = np.trapezoid([meter.profile.power(x) for x in fine], fine) / 3600.0
    assert energy[-1] == pytest.approx(exact, rel=1e-4)
    assert states[-1]["power_w"] == meter.profile.power(3600.0)


def test_curtail_caps_the_power_and_null_lifts_the_cap():
    meter = MeterDevice("m1")
    run(meter, 0, 4)
    out = meter.receive("cmd", cmd("c1", "curtail", t=4.0, limit_w=1500.0))
    assert acks(out) == [("c1", "accepted", ""), ("c1", "done", "")]
    states = run(meter, 5, 100)
    assert all(s["power_w"] <= 1500.0 for s in states)
    assert states[-1]["energy_wh"] - states[0]["energy_wh"] <= 1500.0 * 95 / 3600 + 1e-9
    meter.receive("cmd", cmd("c2", "curtail", t=100.0, limit_w=None))
    assert run(meter, 101, 105)[-1]["power_w"] == meter.profile.power(105.0)


def test_an_open_relay_delivers_nothing():
    meter = MeterDevice("m1")
    before = run(meter, 0, 10)[-1]["energy_wh"]
    assert acks(meter.receive("cmd", cmd("c1", "relay", t=10.0, state="open")))[-1] == (
        "c1", "done", "")
    states = run(meter, 11, 50)
    assert {(s["power_w"], s["relay"]) for s in states} == {(0.0, "open")}
    assert states[-1]["energy_wh"] == before
    meter.receive("cmd", cmd("c2", "relay", t=50.0, state="closed"))
    assert run(meter, 51, 55)[-1]["power_w"] > 0.0


@pytest.mark.parametrize("name, args, reason", [
    ("curtail", {}, "bad_args: limit_w: missing (null lifts the limit)"),
    ("curtail", {"limit_w": -5}, "bad_args: limit_w: must be >= 0, got -5"),
    ("curtail", {"limit_w": "low"}, "bad_args: limit_w: expected a number, got str"),
    ("relay", {"state": "half"}, "bad_args: state: must be one of open, closed, got 'half'"),
    ("relay", {}, "bad_args: state: missing"),
])
def test_bad_commands_are_rejected_and_change_nothing(name, args, reason):
    meter = MeterDevice("m1")
    assert acks(meter.receive("cmd", cmd("c1", name, **args))) == [("c1", "rejected", reason)]
    assert (meter.limit_w, meter.relay) == (None, "closed")


def test_a_new_simulator_session_never_takes_energy_back():
    meter = MeterDevice("m1")
    energy = run(meter, 0, 100)[-1]["energy_wh"]
    states = run(meter, 0, 10)  # the sim restarted at tick 0
    assert states[0]["energy_wh"] == energy
    assert states[0]["tick"] == 0


def test_birth_says_how_often_it_reports():
    meter = MeterDevice("m1", period=2.5, lockstep=True)
    birth = meter.connected()[1].payload
    assert birth["capabilities"]["period_s"] == 2.5 and birth["lockstep"] is True
    with pytest.raises(ValueError):
        MeterDevice("m1", period=0.0)
    with pytest.raises(ValueError):
        LoadProfile("m1", -1)
