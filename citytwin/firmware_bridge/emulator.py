"""The reference firmware (``firmware/``) running on a pseudo-terminal, as a board would.

``citytwin firmware-emulator --kind signal|meter`` builds a :class:`FirmwareEmulator`: it loads
the firmware modules from the source tree (they are plain MicroPython-compatible modules, not
part of the ``citytwin`` package), opens a pty pair, runs the firmware's serial loop on the
master side in a thread, and gives the slave side's path to the bridge
(``citytwin bridge serial --port /dev/pts/N``), exactly as a USB serial board appears as
``/dev/ttyACM0``.

The board (its controller, its energy register) outlives the cable: :meth:`unplug` closes the
pty (the bridge's reads fail as on a pulled USB cable), :meth:`plug` opens a new one and says
``HELLO`` again. ``alias`` keeps a symlink pointing at the current pty, as udev's
``/dev/serial/by-id/...`` links do, so the bridge can keep one port path across replugs.
:meth:`attach` runs the firmware on any other port (a connected socket, in the tests).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

from citytwin.errors import BridgeError
from citytwin.hil.protocol import valid_name

__all__ = ["KINDS", "FirmwareEmulator", "firmware_dir", "load_firmware"]

_log = logging.getLogger(__name__)
#: Board kinds the reference firmware implements.
KINDS = ("signal", "meter")
_MODULES = ("ctfw_wire", "ctfw_board", "ctfw_device", "ctfw_signal", "ctfw_meter", "ctfw_port")


def firmware_dir(explicit: Path | None = None) -> Path:
    """Where the firmware sources are: ``explicit``, else ``firmware/`` next to the package.

    Raises:
        BridgeError: No firmware sources there.
    """
    import citytwin

    where = explicit or Path(citytwin.__file__).resolve().parent.parent / "firmware"
    if not (where / "ctfw_device.py").is_file():
        raise BridgeError(f"no reference firmware in {where} (ctfw_device.py missing); run "
                          "from a citytwin source checkout or pass --firmware DIR")
    return where


def load_firmware(directory: Path) -> dict[str, ModuleType]:
    """Import the firmware modules from ``directory`` (as the board's flat file system would
    hold them: they import each other by their plain names).

    Raises:
        BridgeError: Another directory's firmware modules are already loaded.
    """
    directory = directory.resolve()
    loaded = sys.modules.get("ctfw_device")
    if loaded is not None and Path(loaded.__file__ or "").parent != directory:
        raise BridgeError(f"firmware modules are already loaded from "
                          f"{Path(loaded.__file__ or '').parent}, not {directory}")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return {name: importlib.import_module(name) for name in _MODULES}


class FirmwareEmulator:
    """A firmware board on a pseudo-terminal (or any port), with its cable under control.

    Args:
        kind: ``signal`` or ``meter``.
        device_id: The id the board announces in its ``HELLO``.
        lockstep: Announce lockstep (the simulator may wait for the board every tick).
        hb_ms: Milliseconds between the board's heartbeats.
        alias: A symlink kept pointing at the current pty.
        firmware: The firmware source directory (default: :func:`firmware_dir`).

    Raises:
        BridgeError: Unknown kind, invalid id, or no firmware sources.
    """

    def __init__(self, kind: str, device_id: str, *, lockstep: bool = False,
                 hb_ms: int = 1000, alias: Path | None = None,
                 firmware: Path | None = None) -> None:
        if kind not in KINDS:
            raise BridgeError(f"unknown board kind {kind!r} (one of {', '.join(KINDS)})")
        if not valid_name(device_id):
            raise BridgeError(f"bad device id {device_id!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        self.fw = load_firmware(firmware_dir(firmware))
        self.kind = kind
        self.hb_ms = hb_ms
        self.alias = alias
        board_class = (self.fw["ctfw_signal"].SignalBoard if kind == "signal"
                       else self.fw["ctfw_meter"].MeterBoard)
        #: The firmware's board object (kept across replugs).
        self.board: Any = board_class(device_id, lockstep)
        #: The firmware's serial link of the current connection (None while unplugged).
        self.link: Any = None
        #: The pty path the bridge opens (None while unplugged or on another port).
        self.path: str | None = None
        #: Why the firmware's loop last ended, if the port failed.
        self.last_error: str | None = None
        self._port: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the firmware loop is serving a port."""
        return self._thread is not None and self._thread.is_alive()

    def plug(self) -> str:
        """Open a new pty, run the firmware on it, and return the path for the bridge."""
        self.unplug()
        port = self.fw["ctfw_port"].open_pty()
        path = str(port.path)
        if self.alias is not None:
            tmp = self.alias.with_name(self.alias.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(path)
            tmp.replace(self.alias)
        self.attach(port)
        self.path = path
        return str(self.alias) if self.alias is not None else path

    def attach(self, port: Any) -> None:
        """Run the firmware on ``port`` (``read``/``write``/``fileno``/``close``) until it
        fails or :meth:`unplug` (a pty plugged before is unplugged first)."""
        self.unplug()
        self._port = port
        self.link = self.fw["ctfw_device"].Link(self.board, port, hb_ms=self.hb_ms)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, args=(self.link,),
                                        name=f"firmware {self.kind}", daemon=True)
        self._thread.start()

    def unplug(self) -> None:
        """Pull the cable: stop the firmware loop and close the pty (the bridge's reads and
        writes fail)."""
        self._stop_thread()
        if self._port is not None:
            self._port.close()
            self._port = None
        self.path = None

    def pause(self) -> None:
        """The board stops answering (hung firmware) while the port stays open."""
        if self.link is not None:
            self.link.paused = True

    def resume(self) -> None:
        """The board answers again."""
        if self.link is not None:
            self.link.paused = False

    def close(self) -> None:
        """Say goodbye (``BYE``) if in session, unplug, and remove the alias symlink."""
        self._stop_thread()
        if self.link is not None and self._port is not None:
            with contextlib.suppress(OSError):
                self.link.bye()
        self.unplug()
        if self.alias is not None:
            with contextlib.suppress(FileNotFoundError):
                self.alias.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _serve(self, link: Any) -> None:
        try:
            link.run(stop=self._stop.is_set)
        except OSError as exc:
            self.last_error = str(exc)
            _log.info("firmware %s: port gone: %s", self.kind, exc)

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._thread = None
