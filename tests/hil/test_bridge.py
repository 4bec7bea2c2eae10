"""The bridge's validation and the twins' behaviour, driven in-process (no broker): a device is
played by putting messages into the bridge's inbox as the network thread would."""

from __future__ import annotations

import json

import pytest

from citytwin.hil.bridge import ERRORS_PER_SECOND, HilBridge
from citytwin.hil.protocol import MAX_PAYLOAD, topic
from citytwin.hil.record import Recorder, read_records
from citytwin.scenarios import load_scenario

SIG = "ctl-r1c1"


class Capture:
    """Keeps what the bridge publishes."""

    def __init__(self) -> None:
        self.msgs: list[tuple[str, dict]] = []

    def publish(self, t: str, payload: bytes, qos: int = 0, retain: bool = False,
                expiry: float | None = None) -> None:
        self.msgs.append((t, json.loads(payload)))

    def on(self, channel: str, device: str = SIG) -> list[dict]:
        return [p for t, p in self.msgs if t.endswith(f"/{device}/{channel}")]


class Lab:
    def __init__(self, tmp_path=None, **update) -> None:
        self.scenario = load_scenario("lab")
        self.city = self.scenario.build_city(3)
        spec = self.scenario.spec.hil.model_copy(update={"clock": "fast", **update})
        self.pub = Capture()
        rec = Recorder(tmp_path / "devices.jsonl") if tmp_path else None
        self.bridge = HilBridge(self.city, spec, self.pub, rec)
        self.bridge.start()
        self.seq: dict[str, int] = {}
        tls = self.city.network.tls_ids.index("r1c1")
        self.tls = tls
        self.program = self.city.network.programs[tls]

    def send(self, device: str, kind: str, channel: str, payload: dict | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(
            {"v": 1, **payload}).encode()
        self.bridge.on_message(topic("lab", kind, device, channel), data, 0.0)

    def state(self, device: str, kind: str, **fields) -> None:
        self.seq[device] = self.seq.get(device, -1) + 1
        self.send(device, kind, "state", {"seq": self.seq[device], **fields})

    def birth(self, device: str, kind: str) -> None:
        self.seq[device] = -1
        self.send(device, kind, "birth", {"kind": kind})

    def heads(self, heads: str) -> None:
        self.state(SIG, "signal", tick=self.city.tick, heads=heads)

    @property
    def shown(self) -> str:
        return self.city.signals.state_of(self.tls)

    def run(self, seconds: float) -> None:
        self.bridge.run(round(seconds / self.city.config.dt))


@pytest.fixture(scope="module")
def warm() -> None:
    Lab().run(1)  # compile once


@pytest.fixture
def lab(warm: None) -> Lab:
    return Lab(signal=load_scenario("lab").spec.hil.signal[:1], drone=[], meter=[],
               commands=[], clock="lockstep")  # lockstep: no timing tolerance


def green(lab: Lab, k: int) -> str:
    return lab.program.phases[k].state


def take_over(lab: Lab) -> None:
    """Birth, first state, and the handover clearance (yellow + all red)."""
    lab.birth(SIG, "signal")
    lab.heads("r" * len(green(lab, 0)))
    lab.run(1)
    assert lab.bridge.twins[SIG].mode == "transition"
    lab.run(4)
    assert lab.bridge.twins[SIG].mode == "external"


def test_device_rules_the_junction_after_a_safe_handover(lab: Lab) -> None:
    assert not lab.city.signals.external[lab.tls]
    take_over(lab)
    lab.heads(green(lab, 0))
    lab.run(1)
    assert lab.shown == green(lab, 0)
    assert lab.bridge.rejected.total() == 0
    # inputs every tick: presence and counts per detector of the junction
    inputs = lab.pub.on("input")
    assert inputs and len(inputs[-1]["calls"]) == 8 and inputs[-1]["tick"] == lab.city.tick


def test_conflicting_greens_flash_the_junction_and_tell_the_device(lab: Lab) -> None:
    take_over(lab)
    both = "".join("G" if a != "r" or b != "r" else "r"
                   for a, b in zip(green(lab, 0), green(lab, 3), strict=True))
    lab.heads(both)
    lab.run(1)
    assert set(lab.shown) == {"s"}
    twin = lab.bridge.twins[SIG]
    assert twin.mode == "flash" and twin.violations == 1
    err = lab.pub.on("error")[-1]
    assert err["code"] == "conflict" and "conflict" in err["detail"]
    assert any(e["kind"] == "conflict" for e in lab.bridge.events)
    # flash holds flash_hold seconds even if the device sends a safe state
    for _ in range(10):
        lab.heads("r" * len(both))
        lab.run(1)
    assert set(lab.shown) == {"s"}
    for _ in range(23):  # past flash_hold (30 s): all red for the clearance, then the device
        lab.heads("r" * len(both))
        lab.run(1)
    assert twin.mode == "external" and lab.shown == "r" * len(both)
    lab.heads(green(lab, 3))
    lab.run(1)
    assert lab.shown == green(lab, 3)


def test_a_green_the_device_ran_through_the_handover_may_end(lab: Lab) -> None:
    """The device times its greens from its own start: one it began while the simulator
    showed the handover clearance may end soon after the clearance without a violation, but
    still only through yellow."""
    lab.birth(SIG, "signal")
    g = green(lab, 0)
    lab.heads(g)  # the device's green starts now; the junction shows the clearance
    lab.run(5)
    assert lab.bridge.twins[SIG].mode == "external" and lab.shown == g
    lab.heads(g)
    lab.run(1)  # shown for 1 s, green at the device for 6 s
    lab.heads("".join("y" if ch != "r" else "r" for ch in g))
    lab.run(1)
    assert lab.bridge.rejected.total() == 0 and lab.bridge.twins[SIG].violations == 0
    lab.heads(g)  # yellow back to green is still refused
    lab.run(1)
    assert lab.pub.on("error")[-1]["code"] == "conflict"


def test_states_queued_behind_a_stall_are_timed_by_the_device_clock(warm: None) -> None:
    """Realtime: nothing arrives for a while, then the device's yellow, red and next green
    arrive in one drain. Judged by their ``tick`` stamps they are a safe sequence; a yellow
    that was short on the device's clock stays refused."""
    lab = Lab(signal=load_scenario("lab").spec.hil.signal[:1], drone=[], meter=[],
              commands=[], clock="fast")
    take_over(lab)
    g, g3 = green(lab, 0), green(lab, 3)
    t0 = lab.city.tick
    for _ in range(6):
        lab.heads(g)
        lab.run(1)
    lab.run(4)  # the stall
    lab.state(SIG, "signal", tick=t0 + 6, heads=_yellow(g))
    lab.state(SIG, "signal", tick=t0 + 9, heads="r" * len(g))
    lab.state(SIG, "signal", tick=t0 + 10, heads=g3)
    lab.run(1)
    assert lab.bridge.rejected.total() == 0 and lab.shown == g3
    for _ in range(6):
        lab.heads(g3)
        lab.run(1)
    t1 = lab.city.tick
    lab.run(2)
    lab.state(SIG, "signal", tick=t1, heads=_yellow(g3))
    lab.state(SIG, "signal", tick=t1 + 1, heads="r" * len(g))  # yellow for 1 s
    lab.run(1)
    assert lab.pub.on("error")[-1]["code"] == "conflict"
    assert "yellow for 1.0 s" in lab.pub.on("error")[-1]["detail"]


def _yellow(state: str) -> str:
    return "".join("y" if ch != "r" else "r" for ch in state)


@pytest.mark.parametrize("sequence, why", [
    (["G0", "r"], "without yellow"),             # green straight to red
    (["G0", "y0"], "minimum green"),             # yellow before min green
    (["G0", "wait5", "y0", "r"], "yellow time"),  # yellow cut short
    (["G0", "wait5", "y0", "wait3", "r!", "G3"], "red clearance"),  # no all-red
])
def test_unsafe_timing_is_refused(lab: Lab, sequence: list[str], why: str) -> None:
    take_over(lab)
    n = len(green(lab, 0))
    for step in sequence:
        if step.startswith("wait"):
            lab.run(float(step[4:]))
            continue
        if step.startswith("r"):
            heads = "r" * n
        elif step[0] == "y":
            heads = "".join("y" if ch != "r" else "r" for ch in green(lab, int(step[1])))
        else:
            heads = green(lab, int(step[1]))
        lab.heads(heads)
        if not step.endswith("!"):
            lab.run(1)
    lab.run(1)
    assert lab.pub.on("error")[-1]["code"] == "conflict"
    assert why in lab.pub.on("error")[-1]["detail"]
    assert set(lab.shown) == {"s"}


def test_safe_cycle_is_accepted(lab: Lab) -> None:
    take_over(lab)
    n = len(green(lab, 0))
    for k in (0, 3, 0):
        lab.heads(green(lab, k))
        lab.run(6)
        lab.heads("".join("y" if ch != "r" else "r" for ch in green(lab, k)))
        lab.run(3)
        lab.heads("r" * n)
        lab.run(1)
    assert lab.bridge.rejected.total() == 0


@pytest.mark.parametrize("payload, code", [
    (b"{not json", "malformed"),
    (b"[1, 2]", "malformed"),
    (b"\xff\xfe", "malformed"),
    (b"x" * (MAX_PAYLOAD + 1), "oversized"),
    (b'{"v": 2, "seq": 9, "heads": "rrrrrrrrrrrrrrrr"}', "unsupported_version"),
    (b'{"v": 1, "seq": 9, "heads": "rrrrrrrrrrrrrrrr", "extra": 1}', "malformed"),
    (b'{"v": 1, "seq": -1, "heads": "rrrrrrrrrrrrrrrr"}', "out_of_range"),
    (b'{"v": 1, "seq": 9, "heads": "rrrr"}', "out_of_range"),
    (b'{"v": 1, "seq": 9, "heads": "rrrrrrrrrrrrrrrX"}', "out_of_range"),
    (b'{"v": 1, "seq": 9, "tick": 999999, "heads": "rrrrrrrrrrrrrrrr"}', "out_of_range"),
])
def test_bad_input_is_rejected_counted_and_changes_nothing(lab: Lab, payload: bytes,
                                                           code: str) -> None:
    take_over(lab)
    lab.heads(green(lab, 0))
    lab.run(1)
    before = lab.shown
    lab.send(SIG, "signal", "state", payload)
    lab.run(1)
    assert lab.bridge.rejected[code] == 1
    assert lab.pub.on("error")[-1]["code"] == code
    assert lab.shown == before


def test_a_flooding_device_gets_a_bounded_number_of_error_replies(lab: Lab) -> None:
    take_over(lab)
    lab.heads(green(lab, 0))
    lab.run(1)
    before = lab.shown
    for _ in range(50):
        lab.send(SIG, "signal", "state", b"{oops")
    lab.run(1)
    assert lab.bridge.rejected["malformed"] == 50  # every refusal counted
    assert len(lab.pub.on("error")) == ERRORS_PER_SECOND
    assert lab.bridge.kpis()["errors_suppressed"] == 50 - ERRORS_PER_SECOND
    assert lab.shown == before
    lab.send(SIG, "signal", "state", b"{oops")  # a new second: answered, with the tally
    lab.run(1)
    assert lab.pub.on("error")[-1]["suppressed"] == 50 - ERRORS_PER_SECOND


def test_sequence_staleness_and_identity_are_checked(lab: Lab) -> None:
    lab.heads("r" * 16)  # before any birth
    lab.run(1)
    assert lab.bridge.rejected["not_online"] == 1
    take_over(lab)
    lab.send(SIG, "signal", "state", {"seq": 0, "heads": "r" * 16})  # seq already used
    lab.run(1)
    assert lab.bridge.rejected["out_of_order"] == 1
    lab.run(10)
    lab.state(SIG, "signal", tick=0, heads="r" * 16)  # 10+ ticks old
    lab.run(1)
    assert lab.bridge.rejected["stale"] == 1
    lab.send("ghost", "signal", "state", {"seq": 1, "heads": "r"})
    lab.send(SIG, "drone", "birth", {"kind": "drone"})
    lab.bridge.on_message("citytwin/v1/lab/signal/x", b"{}", 0.0)
    lab.run(1)
    assert lab.bridge.rejected["unknown_device"] == 2
    assert lab.bridge.rejected["bad_topic"] == 1
    assert lab.pub.on("error", "ghost")[-1]["code"] == "unknown_device"


def test_offline_device_falls_back_to_the_plan(lab: Lab) -> None:
    take_over(lab)
    lab.heads(green(lab, 0))
    lab.run(6)
    lab.send(SIG, "signal", "avail", {"status": "offline"})  # its last will
    lab.run(1)
    twin = lab.bridge.twins[SIG]
    assert twin.fallbacks == 1 and set(lab.shown) <= {"y", "r"}
    lab.run(4)
    assert not lab.city.signals.external[lab.tls]
    assert lab.shown == green(lab, 0)  # its own program from phase 0


def test_silent_device_falls_back(lab: Lab) -> None:
    take_over(lab)
    lab.heads(green(lab, 0))
    lab.run(lab.bridge.spec.offline_after + 2)
    assert lab.bridge.twins[SIG].fallbacks == 1
    assert any(e["kind"] == "silent" for e in lab.bridge.events)
    lab.heads("r" * 16)  # it speaks again: handover again
    lab.run(1)
    assert lab.bridge.twins[SIG].mode == "transition"


def test_retained_birth_of_a_gone_device_starts_no_session(lab: Lab) -> None:
    """What a broker hands a new simulator from an earlier session: the device's will
    (offline) and its retained birth. The device is not there, so it must not count as online
    (in lockstep the clock would wait for it and then log a miss)."""
    lab.send(SIG, "signal", "avail", {"status": "offline"})
    lab.birth(SIG, "signal")
    lab.run(1)
    twin = lab.bridge.twins[SIG]
    assert not twin.online and twin.births == 0
    assert lab.bridge.kpis()["births_ignored"] == 1
    lab.send(SIG, "signal", "avail", {"status": "online"})  # the device comes back
    lab.birth(SIG, "signal")
    lab.run(1)
    assert twin.online and twin.births == 1


def test_meter_readings_staleness_and_commands(warm: None) -> None:
    lab = Lab(signal=[], drone=[], commands=[])
    m = "meter-hall"
    lab.birth(m, "meter")
    lab.state(m, "meter", energy_wh=100.0, power_w=4200.0, relay="closed")
    lab.run(1)
    b = lab.bridge.twins[m].building
    assert b.load_w == 4200.0 and not b.stale(lab.city.sim_time)
    lab.state(m, "meter", energy_wh=50.0, power_w=4200.0, relay="closed")  # register back
    lab.run(1)
    assert lab.bridge.rejected["out_of_range"] == 1 and b.energy_wh == 100.0
    cmd = lab.bridge.send_command(m, "curtail", {"limit_w": 3000.0})
    sent = lab.pub.on("cmd", m)[-1]
    assert sent["id"] == cmd and sent["valid_until"] == pytest.approx(sent["t"] + 30)
    for status in ("accepted", "accepted", "done"):
        lab.seq[m] += 1
        lab.send(m, "meter", "ack", {"seq": lab.seq[m], "cmd_id": cmd, "status": status})
    lab.seq[m] += 1
    lab.send(m, "meter", "ack", {"seq": lab.seq[m], "cmd_id": "c99", "status": "done"})
    lab.run(1)
    assert lab.bridge.command_status(cmd) == "done" and b.limit_w == 3000.0
    assert lab.bridge.counters["duplicate_acks"] == 1
    assert lab.bridge.rejected["unknown_command"] == 1
    lab.run(b.stale_after + 1)
    assert b.stale(lab.city.sim_time) and lab.bridge.twins[m].stale_events == 1


def test_drone_twin_follows_reports_and_sees_traffic(warm: None) -> None:
    lab = Lab(signal=[], meter=[], commands=[])
    d = "drone-1"
    lab.birth(d, "drone")
    lab.run(300)  # traffic builds up
    lab.state(d, "drone", x=200.0, y=200.0, alt=150.0, heading=90.0, speed=0.0,
              battery=80.0, mode="flying")
    lab.run(1)
    view = lab.pub.on("input", d)[-1]
    assert view["vehicles_in_view"] > 0 and view["radius_m"] == pytest.approx(150.0)
    assert view["halted_in_view"] <= view["vehicles_in_view"]
    lab.state(d, "drone", x=1e6, y=0.0, alt=50.0, heading=0.0, speed=5.0, battery=80.0,
              mode="flying")
    lab.run(1)
    assert lab.bridge.rejected["out_of_range"] == 1
    assert lab.bridge.twins[d].drone.x == pytest.approx(200.0)


def test_replay_repeats_the_session(tmp_path, warm: None) -> None:
    lab = Lab(tmp_path, signal=load_scenario("lab").spec.hil.signal[:1], drone=[], meter=[],
              commands=[])
    lab.birth(SIG, "signal")
    n = len(green(lab, 0))
    plan = [green(lab, 0)] * 8 + ["".join("y" if c != "r" else "r" for c in green(lab, 0))] * 3
    plan += ["r" * n] + [green(lab, 3)] * 8
    plan += ["".join("y" if c != "r" else "r" for c in green(lab, 3))] * 3 + ["r" * n]
    for k in range(300):
        lab.heads(plan[k % len(plan)])
        if k == 150:
            lab.send(SIG, "signal", "state", b"garbage")
        lab.run(1)
    lab.bridge.close()
    original = lab.city.trips_table()
    again = Lab(None, signal=load_scenario("lab").spec.hil.signal[:1], drone=[], meter=[],
                commands=[])
    again.bridge.replay(read_records(tmp_path / "devices.jsonl"), 300)
    assert again.city.trips_table().equals(original)
    assert again.bridge.rejected == lab.bridge.rejected
    assert again.bridge.events == lab.bridge.events
