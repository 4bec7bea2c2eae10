"""The whole loop on a real broker: the lab scenario with emulated device processes.

City <-> bridge <-> broker (Mosquitto started by the tests, or amqtt) <-> device processes.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from citytwin.hil.broker import EmbeddedBroker
from citytwin.hil.record import read_records
from citytwin.hil.session import SessionOptions, run_session
from citytwin.scenarios import load_scenario


def citytwin(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "citytwin", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_lab_with_emulated_devices_is_deterministic_and_replays(broker: EmbeddedBroker,
                                                                tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        res = citytwin("run", "lab", "--duration", "150", "--broker", str(broker.url),
                       "--out", str(out))
        assert res.returncode == 0, res.stderr
        runs.append(out)
    kpis = json.loads((runs[0] / "kpis.json").read_text())
    hil = kpis["hil"]
    assert hil["devices_seen"] == hil["devices_configured"] == 5
    assert hil["rejected"] == 0 and hil["lockstep_misses"] == 0
    assert hil["conflict_flashes"] == 0 and hil["fallbacks"] == 0
    assert hil["commands_sent"] == 1 and hil["commands_acked"] == 1  # the drone's patrol
    assert hil["building_load_w"] > 0
    assert kpis["vehicles_arrived"] > 0
    # lockstep: the same scenario and seed give the same trips, with devices in the loop
    assert (runs[0] / "trips.parquet").read_bytes() == (runs[1] / "trips.parquet").read_bytes()
    # the device-ruled junctions really were ruled by the devices
    events = [json.loads(r.payload) for r in read_records(runs[0] / "devices.jsonl")
              if r.topic.endswith("/sim/sim/event")]
    assert {e["device"] for e in events if e["kind"] == "handover"} == {"ctl-r1c1", "ctl-r1c2"}
    replay = tmp_path / "replay"
    res = citytwin("replay", str(runs[0]), "--out", str(replay))
    assert res.returncode == 0, res.stderr
    assert (replay / "trips.parquet").read_bytes() == (runs[0] / "trips.parquet").read_bytes()


class Devices:
    """Emulated device processes started by the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, kind: str, device_id: str) -> None:
        self.procs[device_id] = subprocess.Popen(
            [sys.executable, "-m", "citytwin", "device", kind, "--id", device_id, "--broker",
             self.url, "--site", "lab", "--lockstep"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def kill(self, device_id: str) -> None:
        self.procs[device_id].send_signal(signal.SIGKILL)
        self.procs[device_id].wait()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def devices(broker: EmbeddedBroker) -> Devices:
    d = Devices(str(broker.url))
    yield d
    d.stop()


def _session(broker: EmbeddedBroker, out: Path, duration: float, signals: int = 2,
             **options):
    scenario = load_scenario("lab")
    spec = scenario.spec.hil.model_copy(update={"drone": [], "meter": [], "commands": [],
                                                "signal": scenario.spec.hil.signal[:signals],
                                                "wait_for_devices": 20.0})
    scenario = dataclasses.replace(scenario, spec=scenario.spec.model_copy(update={"hil": spec}))
    city = scenario.build_city()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["bridge"] = run_session(scenario, city, out, SessionOptions(
                broker=str(broker.url), emulate=False, **options), duration=duration)
        except BaseException as exc:  # reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result, city


def _wait_for(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail("condition not reached in time")


def _events(out: Path) -> list[dict]:
    return [json.loads(r.payload) for r in read_records(out / "devices.jsonl")
            if r.topic.endswith("/sim/sim/event")]


def test_killed_controller_falls_back_and_the_run_goes_on(broker: EmbeddedBroker,
                                                          devices: Devices,
                                                          tmp_path: Path) -> None:
    devices.start("signal", "ctl-r1c1")
    thread, result, city = _session(broker, tmp_path, duration=120, signals=1)
    _wait_for(lambda: city.tick > 20, 60)
    devices.kill("ctl-r1c1")  # no goodbye: the lockstep deadline, then the last will
    thread.join(120)
    assert "error" not in result, result.get("error")
    kinds = [e["kind"] for e in _events(tmp_path)]
    assert "fallback" in kinds and "offline" in kinds
    assert not city.signals.external[city.network.tls_ids.index("r1c1")]  # its own plan


def test_broker_restart_mid_run(broker: EmbeddedBroker, devices: Devices,
                                tmp_path: Path) -> None:
    devices.start("signal", "ctl-r1c1")
    # paced (20 ticks/s) so that the run outlasts the reconnects
    thread, result, city = _session(broker, tmp_path, duration=200, signals=1,
                                    clock="realtime", factor=20.0)
    _wait_for(lambda: city.tick > 20, 60)
    broker.restart()
    thread.join(180)
    assert "error" not in result, result.get("error")
    bridge = result["bridge"]
    twin = bridge.twins["ctl-r1c1"]
    assert twin.births >= 2 and twin.online  # it came back: new session, resubscribed
    assert bridge.twins["ctl-r1c1"].mode in ("external", "transition")
    assert bridge.counters["states_applied"] > 150


def test_bad_device_input_over_the_broker(broker: EmbeddedBroker, connect,
                                          tmp_path: Path) -> None:
    """A rogue controller: every bad message is answered on its error topic and counted, and
    a conflicting state puts its junction into flash."""
    base = "citytwin/v1/lab/signal/ctl-r1c1"
    link, inbox = connect("rogue", [(f"{base}/error", 1), (f"{base}/config", 1)])
    thread, result, city = _session(broker, tmp_path, duration=60, signals=1, clock="realtime",
                                    factor=10.0)
    config = json.loads(inbox.expect(f"{base}/config", timeout=30))
    n = config["links"]
    link.publish(f"{base}/birth", b'{"v":1,"kind":"signal"}', 1)
    seq = 0

    def state(heads: str, tick: int | None = None) -> None:
        nonlocal seq
        seq += 1
        body = {"v": 1, "seq": seq, "heads": heads}
        if tick is not None:
            body["tick"] = tick
        link.publish(f"{base}/state", json.dumps(body).encode(), 1)

    bad = [b"{oops", b"x" * 20000, b'{"v":7,"seq":1,"heads":"r"}',
           json.dumps({"v": 1, "seq": 100, "heads": "r" * (n + 1)}).encode()]
    for payload in bad:
        link.publish(f"{base}/state", payload, 1)
    codes = [json.loads(inbox.expect(f"{base}/error", timeout=10))["code"] for _ in bad]
    assert codes == ["malformed", "oversized", "unsupported_version", "out_of_range"]
    stale_ticks = load_scenario("lab").spec.hil.stale_ticks
    _wait_for(lambda: city.tick > stale_ticks + 2, 20)
    state("r" * n, tick=0)  # too old by now
    assert json.loads(inbox.expect(f"{base}/error", timeout=10))["code"] == "stale"
    state("r" * n)  # takes the junction (handover), then two conflicting links green
    a = config["conflicts"].index(next(c for c in config["conflicts"] if c))
    b = config["conflicts"][a][0]
    _wait_for(lambda: city.signals.external[city.network.tls_ids.index("r1c1")], 20)
    time.sleep(1.0)  # past the handover clearance (4 s of sim at 10x)
    heads = ["r"] * n
    heads[a] = heads[b] = "G"
    state("".join(heads))
    err = json.loads(inbox.expect(f"{base}/error", timeout=10))
    assert err["code"] == "conflict"
    _wait_for(lambda: set(city.signals.state_of(city.network.tls_ids.index("r1c1"))) == {"s"},
              10)
    thread.join(60)
    assert "error" not in result, result.get("error")
    hil = result["bridge"].kpis()
    assert hil["rejected"] == 6 and hil["conflict_flashes"] == 1
