"""The serial port: opening any pyserial URL, and a reader thread that only hands bytes on.

This is the I/O half of pyserial's ``serial.threaded`` split (the pure half is
:mod:`citytwin.firmware_bridge.framing`). :func:`open_port` opens ``/dev/ttyUSB0``,
``loop://``, ``socket://host:port``, ``spy://...`` or any other URL
:func:`serial.serial_for_url` knows, and translates pyserial's errors at this boundary:
:class:`~citytwin.errors.SerialLinkError` when the port is missing or failed (retry later),
:class:`~citytwin.errors.BridgeError` when the URL itself is wrong (retrying cannot help).

:class:`PortReader` is a small ``ReaderThread``: it reads whatever arrives and passes it to a
callback that must only enqueue, and passes one :class:`PortLost` when the port fails. Unlike
``serial.threaded.ReaderThread`` it

* catches the ``OSError`` that ``in_waiting`` raises on a hung-up pseudo-terminal (pyserial
  3.5 lets it escape the thread), and
* tells a gone port from a Linux pty race: ``select`` may report a pty readable before its
  bytes reach the line discipline, the read returns nothing and pyserial raises "device
  reports readiness to read but returned no data", the same error as for a hung-up port. A
  hung-up port repeats it on every read; the race never does many times in a row (at most
  twice in 12 M bytes of stress). So the reader retries after 1 ms and gives the port up
  after :data:`EMPTY_READS_LOST` such reads in a row, about 10 ms after a real unplug.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import serial

from citytwin.errors import BridgeError, SerialLinkError

__all__ = ["EMPTY_READS_LOST", "PortLost", "PortReader", "check_url", "open_port", "write_all"]

_log = logging.getLogger(__name__)
#: Seconds a read waits before the reader checks whether it should stop.
_READ_TIMEOUT = 0.05
#: "Readable but no data" reads in a row after which the port counts as gone.
EMPTY_READS_LOST = 10
_EMPTY_READ_PAUSE = 0.001
#: pyserial's errors on a failed or closed port (it raises all of these).
_PORT_ERRORS = (serial.SerialException, OSError, ValueError, TypeError, AttributeError)


@dataclass(frozen=True)
class PortLost:
    """What the reader passes on when the port failed."""

    reason: str


def open_port(url: str, baudrate: int = 115200, write_timeout: float = 1.0) -> Any:
    """Open a pyserial port URL for this process alone (a device path is locked, so a second
    bridge on the same board is refused), drop stale input and return the port object.

    Raises:
        BridgeError: The URL is invalid (unknown scheme, bad options).
        SerialLinkError: The port does not exist now or cannot be opened.
    """
    check_url(url)
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=_READ_TIMEOUT,
                                     write_timeout=write_timeout, exclusive=True)
    except ValueError as exc:  # an option of the URL (checked only when opening)
        raise BridgeError(f"serial port {url!r}: {exc}") from exc
    except (serial.SerialException, OSError) as exc:
        hint = (" (another program, a second bridge perhaps, has it open)"
                if "exclusively lock" in str(exc) else "")
        raise SerialLinkError(f"cannot open serial port {url!r}: {exc}{hint}") from exc
    try:
        port.reset_input_buffer()
    except _PORT_ERRORS as exc:
        with contextlib.suppress(*_PORT_ERRORS):
            port.close()
        raise SerialLinkError(f"serial port {url!r} failed right after opening: {exc}"
                              ) from exc
    return port


def check_url(url: str) -> None:
    """Check, without opening it, that ``url`` can name a port at all.

    Raises:
        BridgeError: An unknown scheme, or a ``socket://`` or ``rfc2217://`` URL without a
            usable host:port (pyserial would report that as a port it cannot open, and the
            bridge would retry it forever).
    """
    if "://" not in url:
        return  # a device path
    parts = urlsplit(url)
    if not parts.scheme.isalnum() or importlib.util.find_spec(
            f"serial.urlhandler.protocol_{parts.scheme}") is None:
        raise BridgeError(f"serial port {url!r}: pyserial knows no {parts.scheme}:// ports; "
                          "give a device path or a pyserial URL (loop://, socket://host:port, "
                          "spy://PORT, rfc2217://host:port)")
    if parts.scheme in ("socket", "rfc2217"):
        _check_host_port(url, parts.scheme, parts)


def _check_host_port(url: str, scheme: str, parts: Any) -> None:
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise BridgeError(f"serial port {url!r}: {scheme}:// needs a host and a port, e.g. "
                          f"{scheme}://127.0.0.1:7000")


def write_all(port: Any, data: bytes) -> None:
    """Write ``data`` to ``port``.

    Raises:
        SerialLinkError: A write error or timeout (the device is gone or stopped reading).
    """
    try:
        port.write(data)
    except _PORT_ERRORS as exc:
        raise SerialLinkError(f"write failed: {exc}") from exc


class PortReader(threading.Thread):
    """Reads ``port`` until stopped or until it fails; only hands on what it read.

    Args:
        port: An open pyserial port (its ``timeout`` should be short).
        deliver: Called on this thread with each chunk of bytes read and, once at the end if
            the port failed, with a :class:`PortLost`. It must only enqueue.
    """

    def __init__(self, port: Any, deliver: Callable[[bytes | PortLost], None]) -> None:
        super().__init__(name=f"serial-reader {getattr(port, 'name', None) or port.port}",
                         daemon=True)
        self.port = port
        self.deliver = deliver
        #: Spurious "readable but no data" reads survived (the pty race, see the module doc).
        self.empty_reads = 0
        self._alive = threading.Event()
        self._alive.set()

    def run(self) -> None:
        port = self.port
        reason = None
        empty_in_a_row = 0
        while self._alive.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except serial.SerialException as exc:
                if "returned no data" in str(exc) and empty_in_a_row + 1 < EMPTY_READS_LOST:
                    empty_in_a_row += 1
                    self.empty_reads += 1
                    time.sleep(_EMPTY_READ_PAUSE)
                    continue
                reason = str(exc) or type(exc).__name__
                break
            except _PORT_ERRORS as exc:
                reason = str(exc) or type(exc).__name__
                break
            empty_in_a_row = 0
            if data:
                self.deliver(bytes(data))
        if reason is not None and self._alive.is_set():
            _log.debug("reader of %s stopped: %s", port.name, reason)
            self.deliver(PortLost(reason))

    def stop(self, timeout: float = 1.0) -> None:
        """Stop reading (the port stays open; close it afterwards)."""
        self._alive.clear()
        cancel = getattr(self.port, "cancel_read", None)
        if cancel is not None:
            with contextlib.suppress(*_PORT_ERRORS):
                cancel()
        if threading.current_thread() is not self:
            self.join(timeout)
