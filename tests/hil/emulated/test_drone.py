"""The emulated drone: hand-checked flights on sim time, missions, and its failsafes.

Home is (0, 0); cruise 12 m/s, climb 3 m/s, cruise altitude 60 m, so a take-off takes 20 s.
"""

from __future__ import annotations

from typing import Any

import pytest

from citytwin.hil.emulated.device import Outbound
from citytwin.hil.emulated.drone import DroneConfig, DroneDevice
from citytwin.hil.emulated.payload import PayloadError
from tests.hil.emulated.conftest import DRONE_CONFIG, acks, clock, cmd, contract


@pytest.fixture
def drone() -> DroneDevice:
    """A connected, configured drone, landed at home; sim time 0."""
    d = DroneDevice("dr1")
    d.connected()
    d.receive("config", DRONE_CONFIG)
    d.receive("clock", clock(0))
    return d


def fly(drone: DroneDevice, first: int, last: int, **wall: Any) -> list[Outbound]:
    """Feed clocks for ticks ``first..last`` (1 s apart); return everything published."""
    out: list[Outbound] = []
    for tick in range(first, last + 1):
        out += drone.receive("clock", clock(tick), **wall)
    return out


def states(out: list[Outbound]) -> list[dict[str, Any]]:
    return [m.payload for m in out if m.channel == "state"]


def done_tick(out: list[Outbound], cmd_id: str) -> int:
    """Tick of the clock whose answer holds the ``done`` ack of ``cmd_id`` (the ack comes
    first, then that tick's state)."""
    done = False
    for m in out:
        if m.channel == "ack" and m.payload["cmd_id"] == cmd_id:
            done = m.payload["status"] == "done"
        elif m.channel == "state" and done:
            return int(m.payload["tick"])
    pytest.fail(f"{cmd_id} never done")


def test_starts_landed_at_home_and_reports_every_clock(drone):
    out = fly(drone, 1, 3)
    contract(drone, out)
    assert states(out) == [
        {"v": 1, "seq": k, "tick": k, "x": 0.0, "y": 0.0, "alt": 0.0, "heading": 0.0,
         "speed": 0.0, "battery": 100.0, "mode": "landed"} for k in (1, 2, 3)]


def test_goto_takes_off_vertically_then_cruises_and_is_done_on_arrival(drone):
    assert acks(drone.receive("cmd", cmd("c1", "goto", x=120.0, y=0.0))) == [
        ("c1", "accepted", "")]
    out = fly(drone, 1, 35)
    contract(drone, out)
    by_tick = {s["tick"]: s for s in states(out)}
    assert by_tick[10]["alt"] == pytest.approx(30.0) and by_tick[10]["x"] == 0.0
    assert by_tick[20]["alt"] == pytest.approx(60.0) and by_tick[20]["mode"] == "flying"
    assert by_tick[25]["x"] == pytest.approx(60.0) and by_tick[25]["speed"] == 12.0
    assert by_tick[25]["heading"] == 90.0
    assert done_tick(out, "c1") == 30
    assert by_tick[30]["x"] == 120.0 and by_tick[30]["mode"] == "idle"
    assert by_tick[30]["battery"] == pytest.approx(100 - 0.05 * 30)
    assert by_tick[35]["speed"] == 0.0 and by_tick[35]["x"] == 120.0  # hovering


@pytest.mark.parametrize("x, y, heading", [(0, 100, 0.0), (100, 0, 90.0), (0, -100, 180.0),
                                           (-100, 0, 270.0), (100, 100, 45.0),
                                           (-1e-300, 100, 0.0)])
def test_heading_is_clockwise_from_north(drone, x, y, heading):
    drone.receive("cmd", cmd("c1", "goto", x=x, y=y))
    last = states(fly(drone, 1, 22))[-1]
    assert last["heading"] == pytest.approx(heading, abs=1e-6)
    assert 0.0 <= last["heading"] < 360.0


def test_patrol_flies_its_loops_then_hovers_at_the_last_point(drone):
    out = drone.receive("cmd", cmd("c1", "patrol", points=[[100, 0], [100, 100]], loops=2,
                                   alt=60))
    assert acks(out) == [("c1", "accepted", "")]
    out = fly(drone, 1, 60)
    assert done_tick(out, "c1") == 54  # 20 s up, then 400 m at 12 m/s: 33.3 s
    last = states(out)[-1]
    assert (last["x"], last["y"], last["mode"]) == (100.0, 100.0, "idle")
    by_tick = {s["tick"]: s for s in states(out)}
    # the first corner is passed mid-tick and the time left carries on to the next leg
    assert (by_tick[29]["x"], by_tick[29]["y"]) == (pytest.approx(100.0), pytest.approx(8.0))
    assert max(s["speed"] for s in states(out)) == 12.0


def test_return_home_flies_back_and_lands(drone):
    drone.receive("cmd", cmd("c1", "goto", x=120.0, y=0.0))
    fly(drone, 1, 30)
    assert acks(drone.receive("cmd", cmd("c2", "return_home", t=30.0))) == [
        ("c2", "accepted", "")]
    out = fly(drone, 31, 65)
    modes = [s["mode"] for s in states(out)]
    assert modes[:10] == ["returning"] * 9 + ["landing"]  # 120 m at 12 m/s
    assert done_tick(out, "c2") == 60  # then 60 m down at 3 m/s
    final = states(out)[-1]
    assert (final["x"], final["y"], final["alt"], final["mode"]) == (0.0, 0.0, 0.0, "landed")
    battery = final["battery"]
    fly(drone, 66, 80)
    assert drone.battery == battery  # no drain on the ground


def test_land_descends_where_it_is(drone):
    drone.receive("cmd", cmd("c1", "goto", x=0.0, y=0.0, alt=30.0))
    fly(drone, 1, 10)
    drone.receive("cmd", cmd("c2", "land", t=10.0))
    out = fly(drone, 11, 25)
    assert done_tick(out, "c2") == 20
    assert drone.mode == "landed" and drone.alt == 0.0


def test_land_and_return_home_on_the_ground_at_home_are_done_at_once(drone):
    for i, name in enumerate(("land", "return_home")):
        assert acks(drone.receive("cmd", cmd(f"c{i}", name))) == [
            (f"c{i}", "accepted", ""), (f"c{i}", "done", "")]


def test_a_new_mission_supersedes_the_running_one(drone):
    drone.receive("cmd", cmd("c1", "goto", x=500.0, y=0.0))
    fly(drone, 1, 5)
    out = drone.receive("cmd", cmd("c2", "goto", x=0.0, y=500.0, t=5.0))
    assert acks(out) == [("c1", "rejected", "superseded"), ("c2", "accepted", "")]
    contract(drone, out)


@pytest.mark.parametrize("name, args, reason", [
    ("goto", {"x": 5000.0, "y": 0.0}, "outside_bounds"),
    ("goto", {"x": 0.0}, "bad_args: y: missing"),
    ("goto", {"x": 0.0, "y": 0.0, "alt": 900.0}, "bad_args: alt: must be <= 500, got 900"),
    ("goto", {"x": 0.0, "y": 0.0, "alt": 0.0}, "bad_args: alt: must be > 0, got 0"),
    ("patrol", {"points": [[0, 0], [2000, 0]], "loops": 1}, "outside_bounds"),
    ("patrol", {"points": [[0, 0]], "loops": 0}, "bad_args: loops: must be >= 1, got 0"),
    ("patrol", {"points": [[0, 0]]}, "bad_args: loops: missing"),
    ("patrol", {"points": [], "loops": 1}, "bad_args: points: expected a list of 1-256 "
                                           "[x, y] pairs"),
    ("patrol", {"points": [[0]], "loops": 1}, "bad_args: points: expected [x, y]"),
])
def test_bad_missions_are_rejected_and_change_nothing(drone, name, args, reason):
    assert acks(drone.receive("cmd", cmd("c1", name, **args))) == [("c1", "rejected", reason)]
    assert drone.mode == "landed" and drone.route == ()


def test_low_battery_rejects_missions_and_returns_home():
    d = DroneDevice("dr1")
    d.receive("config", {**DRONE_CONFIG, "drain_per_s": 1.0})
    d.receive("clock", clock(0))
    d.receive("cmd", cmd("c1", "goto", x=900.0, y=0.0))
    out = fly(d, 1, 80)
    assert acks(out) == [] and d.mode == "flying"
    out = fly(d, 81, 81)  # battery 19 %
    assert acks(out) == [("c1", "rejected", "low_battery")]
    assert states(out)[-1]["mode"] == "returning"
    assert states(out)[-1]["x"] < 12 * (80 - 20)  # turned back
    assert acks(d.receive("cmd", cmd("c2", "goto", x=0.0, y=0.0, t=81.0))) == [
        ("c2", "rejected", "low_battery")]
    out = fly(d, 82, 200)  # it cannot make it home: lands where the battery runs out
    contract(d, out)
    final = states(out)[-1]
    assert final["battery"] == 0.0 and final["mode"] == "landed" and final["x"] > 0


def test_link_loss_returns_home_on_the_wall_clock_then_the_sim_takes_over_again(drone):
    drone.receive("cmd", cmd("c1", "goto", x=120.0, y=0.0))
    fly(drone, 1, 30, wall=100.0)
    assert drone.poll(102.0) == [] and not drone.link_lost
    assert drone.poll(103.5) == []  # silence for more than 3 s: failsafe
    assert drone.link_lost and drone.mode == "returning"
    drone.poll(108.5)
    assert drone.x == pytest.approx(120.0 - 12 * 5)  # flown on the wall clock
    for k in range(40):
        drone.poll(109.0 + k)
    assert (drone.x, drone.y, drone.alt, drone.mode) == (0.0, 0.0, 0.0, "landed")
    out = drone.receive("clock", clock(31), wall=150.0)
    assert not drone.link_lost
    assert states(out)[-1]["mode"] == "landed" and states(out)[-1]["tick"] == 31


def test_the_simulator_going_offline_triggers_the_failsafe_at_once(drone):
    drone.receive("cmd", cmd("c1", "goto", x=120.0, y=0.0))
    fly(drone, 1, 25)
    out = drone.receive("avail", {"v": 1, "status": "offline"}, wall=0.5)
    assert acks(out) == [("c1", "rejected", "link_lost")]
    assert drone.link_lost and drone.mode == "returning"
    drone.receive("avail", {"v": 1, "status": "online"}, wall=1.0)
    assert not drone.link_lost
    x = drone.x
    out = drone.receive("clock", clock(500), wall=1.5)  # the sim resumed far ahead: no jump
    assert drone.x == x and states(out)[-1]["mode"] == "returning"


def test_a_landed_drone_stays_landed_when_the_link_is_lost(drone):
    drone.poll(0.0)
    drone.poll(10.0)
    assert drone.link_lost and drone.mode == "landed" and drone.route == ()


def test_the_latest_view_is_kept(drone):
    view = {"v": 1, "seq": 4, "tick": 7, "t": 7.0, "vehicles_in_view": 12,
            "halted_in_view": 3, "radius_m": 80.5}
    assert drone.receive("input", view) == []
    assert drone.view is not None
    assert (drone.view.tick, drone.view.vehicles_in_view, drone.view.halted_in_view,
            drone.view.radius_m) == (7, 12, 3, 80.5)


def test_before_config_no_state_and_commands_refused():
    d = DroneDevice("dr1")
    assert d.receive("clock", clock(0)) == []
    assert d.counters["clock_without_config"] == 1
    assert acks(d.receive("cmd", cmd("c1", "land"))) == [("c1", "rejected", "not_configured")]


def test_a_new_config_keeps_the_position():
    d = DroneDevice("dr1")
    d.receive("config", {**DRONE_CONFIG, "home": [10.0, 20.0]})
    assert (d.x, d.y) == (10.0, 20.0)
    d.receive("config", {**DRONE_CONFIG, "home": [30.0, 20.0], "cruise_speed": 20.0})
    assert (d.x, d.y) == (10.0, 20.0)
    assert d.drone_config is not None and d.drone_config.cruise_speed == 20.0


@pytest.mark.parametrize("change, words", [
    ({"home": [5000.0, 0.0]}, "home: outside bounds"),
    ({"home": [0.0]}, r"home: expected \[x, y\]"),
    ({"bounds": [0, 0, -1, 1]}, "xmin < xmax"),
    ({"cruise_speed": 0}, "cruise_speed: must be > 0"),
    ({"cruise_speed": 61}, "cruise_speed: must be <= 60"),
    ({"drain_per_s": -1}, "drain_per_s"),
])
def test_bad_configs_are_refused(change, words):
    with pytest.raises(PayloadError, match=words):
        DroneConfig.from_payload({**DRONE_CONFIG, **change})
