"""The serial gateway: each device on a serial line becomes an MQTT device of the contract.

:class:`SerialGateway` serves one port. The port's reader thread and the MQTT network thread
only enqueue; one loop thread takes their items in order, drives the
:class:`~citytwin.firmware_bridge.line.LineSession`, and writes to the port and publishes.

How a device on the line maps onto ``docs/hil-protocol.md``:

* Its ``HELLO`` opens **one MQTT client for that device** (client id
  ``citytwin-serial-{site}-{kind}-{id}``) whose last will is the device's retained ``avail``
  offline, so the broker announces it gone even if the gateway dies. On every (re)connect the
  client publishes ``avail`` online and a ``birth`` built from the ``HELLO`` (both retained,
  QoS 1) and subscribes to the device's ``config``, ``input``, ``cmd``, ``error`` and the
  site's simulator ``clock`` and ``avail``.
* Device to simulator: ``HEADS`` and ``MESSAGE`` ``state`` become ``state``, ``MESSAGE``
  ``ack`` becomes ``ack``; the gateway adds ``v`` and a ``seq`` that increases through the
  device's session (a re-``birth`` restarts the simulator's count, so it never has to go
  back to 0).
* Simulator to device: ``config``, ``cmd``, ``error`` and inputs without ``calls`` travel as
  ``MESSAGE`` parts (the JSON unchanged); a signal ``input`` becomes ``CALLS``, the sim
  ``clock`` becomes ``CLOCK``, the sim ``avail`` becomes ``SIM_AVAIL``. The retained config is
  kept and given to the device again after every new ``HELLO`` (a rebooted board forgot it).
* The device is **offline at once** (retained ``avail`` offline, then a clean disconnect) when
  the port fails or disappears, when it says ``BYE``, when it misses its heartbeats, or when
  another device says ``HELLO`` on the line. The gateway then reopens the port with a doubling
  backoff (``retry_first`` up to ``retry_cap`` seconds) and asks for a fresh ``HELLO``.

So the simulator cannot tell a serial device from a native MQTT one.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from citytwin.errors import BridgeError
from citytwin.firmware_bridge.frames import MODES, Calls, Channel, Clock, Hello
from citytwin.firmware_bridge.line import Event, Inbound, LineOptions, LineSession, Offline, Online
from citytwin.firmware_bridge.port import PortError, PortLost, PortReader, open_port, write_all
from citytwin.hil.broker import BrokerURL
from citytwin.hil.protocol import ROOT, encode, topic, valid_name
from citytwin.hil.transport import MqttLink

__all__ = ["GatewayOptions", "SerialGateway"]

_log = logging.getLogger(__name__)
_TO_DEVICE = {"config": Channel.CONFIG, "cmd": Channel.CMD, "error": Channel.ERROR,
              "input": Channel.INPUT}


@dataclass(frozen=True)
class GatewayOptions:
    """How a :class:`SerialGateway` runs.

    Attributes:
        site: The site id of the MQTT topics.
        baudrate: Serial speed (ignored by ``socket://`` and ``loop://``).
        retry_first: Seconds before the first attempt to reopen a failed port.
        retry_cap: Longest wait between attempts (the wait doubles up to it).
        connect_timeout: Seconds to wait for the broker when a device says HELLO; on failure
            the gateway tries again every ``retry_cap`` seconds while the device is there.
        keepalive: MQTT keepalive of the device clients, seconds.
        line: Timing and limits of the serial protocol.
    """

    site: str = "lab"
    baudrate: int = 115200
    retry_first: float = 0.1
    retry_cap: float = 5.0
    connect_timeout: float = 2.0
    keepalive: int = 5
    line: LineOptions = field(default_factory=LineOptions)

    def __post_init__(self) -> None:
        if not valid_name(self.site):
            raise BridgeError(f"bad site {self.site!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        if not (0 < self.retry_first <= self.retry_cap and self.connect_timeout > 0
                and self.baudrate > 0 and self.keepalive >= 1):
            raise BridgeError(f"GatewayOptions out of range: {self}")


class _Device:
    """A device in session and its MQTT client."""

    def __init__(self, hello: Hello, token: int) -> None:
        self.hello = hello
        self.token = token
        self.link: MqttLink | None = None
        self.retry_at = 0.0
        self.seq = 0
        self.config: bytes | None = None
        self.sim_online: bool | None = None


class SerialGateway:
    """Bridges the devices on one serial port to an MQTT broker.

    Args:
        port: A device path or pyserial URL.
        broker: The MQTT broker.
        options: Site, retry and timing options.
        clock: Monotonic clock, seconds (injected for tests).
    """

    def __init__(self, port: str, broker: BrokerURL, options: GatewayOptions | None = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.port_url = port
        self.broker = broker
        self.options = options or GatewayOptions()
        self.session = LineSession(self.options.line)
        #: Port openings, failures, MQTT messages in and out, drops.
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._inbox: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self._tokens = itertools.count(1)
        self._port: Any = None
        self._reader: PortReader | None = None
        self._reader_token = 0
        self._device: _Device | None = None
        self._retry_at = 0.0
        self._backoff = self.options.retry_first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- views --------------------------------------------------------------------------------
    @property
    def port_open(self) -> bool:
        """Whether the serial port is open now."""
        return self._port is not None

    @property
    def device(self) -> Hello | None:
        """The device in session on the line, if any."""
        return self._device.hello if self._device is not None else None

    @property
    def online(self) -> bool:
        """Whether a device is in session and its MQTT client is connected."""
        dev = self._device
        return dev is not None and dev.link is not None and dev.link.connected

    # -- running ------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the gateway on a background thread (stop it with :meth:`stop`).

        Raises:
            BridgeError: The port URL is invalid.
        """
        if self._thread is not None:
            raise BridgeError("SerialGateway.start: already started")
        self._check_url()
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"gateway {self.port_url}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop: the device goes offline, its client disconnects, the port closes."""
        self._stop.set()
        self._inbox.put_nowait((None, None))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self) -> None:
        """Serve the port until :meth:`stop` (blocking)."""
        _log.info("bridging serial port %s to %s (site %s)", self.port_url, self.broker,
                  self.options.site)
        try:
            while not self._stop.is_set():
                self._once()
        finally:
            self._shutdown()

    def _check_url(self) -> None:
        try:
            port = open_port(self.port_url, self.options.baudrate)
        except PortError:
            return  # a missing port is fine: it is retried
        self._attach(port)

    def _once(self) -> None:
        now = self._clock()
        if self._port is None and now >= self._retry_at:
            self._try_open(now)
        dev = self._device
        if dev is not None and dev.link is None and now >= dev.retry_at:
            self._connect(dev)
        deadline = self.session.next_deadline() if self._port is not None else self._retry_at
        if dev is not None and dev.link is None:
            deadline = min(deadline, dev.retry_at)
        try:
            item = self._inbox.get(timeout=min(0.5, max(0.0, deadline - self._clock())))
        except queue.Empty:
            item = None
        now = self._clock()
        events: list[Event] = []
        while item is not None:
            events += self._take(item, now)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                item = None
        events += self.session.poll(now)
        self._flush(events, now)

    def _flush(self, events: list[Event], now: float) -> None:
        for event in events:
            self._event(event, now)
        data = self.session.take_output()
        if data and self._port is not None:
            try:
                write_all(self._port, data)
            except PortError as exc:
                for event in self._lost(str(exc), now):
                    self._event(event, now)

    def _take(self, item: tuple[Any, Any], now: float) -> list[Event]:
        token, value = item
        if token is None:
            return []
        if isinstance(token, tuple):  # from a device's MQTT client
            dev = self._device
            if dev is not None and token[0] == dev.token:
                self._from_mqtt(dev, token[1], value)
            return []
        if token != self._reader_token:
            return []  # a previous port's reader
        if isinstance(value, PortLost):
            return self._lost(value.reason, now)
        return self.session.receive(value, now)

    # -- the port -----------------------------------------------------------------------------
    def _try_open(self, now: float) -> None:
        try:
            port = open_port(self.port_url, self.options.baudrate)
        except PortError as exc:
            self.counters["open_failures"] += 1
            if self.counters["open_failures"] == 1 or self._backoff >= self.options.retry_cap:
                _log.warning("%s; retrying every %g s at most", exc, self.options.retry_cap)
            self._retry_at = now + self._backoff
            self._backoff = min(2 * self._backoff, self.options.retry_cap)
            return
        self._attach(port)

    def _attach(self, port: Any) -> None:
        self._port = port
        self._reader_token = next(self._tokens)
        self._reader = PortReader(port, self._inbox, self._reader_token)
        self._reader.start()
        self.counters["port_opened"] += 1
        self._backoff = self.options.retry_first
        self.session.opened(self._clock())
        _log.info("serial port %s open", self.port_url)

    def _lost(self, reason: str, now: float) -> list[Event]:
        self.counters["port_lost"] += 1
        _log.warning("serial port %s lost: %s", self.port_url, reason)
        self._close_port()
        self._retry_at = now + self._backoff
        self._backoff = min(2 * self._backoff, self.options.retry_cap)
        return self.session.closed(reason)

    def _close_port(self) -> None:
        reader, port = self._reader, self._port
        self._reader, self._port, self._reader_token = None, None, 0
        if reader is not None:
            reader.stop()
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # closing a failed port may fail in many ways
                _log.debug("closing %s: %s", self.port_url, exc)

    # -- devices ------------------------------------------------------------------------------
    def _event(self, event: Event, now: float) -> None:
        if isinstance(event, Online):
            self._online(event.hello, now)
        elif isinstance(event, Offline):
            self._offline(event.reason)
        elif isinstance(event, Inbound):
            self._to_mqtt(event)

    def _online(self, hello: Hello, now: float) -> None:
        dev = self._device
        if dev is not None and (dev.hello.kind, dev.hello.device_id) != (hello.kind,
                                                                         hello.device_id):
            self._offline(f"another device ({hello.kind}/{hello.device_id}) took the line")
            dev = None
        if dev is not None:  # the same device again: a new session, a new birth
            dev.hello = hello
            if dev.link is not None:
                self._birth(dev)
            if dev.config is not None:
                self.session.send_message(Channel.CONFIG, dev.config)
            if dev.sim_online is not None:
                self.session.send_sim_avail(dev.sim_online)
            return
        self._device = _Device(hello, next(self._tokens))
        self._connect(self._device)

    def _connect(self, dev: _Device) -> None:
        hello, site = dev.hello, self.options.site
        base = (site, hello.kind, hello.device_id)
        subs = [(topic(*base, ch), 1) for ch in ("config", "input", "cmd", "error")]
        subs += [(f"{ROOT}/{site}/sim/+/{ch}", 1) for ch in ("clock", "avail")]
        token = dev.token
        link = MqttLink(
            self.broker, f"citytwin-serial-{site}-{hello.kind}-{hello.device_id}", subs,
            lambda t, p, _w: self._inbox.put_nowait(((token, t), p)),
            will=(topic(*base, "avail"), encode({"status": "offline"}), 1, True),
            keepalive=self.options.keepalive, on_connect=lambda: self._birth(dev))
        dev.link = link  # before start(): its on_connect hook publishes the birth
        try:
            link.start(self.options.connect_timeout)
        except BridgeError as exc:
            dev.link = None
            self.counters["mqtt_failures"] += 1
            dev.retry_at = self._clock() + self.options.retry_cap
            _log.error("%s/%s: %s; retrying in %g s", hello.kind, hello.device_id, exc,
                       self.options.retry_cap)
            return
        _log.info("%s/%s online on %s", hello.kind, hello.device_id, self.port_url)

    def _birth(self, dev: _Device) -> None:
        """Publish avail online and the birth (on paho's network thread at a reconnect)."""
        hello, link = dev.hello, dev.link
        if link is None:
            return
        site = self.options.site
        try:
            link.publish(topic(site, hello.kind, hello.device_id, "avail"),
                         encode({"status": "online"}), 1, True)
            link.publish(topic(site, hello.kind, hello.device_id, "birth"),
                         encode(hello.birth()), 1, True)
        except BridgeError as exc:
            _log.error("%s/%s: birth not published: %s", hello.kind, hello.device_id, exc)

    def _offline(self, reason: str) -> None:
        dev, self._device = self._device, None
        if dev is None:
            return
        hello, link = dev.hello, dev.link
        _log.info("%s/%s offline: %s", hello.kind, hello.device_id, reason)
        self.counters["offline"] += 1
        if link is None:
            return
        try:
            link.publish(topic(self.options.site, hello.kind, hello.device_id, "avail"),
                         encode({"status": "offline"}), 1, True, wait=1.0)
        except BridgeError as exc:  # the link is down: the broker fires the will instead
            _log.warning("%s/%s: offline not confirmed: %s", hello.kind, hello.device_id, exc)
        link.stop()

    def _to_mqtt(self, event: Inbound) -> None:
        dev = self._device
        if dev is None or dev.link is None:
            self.counters["dropped_no_mqtt"] += 1
            return
        payload = {k: v for k, v in event.payload.items() if k not in ("v", "seq")}
        payload["seq"] = dev.seq
        dev.seq += 1
        qos = 1 if event.channel == "ack" or dev.hello.lockstep else 0
        try:
            dev.link.publish(topic(self.options.site, dev.hello.kind, dev.hello.device_id,
                                   event.channel), encode(payload), qos)
        except BridgeError as exc:
            self.counters["publish_failures"] += 1
            _log.warning("%s/%s: %s", dev.hello.kind, dev.hello.device_id, exc)
            return
        self.counters["mqtt_out"] += 1

    def _from_mqtt(self, dev: _Device, topic_: str, payload: bytes) -> None:
        if not payload:
            return  # a retained message being cleared
        self.counters["mqtt_in"] += 1
        parts = topic_.split("/")
        channel = parts[-1]
        try:
            if parts[3] == "sim":
                data = json.loads(payload)
                if channel == "clock":
                    mode = data.get("mode")
                    self.session.send_clock(Clock(int(data["tick"]), float(data["t"]),
                                                  float(data.get("dt", 0.0)),
                                                  mode if mode in MODES else "fast"))
                elif channel == "avail":
                    dev.sim_online = data.get("status") == "online"
                    self.session.send_sim_avail(dev.sim_online)
                return
            if channel == "config":
                dev.config = payload
            elif channel == "input":
                data = json.loads(payload)
                calls = data.get("calls")
                if isinstance(calls, list) and math.isfinite(float(data["t"])):
                    self.session.send_calls(Calls(int(data["tick"]), float(data["t"]),
                                                  tuple(bool(c) for c in calls)))
                    return
            self.session.send_message(_TO_DEVICE[channel], payload)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.counters["mqtt_unusable"] += 1
            _log.warning("%s: unusable message on %s: %s", self.port_url, topic_, exc)

    def _shutdown(self) -> None:
        self._close_port()
        for event in self.session.closed("the gateway stopped"):
            self._event(event, self._clock())
        self._offline("the gateway stopped")  # a device whose MQTT client never came up
