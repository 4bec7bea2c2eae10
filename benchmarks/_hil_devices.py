"""Many emulated devices in one process, one MQTT link each: the device side of hil_bench.py.

``citytwin device`` runs one device per process; 100 of those are too heavy for a 2-core
machine, so this host runs the same :class:`~citytwin.hil.emulated.device.Device` classes side
by side. Every device has its own :class:`~citytwin.hil.transport.MqttLink` (own client id,
last will, ``avail`` and ``birth`` on every connect); the links' callbacks only enqueue
``(device, topic, payload)`` on one queue, and the main loop feeds each message to its device's
``handle()`` and publishes the answers on that device's link, as
:class:`~citytwin.hil.emulated.runner.DeviceRunner` does for one.

Meter flood (``"flood": true``): the meters also publish readings at an offered rate set on
stdin, round robin. Each reading is made by the meter itself: the host feeds it a ``clock``
whose ``tick`` is the simulator's latest (heard by one extra link per host, the *shared*
link) and whose ``t`` advances one reporting period per reading, so every call yields a
``state`` with the next ``seq`` and a growing energy register. The meters' own links then do
not subscribe to the simulator's clock (1,000 copies of every clock would load this host, not
the bridge). Readings go out on each meter's own link (``route own``, the default) or all on
the host's shared link, on each meter's own topic (``route shared``: far less CPU per reading
in this host, to find where the bridge, not the load generator, saturates).

Run by hil_bench.py::

    python benchmarks/_hil_devices.py CONFIG.json

``CONFIG.json``: ``{"broker": URL, "site": S, "devices": [[kind, id, lockstep], ...],
"flood": bool, "trace": bool, "nice": N, "result": PATH}``. Prints ``{"ready": n}`` once
every link is up. Stdin commands: ``rate R`` (readings/s offered by this host; ``inf``: as
fast as it can), ``route own|shared``, ``stats`` (prints ``{"sent": n, "t": monotonic}``),
``stop``. On exit (``stop``, SIGTERM or stdin closed) every device says ``offline``, the
links disconnect and the result file gets the counters and, with ``trace``, the monotonic time
each ``state`` and ``ack`` was published (``[device, channel, seq, time, tick or
"cmd_id:status"]``).

A process holds at most about 330 links: paho's network loop uses ``select()``, which takes
no file descriptor above 1023, and each link needs three (its socket and a wake-up pair).
"""

from __future__ import annotations

import functools
import json
import math
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from citytwin.hil.broker import BrokerURL
from citytwin.hil.emulated.device import Device, Outbound
from citytwin.hil.emulated.runner import DeviceOptions, build_device
from citytwin.hil.protocol import ROOT, encode
from citytwin.hil.transport import MqttLink

_CONNECTED = None  # topic of the marker an on_connect hook enqueues
_POLL_EVERY = 0.25  # s between runs of the devices' wall-clock timers


class DeviceHost:
    """Devices, one link each, served by one loop.

    Args:
        url: The broker.
        site: The site id.
        devices: The device logic, one per link.
        flood: Meters publish readings at :attr:`rate` (see the module docstring).
        trace: Record the monotonic time of every ``state``/``ack`` publication.
    """

    def __init__(self, url: BrokerURL, site: str, devices: list[Device], *, flood: bool = False,
                 trace: bool = False) -> None:
        self.devices = devices
        self.site = site
        self.flood = flood
        self.rate = 0.0
        self.shared = False  # flood readings go out on the shared link
        self.sent = 0
        self.trace: list[tuple[str, str, int, float, str]] | None = [] if trace else None
        self.counters: Counter[str] = Counter()
        self.stop_event = threading.Event()
        self.tick: int | None = None  # the simulator's latest clock tick (flood only)
        self._inbox: queue.SimpleQueue[tuple[int, str | None, bytes]] = queue.SimpleQueue()
        self._rate_lock = threading.Lock()
        self._flood_t = [0.0] * len(devices)  # each meter's own time of its last reading
        self.links: list[MqttLink] = []
        for i, d in enumerate(devices):
            will = d.will()
            subs = d.subscriptions()
            if flood:
                subs = [s for s in subs if not s[0].endswith("/clock")]
            self.links.append(MqttLink(
                url, f"bench-{site}-{d.kind}-{d.device_id}", subs,
                functools.partial(self._enqueue, i),
                will=(d.topic(will.channel), encode(will.payload), will.qos, will.retain),
                on_connect=functools.partial(self._inbox.put, (i, _CONNECTED, b""))))
        self.shared_link = (MqttLink(url, f"bench-{site}-shared-{id(self):x}",
                                     [(f"{ROOT}/{site}/sim/+/clock", 0)], self._on_clock)
                            if flood else None)

    # -- network threads: enqueue only ------------------------------------------------------
    def _enqueue(self, i: int, topic: str, payload: bytes, received: float) -> None:
        self._inbox.put((i, topic, payload))

    def _on_clock(self, topic: str, payload: bytes, received: float) -> None:
        self.tick = int(json.loads(payload)["tick"])  # one int; the flood loop reads it

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect every link (each waits for its CONNACK and SUBACK)."""
        if self.shared_link is not None:
            self.shared_link.start(10.0)
        for link in self.links:
            link.start(10.0)

    def set_rate(self, rate: float) -> None:
        """Offered readings per second across this host's meters (flood only)."""
        with self._rate_lock:
            self.rate = rate

    def serve(self) -> None:
        """Answer messages (and flood) until :attr:`stop_event` is set."""
        next_poll = time.monotonic() + _POLL_EVERY
        rate, rate_t0, rate_sent, k = 0.0, 0.0, 0, 0
        while not self.stop_event.is_set():
            if not self.flood:
                self._take_pending(limit=1, block=0.05)
            else:
                self._take_pending(limit=500)
                with self._rate_lock:
                    if self.rate != rate:
                        rate, rate_t0, rate_sent = self.rate, time.monotonic(), 0
                due = 0
                if rate > 0 and self.tick is not None:
                    due = 200 if math.isinf(rate) else min(
                        200, int((time.monotonic() - rate_t0) * rate) - rate_sent)
                for _ in range(max(due, 0)):
                    self._reading(k)
                    k = (k + 1) % len(self.devices)
                rate_sent += max(due, 0)
                if due <= 0:
                    time.sleep(0.0005)
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + _POLL_EVERY
                for i, d in enumerate(self.devices):
                    self._publish(i, d.poll(now))

    def close(self) -> None:
        """Every device says ``offline``; the links disconnect."""
        for i, d in enumerate(self.devices):
            link = self.links[i]
            if link.connected:
                bye = d.goodbye()
                try:
                    link.publish(d.topic(bye.channel), encode(bye.payload), bye.qos,
                                 bye.retain, wait=2.0)
                except Exception as exc:  # one device's goodbye must not stop the others'
                    self.counters["goodbye_failed"] += 1
                    print(f"{d.name}: goodbye failed: {exc}", file=sys.stderr)
            link.stop()
        if self.shared_link is not None:
            self.shared_link.stop()

    # -- the loop's work --------------------------------------------------------------------
    def _take_pending(self, limit: int, block: float | None = None) -> None:
        """Answer up to ``limit`` queued messages (waiting up to ``block`` s for the first)."""
        for _ in range(limit):
            try:
                item = self._inbox.get(timeout=block) if block else self._inbox.get_nowait()
            except queue.Empty:
                return
            self._take(*item)

    def _take(self, i: int, topic: str | None, payload: bytes) -> None:
        d = self.devices[i]
        if topic is _CONNECTED:
            self._flood_t[i] = 0.0
            out = d.connected()
        else:
            out = d.handle(topic, payload, time.monotonic())
        self._publish(i, out)

    def _reading(self, i: int) -> None:
        """One reading of meter ``i``, made by the meter from a clock of the latest tick."""
        d = self.devices[i]
        self._flood_t[i] += getattr(d, "period", 1.0)
        out = d.receive("clock", {"v": 1, "tick": self.tick, "t": self._flood_t[i], "dt": 0.1,
                                  "mode": "bench"})
        self.sent += len(out)
        if not self.shared or self.shared_link is None:
            self._publish(i, out)
            return
        for m in out:
            self.shared_link.publish(d.topic(m.channel), encode(m.payload), m.qos, m.retain)

    def _publish(self, i: int, out: list[Outbound]) -> None:
        d, link = self.devices[i], self.links[i]
        for m in out:
            if self.trace is not None and m.channel in ("state", "ack"):
                extra = (f"{m.payload['cmd_id']}:{m.payload['status']}" if m.channel == "ack"
                         else str(m.payload.get("tick")))
                self.trace.append((d.device_id, m.channel, int(m.payload["seq"]),
                                   time.monotonic(), extra))
            try:
                link.publish(d.topic(m.channel), encode(m.payload), m.qos, m.retain)
            except Exception as exc:  # counted and shown; the host keeps serving
                self.counters["publish_failed"] += 1
                print(f"{d.name}: publish failed: {exc}", file=sys.stderr)

    def result(self) -> dict[str, Any]:
        """Counters of the host and of its devices, and the trace."""
        devices: Counter[str] = Counter()
        for d in self.devices:
            devices.update(d.counters)
        return {"sent": self.sent, "host": dict(self.counters), "devices": dict(devices),
                "reconnects": sum(link.reconnects for link in self.links),
                "trace": self.trace or []}


def _read_commands(host: DeviceHost) -> None:
    """Stdin: ``rate R``, ``stats``, ``stop`` (EOF stops too)."""
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "rate":
            host.set_rate(float(words[1]))
        elif words[0] == "route":
            host.shared = words[1] == "shared"
        elif words[0] == "stats":
            print(json.dumps({"sent": host.sent, "t": time.monotonic()}), flush=True)
        elif words[0] == "stop":
            break
    host.stop_event.set()


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    os.nice(config.get("nice", 0))  # the devices stand in for hardware elsewhere
    url = BrokerURL.parse(config["broker"])
    site = config["site"]
    devices = [build_device(DeviceOptions(kind=kind, device_id=device_id, site=site,
                                          lockstep=lockstep, seed=n))
               for n, (kind, device_id, lockstep) in enumerate(config["devices"])]
    host = DeviceHost(url, site, devices, flood=config.get("flood", False),
                      trace=config.get("trace", False))
    signal.signal(signal.SIGTERM, lambda signum, frame: host.stop_event.set())
    try:
        host.start()
        print(json.dumps({"ready": len(devices)}), flush=True)
        threading.Thread(target=_read_commands, args=(host,), daemon=True).start()
        host.serve()
    finally:
        host.close()
        Path(config["result"]).write_text(json.dumps(host.result()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
