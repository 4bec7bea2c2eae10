"""An emulated device as its own process: the MQTT link, the main loop, signals and exit.

``citytwin device signal|drone|meter --id ID --broker URL`` builds a
:class:`~citytwin.hil.emulated.device.Device` of that kind and hands it to a
:class:`DeviceRunner`. The link's callbacks only enqueue; the main loop takes one message at a
time, lets the device answer, publishes the answers, and a few times a second runs the device's
wall-clock timers. It stops on SIGINT or SIGTERM, or once the simulator's ``avail`` has said
``offline`` for ``--exit-after`` seconds; it then publishes its own ``offline`` availability,
disconnects cleanly and exits with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from citytwin import _argtypes as argtypes
from citytwin.errors import BridgeError
from citytwin.hil.protocol import encode

if TYPE_CHECKING:
    from citytwin.hil.broker import BrokerURL
    from citytwin.hil.emulated.device import Device, Outbound
    from citytwin.hil.transport import MqttLink

__all__ = ["KINDS", "DeviceOptions", "DeviceRunner", "add_device_arguments", "build_device",
           "run_device"]

_log = logging.getLogger(__name__)

#: Device kinds that can be emulated.
KINDS = ("signal", "drone", "meter")
_CONNECTED = ("", b"", 0.0)  # queued by the link's on_connect hook


@dataclass(frozen=True)
class DeviceOptions:
    """What ``citytwin device`` was asked to run.

    Attributes:
        kind: ``signal``, ``drone`` or ``meter``.
        device_id: The device id.
        site: The site id.
        lockstep: Announce lockstep in ``birth``.
        seed: Seed of the meter's load profile.
        link_timeout: Drone: wall seconds of simulator silence before the link-loss failsafe.
        period: Meter: sim seconds between ``state`` messages.
    """

    kind: str
    device_id: str
    site: str = "lab"
    lockstep: bool = False
    seed: int = 0
    link_timeout: float = 3.0
    period: float = 5.0


def build_device(options: DeviceOptions) -> Device:
    """Create the device logic for ``options``.

    Raises:
        BridgeError: Unknown kind, or an invalid id or site.
    """
    o = options
    if o.kind == "signal":
        from citytwin.hil.emulated.signal import SignalDevice

        return SignalDevice(o.device_id, site=o.site, lockstep=o.lockstep)
    if o.kind == "drone":
        from citytwin.hil.emulated.drone import DroneDevice

        return DroneDevice(o.device_id, site=o.site, lockstep=o.lockstep,
                           link_timeout=o.link_timeout)
    if o.kind == "meter":
        from citytwin.hil.emulated.meter import MeterDevice

        return MeterDevice(o.device_id, site=o.site, lockstep=o.lockstep, seed=o.seed,
                           period=o.period)
    raise BridgeError(f"unknown device kind {options.kind!r} (one of {', '.join(KINDS)})")


class DeviceRunner:
    """Runs one device over one MQTT link until told to stop.

    Args:
        device: The device logic.
        url: The broker.
        exit_after: Stop once the simulator has been offline this many wall seconds (None:
            never).
        poll_interval: Seconds between runs of the device's wall-clock timers when idle.
        connect_timeout: Seconds to wait for the broker at start.
        clock: Monotonic wall clock, seconds.
    """

    def __init__(self, device: Device, url: BrokerURL, *, exit_after: float | None = None,
                 poll_interval: float = 0.1, connect_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self.url = url
        self.exit_after = exit_after
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self._clock = clock
        self._inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the main loop to finish (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self, announce: Callable[[str], None] | None = None) -> int:
        """Connect, serve until stopped, say ``offline`` and disconnect; returns 0.

        Args:
            announce: Called with one line once connected (the CLI prints it).

        Raises:
            BridgeError: The broker could not be reached or refused the device.
        """
        from citytwin.hil.transport import MqttLink

        device = self.device
        will = device.will()
        link = MqttLink(self.url, f"citytwin-{device.site}-{device.kind}-{device.device_id}",
                        device.subscriptions(), self._enqueue,
                        will=(device.topic(will.channel), encode(will.payload), will.qos,
                              will.retain),
                        on_connect=lambda: self._inbox.put_nowait(_CONNECTED))
        link.start(self.connect_timeout)
        if announce is not None:
            announce(f"device {device.name} connected to {self.url}")
        _log.info("%s: connected to %s", device.name, self.url)
        try:
            self._serve(link)
        finally:
            self._goodbye(link)
        return 0

    def _enqueue(self, topic: str, payload: bytes, received: float) -> None:
        self._inbox.put_nowait((topic, payload, self._clock()))

    def _serve(self, link: MqttLink) -> None:
        device = self.device
        offline_since: float | None = None
        while not self._stop.is_set():
            try:
                item: tuple[str, bytes, float] | None = self._inbox.get(
                    timeout=self.poll_interval)
            except queue.Empty:
                item = None
            now = self._clock()
            if item is _CONNECTED:
                out = device.connected()
            elif item is not None:
                out = device.handle(*item)
            else:
                out = []
            out += device.poll(now)
            for message in out:
                self._publish(link, message)
            if self.exit_after is not None and device.sim_online is False:
                offline_since = now if offline_since is None else offline_since
                if now - offline_since >= self.exit_after:
                    _log.info("%s: simulator offline for %g s; exiting", device.name,
                              self.exit_after)
                    return
            else:
                offline_since = None

    def _publish(self, link: MqttLink, message: Outbound, wait: float | None = None) -> None:
        try:
            link.publish(self.device.topic(message.channel), encode(message.payload),
                         qos=message.qos, retain=message.retain, wait=wait)
        except BridgeError as exc:
            _log.error("%s: %s", self.device.name, exc)

    def _goodbye(self, link: MqttLink) -> None:
        if link.connected:
            self._publish(link, self.device.goodbye(), wait=2.0)
        link.stop()
        _log.info("%s: offline, disconnected", self.device.name)


# -- command line -----------------------------------------------------------------------------
def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``citytwin device`` arguments to ``parser``."""
    parser.add_argument("kind", choices=KINDS, help="what to emulate")
    parser.add_argument("--id", dest="device_id", required=True, type=argtypes.name, metavar="ID",
                        help="device id (1-64 of A-Z a-z 0-9 _ . -)")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", type=argtypes.broker_url,
                        metavar="URL", help="MQTT broker, mqtt[s]://[user[:pass]@]host[:port] "
                        "(default: %(default)s)")
    parser.add_argument("--site", default="lab", type=argtypes.name, help="site id (default: lab)")
    parser.add_argument("--lockstep", action="store_true",
                        help="announce that the simulator may wait for this device each tick")
    parser.add_argument("--seed", type=argtypes.non_negative_int, default=0, metavar="N",
                        help="seed of the meter's load profile (default: 0)")
    parser.add_argument("--exit-after", type=argtypes.positive_float, default=None, metavar="S",
                        help="exit once the simulator has been offline for S wall seconds")
    parser.add_argument("--link-timeout", type=argtypes.positive_float, default=3.0, metavar="S",
                        help="drone: return home after S wall seconds without the simulator "
                        "(default: 3)")
    parser.add_argument("--period", type=argtypes.positive_float, default=5.0, metavar="S",
                        help="meter: sim seconds between readings (default: 5)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="logging threshold on stderr (default: info)")


def run_device(args: argparse.Namespace) -> int:
    """Run the device ``args`` describe until SIGINT/SIGTERM or ``--exit-after``; returns 0.

    Raises:
        BridgeError: The broker could not be reached or refused the device.
    """
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = build_device(DeviceOptions(kind=args.kind, device_id=args.device_id,
                                        site=args.site, lockstep=args.lockstep, seed=args.seed,
                                        link_timeout=args.link_timeout, period=args.period))
    runner = DeviceRunner(device, args.broker, exit_after=args.exit_after)
    with _stop_on_signals(runner.stop):
        return runner.run(announce=lambda line: print(line, flush=True))


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGINT and SIGTERM (main thread only) while inside the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: stop())
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
