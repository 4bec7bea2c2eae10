"""The whole chain: city <-> MQTT (a real broker) <-> serial gateway <-> real pty <-> reference
firmware. The lab scenario's first signal controller and first meter are firmware boards; the
city runs them in lockstep exactly as it runs the emulated MQTT devices (tests/hil)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citytwin.firmware_bridge.emulator import FirmwareEmulator
from citytwin.firmware_bridge.gateway import SerialGateway
from citytwin.hil.bridge import HilBridge
from citytwin.hil.broker import EmbeddedBroker
from citytwin.hil.record import read_records
from citytwin.hil.session import SessionOptions, run_session
from citytwin.model.city import City
from citytwin.scenarios import load_scenario
from tests.firmware_bridge.conftest import FAST

TICKS = 330  # past the lab's curtail command to the meter at t=300


def lab_with_boards() -> Any:
    scenario = load_scenario("lab")
    hil = scenario.spec.hil
    spec = hil.model_copy(update={
        "drone": [], "signal": hil.signal[:1], "meter": hil.meter[:1],
        "commands": [c for c in hil.commands if c.device == hil.meter[0].id],
        "wait_for_devices": 20.0})
    return dataclasses.replace(scenario, spec=scenario.spec.model_copy(update={"hil": spec}))


def run_chain(broker: EmbeddedBroker, out: Path
              ) -> tuple[City, HilBridge, FirmwareEmulator, FirmwareEmulator]:
    """One session with two fresh boards on their own ptys and gateways, all torn down after
    (as ``citytwin run`` starts fresh emulated devices for each run)."""
    scenario = lab_with_boards()
    city = scenario.build_city()
    result: dict[str, Any] = {}
    with FirmwareEmulator("signal", "ctl-r1c1", lockstep=True) as ctl, \
            FirmwareEmulator("meter", "meter-hall", lockstep=True) as meter:
        gateways = [SerialGateway(ctl.plug(), broker.url, FAST),
                    SerialGateway(meter.plug(), broker.url, FAST)]
        for gw in gateways:
            gw.start()
        try:
            result["bridge"] = run_session(scenario, city, out, SessionOptions(
                broker=str(broker.url), emulate=False), duration=float(TICKS))
        finally:
            for gw in gateways:
                gw.stop()
    return city, result["bridge"], ctl, meter


def inbound(out: Path, device: str, channel: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in read_records(out / "devices.jsonl")
            if r.dir == "in" and r.topic.endswith(f"/{device}/{channel}")]


def test_firmware_boards_rule_a_junction_and_meter_a_building_through_the_bridge(
        broker: EmbeddedBroker, make_broker: Callable[..., EmbeddedBroker],
        tmp_path: Path) -> None:
    city, bridge, ctl, meter = run_chain(broker, tmp_path / "a")
    hil = bridge.kpis()
    assert hil["devices_seen"] == hil["devices_configured"] == 2
    assert hil["rejected"] == 0 and hil["lockstep_misses"] == 0 and hil["fallbacks"] == 0
    assert hil["conflict_flashes"] == 0 and hil["commands_acked"] == 1
    assert hil["commands_done"] == 1
    # the signal board rules its junction: the city shows the heads it sent
    k = city.network.tls_ids.index("r1c1")
    twin = bridge.twins["ctl-r1c1"]
    assert twin.mode == "external" and city.signals.external[k]
    states = inbound(tmp_path / "a", "ctl-r1c1", "state")
    assert len(states) >= TICKS and [s["tick"] for s in states[:3]] == [0, 1, 2]
    assert city.signals.state_of(k) == states[-1]["heads"]
    assert len({s["heads"] for s in states if "G" in s["heads"]}) >= 2  # it cycles its phases
    assert ctl.board.counters == {"configs": 1}  # no input before the config, no bad config
    # the meter board's readings are the building's load; the city's curtail reached it
    readings = inbound(tmp_path / "a", "meter-hall", "state")
    building = bridge.twins["meter-hall"].building
    assert building.load_w == readings[-1]["power_w"] <= 3000.0
    assert max(r["power_w"] for r in readings) > 3000.0  # before the curtail
    assert meter.board.limit_w == 3000.0
    assert [r["energy_wh"] for r in readings] == sorted(r["energy_wh"] for r in readings)
    assert city.kpis()["vehicles_arrived"] > 0
    # lockstep with serial devices is deterministic: a second run (its own broker, as each
    # `citytwin run` starts one) gives the same trips
    city2, bridge2, _, _ = run_chain(make_broker(), tmp_path / "b")
    assert city2.trips_table().equals(city.trips_table())
    assert bridge2.kpis()["rejected"] == 0, bridge2.kpis()["rejected_by_code"]
