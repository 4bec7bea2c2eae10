"""The serial gateway: the device on a serial line becomes an MQTT device of the contract.

:class:`SerialGateway` serves one port. The port's reader thread, the device's MQTT network
thread and the thread that brings its MQTT client up only enqueue; one loop thread takes
their items in order, drives the :class:`~citytwin.firmware_bridge.line.LineSession`, writes
to the port and publishes. No step of the loop waits on the broker for long: the MQTT client
is started on a helper thread, so the serial line keeps its heartbeats while a broker is slow
or down.

The device's ``HELLO`` opens **one MQTT client for that device**
(:class:`~citytwin.firmware_bridge.device_client.DeviceClient`; :mod:`.mapping` says what it
publishes and how messages map onto frames). The device is **offline at once** (``avail``
offline, retained) when the port fails or disappears, on ``BYE``, when it misses its
heartbeats, or when another device says ``HELLO`` on the line. A lost port is reopened with
a doubling backoff (``retry_first`` up to ``retry_cap`` seconds, reset when a device says
``HELLO``) and asked for a fresh ``HELLO``. The retained ``config`` is kept and given to the
device again after every new ``HELLO`` (a rebooted board forgot it).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from citytwin.errors import BridgeError, SerialLinkError
from citytwin.firmware_bridge import mapping
from citytwin.firmware_bridge.device_client import DeviceClient
from citytwin.firmware_bridge.frames import Calls, Channel, Clock, Hello
from citytwin.firmware_bridge.line import Event, Inbound, LineOptions, LineSession, Offline, Online
from citytwin.firmware_bridge.port import PortLost, PortReader, open_port, write_all
from citytwin.hil.broker import BrokerURL
from citytwin.hil.protocol import valid_name
from citytwin.hil.transport import MqttLink

__all__ = ["Backoff", "GatewayOptions", "SerialGateway"]

_log = logging.getLogger(__name__)
#: ``(source, token, value)``: ``port`` (bytes or PortLost), ``mqtt`` ((topic, payload)),
#: ``link`` (a started MqttLink or the BridgeError of its start), ``stop``.
_Item = tuple[str, int, Any]


@dataclass(frozen=True)
class GatewayOptions:
    """How a :class:`SerialGateway` runs.

    Attributes:
        site: The site id of the MQTT topics.
        baudrate: Serial speed (ignored by ``socket://`` and ``loop://``).
        retry_first: Seconds before the first attempt to reopen a failed port.
        retry_cap: Longest wait between attempts (the wait doubles up to it); also the wait
            before trying the broker again after it refused or did not answer.
        connect_timeout: Seconds the broker has to accept a device's client.
        keepalive: MQTT keepalive of the device clients, seconds.
        line: Timing and limits of the serial protocol.
    """

    site: str = "lab"
    baudrate: int = 115200
    retry_first: float = 0.1
    retry_cap: float = 5.0
    connect_timeout: float = 3.0
    keepalive: int = 5
    line: LineOptions = field(default_factory=LineOptions)

    def __post_init__(self) -> None:
        if not valid_name(self.site):
            raise BridgeError(f"bad site {self.site!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        if not (0 < self.retry_first <= self.retry_cap and self.connect_timeout > 0
                and self.baudrate > 0 and self.keepalive >= 1):
            raise BridgeError(f"GatewayOptions out of range: {self}")


class Backoff:
    """Doubling waits: ``first``, ``2*first``, ... up to ``cap``; :meth:`reset` starts over."""

    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap = first, cap
        self._wait = first

    def next(self) -> float:
        """The wait before the next attempt."""
        wait = self._wait
        self._wait = min(2 * wait, self.cap)
        return wait

    def reset(self) -> None:
        """The next wait is ``first`` again."""
        self._wait = self.first


class SerialGateway:
    """Bridges the device on one serial port to an MQTT broker.

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
        self.options = opts = options or GatewayOptions()
        self.session = LineSession(opts.line)
        #: Port openings and losses, MQTT messages in and out, drops and failures.
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._inbox: queue.Queue[_Item] = queue.Queue()
        self._tokens = itertools.count(1)
        self._port: Any = None
        self._reader: PortReader | None = None
        self._reader_token = 0
        self._device: DeviceClient | None = None
        self._clients: dict[int, DeviceClient] = {}  # the device's, and gone ones starting
        self._retry_at = 0.0
        self._backoff = Backoff(opts.retry_first, opts.retry_cap)
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
        return self._device is not None and self._device.online

    def stats(self) -> dict[str, int]:
        """Every counter: the gateway's, the line's (``line.``) and the framing's
        (``framing.``)."""
        out = dict(self.counters)
        out.update({f"line.{k}": v for k, v in self.session.counters.items()})
        out.update({f"framing.{k}": v for k, v in self.session.decoder.counters.items()})
        return dict(sorted(out.items()))

    # -- running ------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the port (if it is there) and serve it on a background thread until
        :meth:`stop`.

        Raises:
            BridgeError: The port URL is invalid, or the gateway is already running.
        """
        if self._thread is not None:
            raise BridgeError("SerialGateway.start: already started")
        try:
            self._attach(open_port(self.port_url, self.options.baudrate))
        except SerialLinkError as exc:  # a missing port is fine: the loop retries it
            self._port_failed(str(exc), self._clock())
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"gateway {self.port_url}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop: the device goes offline, its client disconnects, the port closes."""
        self._stop.set()
        self._inbox.put_nowait(("stop", 0, None))
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

    def _once(self) -> None:
        now = self._clock()
        if self._port is None and now >= self._retry_at:
            self._try_open(now)
        self._handle(self.session.poll(now), now)  # nothing waits unwritten while we block
        dev = self._device
        idle = dev is not None and dev.link is None and not dev.starting
        if idle and dev is not None and now >= dev.retry_at:
            dev.start()
        deadline = self.session.next_deadline() if self._port is not None else self._retry_at
        if idle and dev is not None:
            deadline = min(deadline, dev.retry_at)
        items: list[_Item] = []
        try:
            items.append(self._inbox.get(timeout=min(0.5, max(0.0, deadline - self._clock()))))
            while True:
                items.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        now = self._clock()
        events: list[Event] = []
        for item in items:
            events += self._take(item, now)
        events += self.session.poll(now)
        self._handle(events, now)

    def _take(self, item: _Item, now: float) -> list[Event]:
        source, token, value = item
        if source == "port":
            if token != self._reader_token:
                return []  # a previous port's reader
            if isinstance(value, PortLost):
                return self._lost(value.reason, now)
            return self.session.receive(value, now)
        if source == "link":
            self._linked(token, value, now)
            return []
        dev = self._device
        if source == "mqtt" and dev is not None and token == dev.token:
            topic, payload = value
            self._from_mqtt(dev, topic, payload, now)
        return []

    def _handle(self, events: list[Event], now: float) -> None:
        """Write what the line wants written (its ACKs first), then act on its events, and
        write again what they added."""
        events = self._write(now) + events
        while events:
            for event in events:
                if isinstance(event, Online):
                    self._online(event.hello, now)
                elif isinstance(event, Offline):
                    self._offline(event.reason)
                elif isinstance(event, Inbound):
                    self._to_mqtt(event)
            events = self._write(now)

    def _write(self, now: float) -> list[Event]:
        data = self.session.take_output()
        if data and self._port is not None:
            try:
                write_all(self._port, data)
            except SerialLinkError as exc:
                return self._lost(str(exc), now)
        return []

    # -- the port -----------------------------------------------------------------------------
    def _try_open(self, now: float) -> None:
        try:
            port = open_port(self.port_url, self.options.baudrate)
        except SerialLinkError as exc:
            self._port_failed(str(exc), now)
            return
        self._attach(port)

    def _port_failed(self, reason: str, now: float) -> None:
        self.counters["open_failures"] += 1
        wait = self._backoff.next()
        if self.counters["open_failures"] == 1 or wait >= self.options.retry_cap:
            _log.warning("%s; retrying in %g s", reason, wait)
        self._retry_at = now + wait

    def _attach(self, port: Any) -> None:
        self._port = port
        self._reader_token = token = next(self._tokens)
        self._reader = PortReader(port, lambda v: self._inbox.put_nowait(("port", token, v)))
        self._reader.start()
        self.counters["port_opened"] += 1
        self.session.opened(self._clock())
        _log.info("serial port %s open", self.port_url)

    def _lost(self, reason: str, now: float) -> list[Event]:
        self.counters["port_lost"] += 1
        _log.warning("serial port %s lost: %s", self.port_url, reason)
        self._close_port()
        self._retry_at = now + self._backoff.next()
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

    # -- the device's MQTT client -------------------------------------------------------------
    def _online(self, hello: Hello, now: float) -> None:
        self._backoff.reset()  # a device answers on this port
        dev = self._device
        if dev is not None and (dev.hello.kind, dev.hello.device_id) != (hello.kind,
                                                                         hello.device_id):
            self._offline(f"another device ({hello.kind}/{hello.device_id}) took the line")
            dev = None
        if dev is None:
            self._device = dev = self._client(hello)
            dev.start()
            return
        dev.hello = hello  # the same device again: a new session, a new birth
        self.counters["rebirths"] += 1
        dev.birth()
        if dev.config is not None:
            self.session.send_message(Channel.CONFIG, dev.config, now)
        if dev.sim_online is not None:
            self.session.send_sim_avail(dev.sim_online, now)

    def _client(self, hello: Hello) -> DeviceClient:
        opts = self.options
        client = DeviceClient(hello, next(self._tokens), self.broker, opts.site, opts.keepalive,
                              opts.connect_timeout, self._inbox.put_nowait)
        self._clients[client.token] = client
        return client

    def _linked(self, token: int, outcome: MqttLink | BridgeError, now: float) -> None:
        client = self._clients.get(token)
        if client is None:
            return
        if isinstance(outcome, BridgeError) and not client.leaving:
            self.counters["mqtt_failures"] += 1
        client.started(outcome, now, self.options.retry_cap)
        if client.leaving:
            del self._clients[token]
        elif client.link is not None:
            _log.info("%s/%s online on %s", client.hello.kind, client.hello.device_id,
                      self.port_url)

    def _offline(self, reason: str) -> None:
        dev, self._device = self._device, None
        if dev is None:
            return
        _log.info("%s/%s offline: %s", dev.hello.kind, dev.hello.device_id, reason)
        self.counters["offline"] += 1
        if dev.close():
            del self._clients[dev.token]

    # -- messages -----------------------------------------------------------------------------
    def _to_mqtt(self, event: Inbound) -> None:
        dev = self._device
        if dev is None or dev.link is None:
            self.counters["dropped_no_mqtt"] += 1
            return
        try:
            dev.publish(event)
        except (BridgeError, ValueError) as exc:
            self.counters["publish_failures"] += 1
            _log.warning("%s/%s: %s not published: %s", dev.hello.kind, dev.hello.device_id,
                         event.channel, exc)
            return
        self.counters["mqtt_out"] += 1

    def _from_mqtt(self, dev: DeviceClient, topic: str, payload: bytes, now: float) -> None:
        self.counters["mqtt_in"] += 1
        try:
            down = mapping.downlink(topic, payload)
        except ValueError as exc:
            self.counters["mqtt_unusable"] += 1
            _log.warning("%s: unusable message on %s: %s", self.port_url, topic, exc)
            return
        line = self.session
        if isinstance(down, Clock):
            line.send_clock(down, now)
        elif isinstance(down, Calls):
            line.send_calls(down, now)
        elif isinstance(down, mapping.SimAvail):
            dev.sim_online = down.online
            line.send_sim_avail(down.online, now)
        elif isinstance(down, mapping.ToDevice):
            if down.channel == Channel.CONFIG:
                dev.config = down.data
            if not line.send_message(down.channel, down.data, now):
                self.counters["not_delivered"] += 1

    def _shutdown(self) -> None:
        self._close_port()
        for event in self.session.closed("the gateway stopped"):
            if isinstance(event, Offline):
                self._offline(event.reason)
        for client in self._clients.values():  # clients of gone devices, still starting
            client.close(wait=True)
        self._clients.clear()
        _log.debug("gateway %s stopped: %s", self.port_url, self.stats())
