"""The command lines ``citytwin bridge serial`` and ``citytwin firmware-emulator``.

``citytwin bridge serial --port PORT --broker URL [--site SITE]`` runs one
:class:`~citytwin.firmware_bridge.gateway.SerialGateway` per ``--port`` (a device path or any
pyserial URL; give it several times for several boards) until SIGINT or SIGTERM, then takes
every device offline and disconnects.

``citytwin firmware-emulator --kind signal|meter [--id ID]`` runs the reference firmware on a
pseudo-terminal and prints the port to give the bridge (the only line on stdout), until SIGINT
or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from citytwin import _argtypes as argtypes
from citytwin.errors import BridgeError

__all__ = ["add_bridge_arguments", "add_emulator_arguments", "run_bridge", "run_emulator"]

_log = logging.getLogger(__name__)
#: Default device id of each board kind: the lab scenario's devices.
DEFAULT_IDS = {"signal": "ctl-r1c1", "meter": "meter-hall"}


def add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``citytwin bridge serial`` arguments to ``parser``."""
    parser.add_argument("--port", action="append", required=True, metavar="PORT", type=_port,
                        help="serial port: a device path (/dev/ttyUSB0) or a pyserial URL "
                        "(socket://host:port, loop://, spy://PORT, rfc2217://...); repeat "
                        "for several boards")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", type=argtypes.broker_url,
                        metavar="URL", help="MQTT broker, mqtt[s]://[user[:pass]@]host[:port] "
                        "(default: %(default)s)")
    parser.add_argument("--site", default="lab", type=argtypes.name, help="site id (default: lab)")
    parser.add_argument("--baud", type=argtypes.positive_int, default=115200, metavar="N",
                        help="serial speed (default: 115200)")
    parser.add_argument("--retry-cap", type=argtypes.positive_float, default=5.0, metavar="S",
                        help="longest wait between attempts to reopen a lost port "
                        "(default: 5)")
    _add_log_level(parser)


def run_bridge(args: argparse.Namespace) -> int:
    """Bridge the ports ``args`` names until SIGINT/SIGTERM; returns 0.

    Raises:
        BridgeError: A port URL is invalid.
    """
    from citytwin.firmware_bridge.gateway import GatewayOptions, SerialGateway

    _logging(args.log_level)
    options = GatewayOptions(site=args.site, baudrate=args.baud,
                             retry_cap=args.retry_cap)
    gateways = [SerialGateway(port, args.broker, options) for port in args.port]
    done = threading.Event()
    try:
        for gateway in gateways:
            gateway.start()
            print(f"bridging serial port {gateway.port_url} to {args.broker} "
                  f"(site {args.site})", flush=True)
        with _stop_on_signals(done.set):
            while not done.wait(0.5):
                pass
    finally:
        for gateway in gateways:
            gateway.stop()
            _log.info("%s: %s", gateway.port_url, gateway.stats())
    return 0


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``citytwin firmware-emulator`` arguments to ``parser``."""
    parser.add_argument("--kind", choices=("signal", "meter"), required=True,
                        help="which reference board to run")
    parser.add_argument("--id", dest="device_id", type=argtypes.name, default=None, metavar="ID",
                        help="device id in its HELLO (default: the lab scenario's ctl-r1c1 "
                        "or meter-hall)")
    parser.add_argument("--lockstep", action="store_true",
                        help="announce that the simulator may wait for this board each tick")
    parser.add_argument("--heartbeat", type=_heartbeat_ms, default=1000, metavar="MS",
                        help="milliseconds between heartbeats, 50-60000 (default: 1000)")
    parser.add_argument("--link", type=Path, default=None, metavar="PATH",
                        help="also make PATH a symlink to the pty (printed instead of it)")
    parser.add_argument("--firmware", type=Path, default=None, metavar="DIR",
                        help="firmware sources (default: firmware/ of this source tree)")
    _add_log_level(parser)


def run_emulator(args: argparse.Namespace) -> int:
    """Run a firmware board on a pty until SIGINT/SIGTERM; returns 0.

    Raises:
        BridgeError: No firmware sources, or a bad id.
    """
    from citytwin.firmware_bridge.emulator import FirmwareEmulator

    _logging(args.log_level)
    device_id = args.device_id or DEFAULT_IDS[args.kind]
    done = threading.Event()
    with FirmwareEmulator(args.kind, device_id, lockstep=args.lockstep, hb_ms=args.heartbeat,
                          alias=args.link, firmware=args.firmware) as emulator:
        path = emulator.plug()
        print(path, flush=True)
        print(f"firmware {args.kind}/{device_id} on {path}; connect it with: citytwin bridge "
              f"serial --port {path} --broker URL", file=sys.stderr, flush=True)
        with _stop_on_signals(done.set):
            while not done.wait(0.5):
                if not emulator.running:
                    raise BridgeError(f"the firmware loop stopped: {emulator.last_error}")
    return 0


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


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="logging threshold on stderr (default: info)")


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _port(text: str) -> str:
    from citytwin.firmware_bridge.port import check_url

    try:
        check_url(text)
    except BridgeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _heartbeat_ms(text: str) -> int:
    value = argtypes.positive_int(text)
    if not 50 <= value <= 60_000:  # what the bridge takes in a HELLO
        raise argparse.ArgumentTypeError(f"must be 50-60000 ms, got {value}")
    return value
