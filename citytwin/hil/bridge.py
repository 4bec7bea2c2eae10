"""The HIL bridge: devices join a running city over MQTT.

:class:`HilBridge` owns the city's stepping while devices are attached. Network threads only
enqueue what arrives (:meth:`HilBridge.on_message`); at each tick boundary the bridge drains the
inbox, validates every message (topic, size, JSON, schema version, device, sequence, age,
ranges) and hands valid ones to the device's :class:`~citytwin.hil.twin.Twin`. Every refused
message is answered on the device's ``error`` channel and counted; nothing it carried changes
the city. Then the city steps one tick and the bridge publishes the clock and each device's
inputs. In ``lockstep`` it then waits (up to a deadline) until every lockstep device has
answered this tick; a device that misses it is counted and degrades to its fallback until it
answers in time again.

Every message in and out is written to the device log (:mod:`citytwin.hil.record`) with the
tick it was applied at, so :meth:`HilBridge.replay` repeats a session without devices.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from citytwin.agents.conflict_monitor import MonitorTiming
from citytwin.errors import BridgeError, ScenarioError
from citytwin.hil.clock import Pacer
from citytwin.hil.protocol import (
    ROOT,
    Ack,
    Avail,
    Birth,
    Rejected,
    Topic,
    decode,
    device_filters,
    encode,
    parse_topic,
    topic,
)
from citytwin.hil.record import Record, Recorder
from citytwin.hil.signal_twin import SignalTwin
from citytwin.hil.twin import COMMANDS, DroneTwin, MeterTwin, Twin
from citytwin.model.city import City
from citytwin.scenarios.schema import HilSpec

log = logging.getLogger(__name__)

SIM_ID = "sim"
#: Topic of a bridge decision a replay must repeat (``dir`` ``sim`` in the device log).
MISS_TOPIC = "$sim/lockstep_miss"
#: Most ``error`` replies a device gets per second of sim time; the refusals beyond are still
#: counted (``hil.rejected``) but answered only by the ``suppressed`` count of the next reply,
#: so a flooding device cannot make the simulator flood the broker back.
ERRORS_PER_SECOND = 10
#: Most inbound messages waiting for a tick boundary; beyond, arrivals are dropped and counted
#: (``hil.inbox_dropped``) rather than growing memory without bound under overload.
INBOX_LIMIT = 200_000


class Publisher(Protocol):
    """What the bridge publishes through (an MQTT link, or nothing in a replay)."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                expiry: float | None = None) -> None: ...


class NullPublisher:
    """Publishes nothing (replays)."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                expiry: float | None = None) -> None:
        pass


def hil_detectors(city_network: Any, spec: HilSpec, detector_gap: float
                  ) -> list[tuple[str, str, float]]:
    """The loop detectors signal devices see: one per lane feeding the junction, placed like
    an actuated signal's (``detector_gap`` seconds of driving before the stop line)."""
    net = city_network
    out = []
    for s in spec.signal:
        k = _tls_index(net, s.tls)
        lanes: list[int] = []
        for c in (net.conn_tls == k).nonzero()[0].tolist():
            lane = int(net.conn_from_lane[c])
            if lane not in lanes:
                lanes.append(lane)
        for lane in lanes:
            length = float(net.lane_length[lane])
            pos = max(length - detector_gap * float(net.lane_speed[lane]), 0.1 * length)
            out.append((f"hil.{s.id}.{net.lane_ids[lane]}", net.lane_ids[lane], pos))
    return out


def _tls_index(net: Any, tls_id: str) -> int:
    try:
        return int(net.tls_ids.index(tls_id))
    except ValueError:
        raise ScenarioError(f"hil.signal: no signal controller {tls_id!r} in the network "
                            f"(have: {', '.join(net.tls_ids[:10])}"
                            f"{' ...' if len(net.tls_ids) > 10 else ''})") from None


class HilBridge:
    """Steps a city with devices attached.

    Args:
        city: The city (built with :func:`hil_detectors` among its detectors).
        spec: The scenario's ``[hil]`` table.
        publisher: Where outbound messages go.
        recorder: The device log.
        clock: ``fast``, ``realtime`` or ``lockstep``; default: the spec's.
        factor: Realtime factor; default: the spec's.
        strict: Fail at the first realtime overrun.
        wall: Wall clock (``time.time``) for the device log and deadlines.
    """

    def __init__(self, city: City, spec: HilSpec, publisher: Publisher | None = None,
                 recorder: Recorder | None = None, *, clock: str | None = None,
                 factor: float | None = None, strict: bool = False,
                 wall: Callable[[], float] = time.time) -> None:
        self.city = city
        self.spec = spec
        self.site = spec.site
        self.publisher: Publisher = publisher or NullPublisher()
        self.recorder = recorder or Recorder(None)
        self.mode = clock or spec.clock
        self.pacer = Pacer(self.mode, city.config.dt, factor or spec.factor, strict)
        self._wall = wall
        self.inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue(INBOX_LIMIT)
        self.inbox_dropped = 0  # written by the network thread only
        self.counters: Counter[str] = Counter()
        self._error_window: dict[str, tuple[int, int, int]] = {}  # device: (second, sent, held)
        self.rejected: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self.twins: dict[str, Twin] = {}
        self._commands: dict[str, dict[str, Any]] = {}
        self._schedule = sorted(spec.commands, key=lambda c: c.at)
        self._out_seq: Counter[str] = Counter()
        self._sim_prefix = f"{ROOT}/{self.site}/sim/"
        det_index = {d: k for k, d in enumerate(city.detectors.ids)}
        # a device's answer lands at the next tick boundary unless the clock waits for it
        tolerance = 0.0 if self.mode == "lockstep" else city.config.dt
        for s in spec.signal:
            k = _tls_index(city.network, s.tls)
            dets = [i for d, i in det_index.items() if d.startswith(f"hil.{s.id}.")]
            self._add(SignalTwin(
                s.id, s.lockstep, self._emitter(s.id), city, k, dets,
                MonitorTiming(s.min_green, s.yellow, s.red_clear, tolerance=tolerance),
                s.flash_hold, spec.offline_after, {"max_green": s.max_green,
                                                   "passage": s.passage}))
        for d in spec.drone:
            self._add(DroneTwin(d.id, d.lockstep, self._emitter(d.id), city,
                                (d.home[0], d.home[1])))
        for m in spec.meter:
            self._add(MeterTwin(m.id, m.lockstep, self._emitter(m.id), city, m.building,
                                (m.xy[0], m.xy[1]) if m.xy else None, m.stale_after))
        for k, c in enumerate(self._schedule):
            kind = self.twins[c.device].kind
            need = COMMANDS[kind].get(c.name)
            if need is None:
                raise ScenarioError(f"hil.commands[{k}]: a {kind} takes "
                                    f"{', '.join(COMMANDS[kind]) or 'no commands'}, "
                                    f"not {c.name!r}")
            missing = [a for a in need if a not in c.args]
            if missing:
                raise ScenarioError(f"hil.commands[{k}]: {c.name} needs {', '.join(missing)}")

    def _add(self, twin: Twin) -> None:
        self.twins[twin.device_id] = twin

    # -- topics -------------------------------------------------------------------------------
    def subscriptions(self) -> list[tuple[str, int]]:
        """What the bridge's MQTT link subscribes to."""
        return [(f, 1) for f in device_filters(self.site)]

    def will(self) -> tuple[str, bytes, int, bool]:
        """The simulator's last will: retained ``offline`` availability."""
        return (topic(self.site, "sim", SIM_ID, "avail"), encode({"status": "offline"}), 1,
                True)

    def on_message(self, topic_: str, payload: bytes, wall: float) -> None:
        """Network-thread entry point: only enqueues (drops and counts when the inbox is
        full)."""
        try:
            self.inbox.put_nowait((topic_, payload, wall))
        except queue.Full:
            self.inbox_dropped += 1

    # -- running ------------------------------------------------------------------------------
    def start(self) -> None:
        """Announce the simulator and publish every device's retained config."""
        self._publish(topic(self.site, "sim", SIM_ID, "avail"), {"status": "online"}, 1, True)
        for twin in self.twins.values():
            cfg = twin.config()
            if cfg is not None:
                self._publish(topic(self.site, twin.kind, twin.device_id, "config"), cfg, 1,
                              True)

    def wait_for_devices(self, timeout: float) -> list[str]:
        """Take in messages until every device is online or ``timeout`` wall seconds passed;
        returns the ids still missing."""
        end = time.monotonic() + timeout
        while True:
            missing = [d for d, tw in self.twins.items() if not tw.online]
            left = end - time.monotonic()
            if not missing or left <= 0:
                return missing
            self._take(block=min(left, 0.05))

    def run(self, n_ticks: int, stop_when_done: bool = False,
            callback: Callable[[float], None] | None = None) -> int:
        """Run up to ``n_ticks`` ticks with devices; returns the ticks run."""
        city = self.city
        if city.tick == 0 and not self.counters["ticks"]:
            self._publish_tick()
        self.pacer.start(city.tick)
        ran = 0
        t0 = time.perf_counter()
        try:
            while ran < n_ticks and not (stop_when_done and city.finished):
                self._wait_lockstep()
                self._drain()
                self._boundary()
                city.step()
                ran += 1
                self.counters["ticks"] += 1
                self._publish_tick()
                self.pacer.pace(city.tick)
                if callback is not None:
                    callback(city.sim_time)
        finally:
            self.counters["wall_us"] += int((time.perf_counter() - t0) * 1e6)
        return ran

    def replay(self, records: Iterable[Record], n_ticks: int,
               callback: Callable[[float], None] | None = None) -> int:
        """Run ``n_ticks`` ticks applying recorded inbound messages at their ticks."""
        city = self.city
        pending = [r for r in records if r.dir in ("in", "sim")]
        pending.sort(key=lambda r: r.tick)  # stable: keeps the applied order within a tick
        k = 0
        for _ in range(n_ticks):
            while k < len(pending) and pending[k].tick <= city.tick:
                r = pending[k]
                k += 1
                if r.dir == "sim":
                    self._sim_decision(r.topic, r.payload.decode())
                else:
                    self._handle(r.topic, r.payload, r.wall)
            self._boundary()
            city.step()
            self.counters["ticks"] += 1
            self._publish_tick()
            if callback is not None:
                callback(city.sim_time)
        return n_ticks

    def close(self) -> None:
        """Say the simulator is gone (retained) and close the device log."""
        self._publish(topic(self.site, "sim", SIM_ID, "avail"), {"status": "offline"}, 1, True)
        self.recorder.close()

    # -- tick boundary ------------------------------------------------------------------------
    def _boundary(self) -> None:
        t = self.city.sim_time
        for twin in self.twins.values():
            try:
                twin.before_step(t)
            except Rejected as r:
                self._reject(twin.kind, twin.device_id, r, "state", None)
        while self._schedule and self._schedule[0].at <= t + 1e-9:
            c = self._schedule.pop(0)
            self.send_command(c.device, c.name, dict(c.args), c.valid_for)

    def _publish_tick(self) -> None:
        city = self.city
        self._publish(topic(self.site, "sim", SIM_ID, "clock"),
                      {"tick": city.tick, "t": city.sim_time, "dt": city.config.dt,
                       "mode": self.mode}, 0, False)
        for twin in self.twins.values():
            for channel, payload, retain in twin.outputs(city, city.tick, city.sim_time):
                self._to_device(twin.kind, twin.device_id, channel, payload, retain)

    def _wait_lockstep(self) -> None:
        if self.mode != "lockstep":
            return
        tick = self.city.tick
        end = time.monotonic() + self.spec.lockstep_deadline
        while True:
            late = [tw for tw in self.twins.values() if tw.waiting and tw.answered_tick < tick]
            if not late:
                return
            left = end - time.monotonic()
            if left <= 0:
                break
            self._take(block=left)
        for tw in late:
            self.recorder.write(tick, self._wall(), "sim", MISS_TOPIC, tw.device_id.encode())
            self._sim_decision(MISS_TOPIC, tw.device_id)

    def _sim_decision(self, what: str, device_id: str) -> None:
        tw = self.twins.get(device_id)
        if what == MISS_TOPIC and tw is not None:
            self.counters["lockstep_misses"] += 1
            tw.waiting = False
            tw.emit("lockstep_miss", f"no answer for tick {self.city.tick} within "
                                     f"{self.spec.lockstep_deadline:g} s")
            tw.fallback(self.city.sim_time, "missed the lockstep deadline")

    def _take(self, block: float) -> None:
        try:
            item = self.inbox.get(timeout=block)
        except queue.Empty:
            return
        self._apply(*item)

    def _drain(self) -> None:
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._apply(*item)

    def _apply(self, topic_: str, payload: bytes, wall: float) -> None:
        self.recorder.write(self.city.tick, wall, "in", topic_, payload)
        self._handle(topic_, payload, wall)

    # -- validation -----------------------------------------------------------------------------
    def _handle(self, topic_: str, payload: bytes, wall: float) -> None:
        if topic_.startswith(self._sim_prefix):
            return  # a simulator's own availability (ours, retained)
        self.counters["messages_in"] += 1
        try:
            t = parse_topic(topic_)
        except Rejected as r:
            self._count_reject(r, topic_)
            return
        if t.site != self.site:
            self._count_reject(Rejected("bad_topic", f"site {t.site!r}"), topic_)
            return
        if t.channel == "avail" and not payload:
            return  # a retained availability being cleared
        seq = None
        try:
            msg = decode(t, payload)
            seq = getattr(msg, "seq", None)
            twin = self.twins.get(t.device)
            if twin is None or twin.kind != t.kind:
                raise Rejected("unknown_device", f"no {t.kind} {t.device!r} in this scenario "
                               f"(devices: {', '.join(self.twins) or 'none'})")
            self._dispatch(twin, t, msg)
        except Rejected as r:
            self._reject(t.kind, t.device, r, t.channel, seq)

    def _dispatch(self, twin: Twin, t: Topic, msg: Any) -> None:
        now = self.city.sim_time
        if isinstance(msg, Avail):
            twin.avail = msg.status
            if msg.status == "offline":
                twin.on_offline(now, "it said offline (or its last will)")
            return
        if isinstance(msg, Birth):
            if msg.kind != twin.kind:
                raise Rejected("unknown_device", f"{twin.device_id!r} is a {twin.kind}, its "
                               f"birth says {msg.kind}")
            if twin.avail == "offline":
                # the retained birth of an earlier session whose device has gone: a live
                # device says online before its birth
                self.counters["births_ignored"] += 1
                log.info("%s: birth ignored, its availability says offline", twin.device_id)
                return
            self.counters["births"] += 1
            twin.on_birth(msg, now)
            return
        if not twin.online:
            raise Rejected("not_online", "publish a birth message first")
        if msg.seq <= twin.last_seq:
            raise Rejected("out_of_order", f"seq {msg.seq} after {twin.last_seq}")
        if isinstance(msg, Ack):
            self._on_ack(twin, msg)
            twin.last_seq = msg.seq
            return
        tick = self.city.tick
        if msg.tick is not None:
            if msg.tick > tick:
                raise Rejected("out_of_range", f"tick {msg.tick} is in the future (now {tick})")
            if msg.tick < tick - self.spec.stale_ticks:
                raise Rejected("stale", f"tick {msg.tick} is more than "
                               f"{self.spec.stale_ticks} ticks old (now {tick})")
        twin.on_state(msg, now)
        twin.last_seq = msg.seq
        twin.last_state_t = now
        self.counters["states_applied"] += 1
        if msg.tick is not None:
            twin.answered_tick = max(twin.answered_tick, msg.tick)
            if msg.tick == tick and twin.stepping and twin.online and not twin.waiting:
                twin.waiting = self.mode == "lockstep"

    def _reject(self, kind: str, device: str, r: Rejected, channel: str,
                seq: int | None) -> None:
        self._count_reject(r, f"{kind}/{device}/{channel}")
        if kind not in COMMANDS:
            return
        second = int(self.city.sim_time)
        key = f"{kind}/{device}"
        at, sent, held = self._error_window.get(key, (second, 0, 0))
        if at != second:
            at, sent = second, 0
        if sent >= ERRORS_PER_SECOND:
            self._error_window[key] = (at, sent, held + 1)
            self.counters["errors_suppressed"] += 1
            return
        reply: dict[str, Any] = {"code": r.code, "detail": r.detail,
                                 "ref": {"channel": channel, "seq": seq}}
        if held:
            reply["suppressed"] = held
        self._error_window[key] = (at, sent + 1, 0)
        self._to_device(kind, device, "error", reply)

    def _count_reject(self, r: Rejected, where: str) -> None:
        self.rejected[r.code] += 1
        log.info("rejected %s: %s", where, r)

    # -- commands -------------------------------------------------------------------------------
    def send_command(self, device_id: str, name: str, args: dict[str, Any],
                     valid_for: float = 30.0) -> str:
        """Send a command to a device; returns its id. Its acks update
        :meth:`command_status`."""
        twin = self.twins[device_id]
        cmd_id = f"c{len(self._commands) + 1}"
        t = self.city.sim_time
        self._commands[cmd_id] = {"device": device_id, "name": name, "args": args,
                                  "status": "sent", "t": t}
        self.counters["commands_sent"] += 1
        expiry = valid_for / self.pacer.factor if self.mode == "realtime" else valid_for
        self._to_device(twin.kind, device_id, "cmd",
                        {"id": cmd_id, "name": name, "args": args, "t": t,
                         "valid_until": t + valid_for}, expiry=expiry)
        return cmd_id

    def command_status(self, cmd_id: str) -> str:
        """``sent``, ``accepted``, ``done`` or ``rejected``."""
        return str(self._commands[cmd_id]["status"])

    def _on_ack(self, twin: Twin, msg: Ack) -> None:
        cmd = self._commands.get(msg.cmd_id)
        if cmd is None or cmd["device"] != twin.device_id:
            raise Rejected("unknown_command", f"no command {msg.cmd_id!r} was sent to "
                           f"{twin.device_id!r}")
        order = {"sent": 0, "accepted": 1, "rejected": 2, "done": 2}
        if order[msg.status] <= order[cmd["status"]]:
            self.counters["duplicate_acks"] += 1
            return
        cmd["status"] = msg.status
        self.counters[f"commands_{msg.status}"] += 1
        if msg.status == "rejected":
            twin.emit("command_rejected", f"{msg.cmd_id} {cmd['name']}: {msg.reason}")
        if isinstance(twin, MeterTwin) and msg.status == "done" and cmd["name"] == "curtail":
            twin.building.limit_w = cmd["args"]["limit_w"]

    # -- publishing -----------------------------------------------------------------------------
    def _to_device(self, kind: str, device_id: str, channel: str, payload: dict[str, Any],
                   retain: bool = False, expiry: float | None = None) -> None:
        key = f"{kind}/{device_id}/{channel}"
        self._out_seq[key] += 1
        self._publish(topic(self.site, kind, device_id, channel),
                      {"seq": self._out_seq[key], **payload},
                      0 if channel == "input" else 1, retain, expiry)

    def _publish(self, topic_: str, payload: dict[str, Any], qos: int, retain: bool,
                 expiry: float | None = None) -> None:
        data = encode(payload)
        self.recorder.write(self.city.tick, self._wall(), "out", topic_, data)
        self.counters["messages_out"] += 1
        try:
            self.publisher.publish(topic_, data, qos, retain, expiry)
        except BridgeError as exc:  # the broker's backlog: count it, never stop the city
            self.counters["publish_failed"] += 1
            if self.counters["publish_failed"] in (1, 10, 100, 1000) or \
                    self.counters["publish_failed"] % 10000 == 0:
                log.warning("publishing failed %d times so far, last: %s",
                            self.counters["publish_failed"], exc)

    def _emitter(self, device_id: str) -> Callable[[str, str], None]:
        def emit(kind: str, detail: str) -> None:
            event = {"tick": self.city.tick, "t": self.city.sim_time, "device": device_id,
                     "kind": kind, "detail": detail}
            self.events.append(event)
            self.counters[f"event_{kind}"] += 1
            log.info("%s %s: %s", device_id, kind, detail)
            self._publish(topic(self.site, "sim", SIM_ID, "event"), event, 1, False)
        return emit

    # -- figures --------------------------------------------------------------------------------
    def kpis(self) -> dict[str, Any]:
        """The ``hil`` figures of ``kpis.json``."""
        c = self.counters
        signals = [tw for tw in self.twins.values() if isinstance(tw, SignalTwin)]
        meters = [tw for tw in self.twins.values() if isinstance(tw, MeterTwin)]
        return {
            "clock": self.mode,
            "devices_configured": len(self.twins),
            "devices_seen": sum(1 for tw in self.twins.values() if tw.births),
            "devices_online_end": sum(1 for tw in self.twins.values() if tw.online),
            "births_ignored": c["births_ignored"],
            "messages_in": c["messages_in"],
            "messages_out": c["messages_out"],
            "rejected": sum(self.rejected.values()),
            "rejected_by_code": dict(sorted(self.rejected.items())),
            "errors_suppressed": c["errors_suppressed"],
            "inbox_dropped": self.inbox_dropped,
            "publish_failed": c["publish_failed"],
            "commands_sent": c["commands_sent"],
            "commands_acked": c["commands_accepted"] + c["commands_rejected"],
            "commands_done": c["commands_done"],
            "commands_rejected": c["commands_rejected"],
            "overruns": self.pacer.overruns,
            "lockstep_misses": c["lockstep_misses"],
            "fallbacks": sum(tw.fallbacks for tw in signals),
            "conflict_flashes": sum(tw.violations for tw in signals),
            "stale_readings": sum(tw.stale_events for tw in meters),
            "building_load_w": sum(tw.building.load_w for tw in meters),
            "ticks": c["ticks"],
            "wall_seconds": c["wall_us"] / 1e6,
            "ticks_per_second": (c["ticks"] / (c["wall_us"] / 1e6)) if c["wall_us"]
            else math.nan,
        }

