"""The serial port: opening any pyserial URL, and a reader thread that only enqueues.

This is the I/O half of pyserial's ``serial.threaded`` split (the pure half is
:mod:`citytwin.firmware_bridge.framing`). :func:`open_port` opens ``/dev/ttyUSB0``,
``loop://``, ``socket://host:port``, ``spy://...`` or any other URL
:func:`serial.serial_for_url` knows, and turns pyserial's errors into :class:`PortError`
(retry later: the port is missing or failed) or :class:`~citytwin.errors.BridgeError` (the URL
itself is wrong: retrying cannot help).

:class:`PortReader` is a small ``ReaderThread``: it reads whatever arrives and puts
``(token, bytes)`` on a queue, and ``(token, PortLost(reason))`` once when the port fails.
Unlike ``serial.threaded.ReaderThread`` it also catches the ``OSError`` that
``in_waiting`` raises on a hung-up pseudo-terminal (pyserial 3.5 lets it escape the thread).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import serial

from citytwin.errors import BridgeError

__all__ = ["PortError", "PortLost", "PortReader", "open_port", "write_all"]

_log = logging.getLogger(__name__)
#: Seconds a read waits before the reader checks whether it should stop.
_READ_TIMEOUT = 0.05


class PortError(BridgeError):
    """The port cannot be opened or used now (missing, unplugged, I/O error): retry later."""


@dataclass(frozen=True)
class PortLost:
    """What the reader enqueues when the port failed."""

    reason: str


def open_port(url: str, baudrate: int = 115200, write_timeout: float = 1.0) -> Any:
    """Open a pyserial port URL, drop stale input and return the port object.

    Raises:
        BridgeError: The URL is invalid (unknown scheme, bad options).
        PortError: The port does not exist now or cannot be opened.
    """
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=_READ_TIMEOUT,
                                     write_timeout=write_timeout)
    except ValueError as exc:
        raise BridgeError(f"serial port {url!r}: {exc}; give a device path or a pyserial URL "
                          "(loop://, socket://host:port, spy://PORT, rfc2217://host:port)"
                          ) from exc
    except (serial.SerialException, OSError) as exc:
        raise PortError(f"cannot open serial port {url!r}: {exc}") from exc
    try:
        port.reset_input_buffer()
    except (serial.SerialException, OSError) as exc:
        port.close()
        raise PortError(f"serial port {url!r} failed right after opening: {exc}") from exc
    return port


def write_all(port: Any, data: bytes) -> None:
    """Write ``data`` to ``port``.

    Raises:
        PortError: A write error or timeout (the device is gone or stopped reading).
    """
    try:
        port.write(data)
    except (serial.SerialException, OSError, ValueError, TypeError, AttributeError) as exc:
        raise PortError(f"write failed: {exc}") from exc


class PortReader(threading.Thread):
    """Reads ``port`` until stopped or until it fails; only enqueues.

    Args:
        port: An open pyserial port (its ``timeout`` should be short).
        inbox: Receives ``(token, bytes)`` and, once at the end if the port failed,
            ``(token, PortLost)``.
        token: Tags every item, so that the consumer can ignore a previous reader's items.
    """

    def __init__(self, port: Any, inbox: queue.Queue[tuple[Any, Any]], token: object) -> None:
        super().__init__(name=f"serial-reader-{port.name or port.port}", daemon=True)
        self.port = port
        self.inbox = inbox
        self.token = token
        self._alive = threading.Event()
        self._alive.set()

    def run(self) -> None:
        port = self.port
        reason = None
        while self._alive.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, ValueError, TypeError,
                    AttributeError) as exc:  # pyserial raises all of these on a closed port
                reason = str(exc) or type(exc).__name__
                break
            if data:
                self.inbox.put_nowait((self.token, bytes(data)))
        if reason is not None and self._alive.is_set():
            _log.debug("reader of %s stopped: %s", port.name, reason)
            self.inbox.put_nowait((self.token, PortLost(reason)))

    def stop(self, timeout: float = 1.0) -> None:
        """Stop reading (the port stays open; close it afterwards)."""
        self._alive.clear()
        cancel = getattr(self.port, "cancel_read", None)
        if cancel is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                cancel()
        if threading.current_thread() is not self:
            self.join(timeout)
