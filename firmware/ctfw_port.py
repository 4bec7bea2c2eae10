"""ctfw_port: a serial port for the firmware under CPython (a pseudo-terminal or a socket).

A board uses its ``machine.UART``; on a PC the same firmware talks through an :class:`FdPort`
around a file descriptor: the master side of a pseudo-terminal pair (:class:`PtyPort`; the
bridge opens the slave side by its path, as it would open ``/dev/ttyUSB0``), or a connected
socket. Like a UART with nobody listening, a write that cannot go out within a few
milliseconds is dropped (and counted), never blocks the firmware.

CPython only (``os``, ``tty``); MicroPython never imports it.
"""

import contextlib
import os
import select
import tty


class FdPort:
    """``read(n)`` / ``write(data)`` over a non-blocking file descriptor.

    ``read`` returns None when nothing is waiting and raises OSError when the other side is
    gone (end of file, or EIO from a pseudo-terminal whose other side closed).
    """

    def __init__(self, fd, write_wait=0.05):
        self.fd = fd
        self.write_wait = write_wait
        self.dropped = 0
        os.set_blocking(fd, False)

    def fileno(self):
        return self.fd

    def read(self, n):
        try:
            data = os.read(self.fd, n)
        except BlockingIOError:
            return None
        if not data:
            raise OSError("the other side closed the port")
        return data

    def write(self, data):
        view = memoryview(data)
        written = 0
        while written < len(view):
            try:
                written += os.write(self.fd, view[written:])
            except BlockingIOError:
                if not select.select([], [self.fd], [], self.write_wait)[1]:
                    self.dropped += len(view) - written
                    return written
        return written

    def close(self):
        with contextlib.suppress(OSError):
            os.close(self.fd)


class PtyPort(FdPort):
    """The master side of a pseudo-terminal pair; ``path`` is the slave side for the bridge.

    The slave fd stays open too while the port is open, so that the bridge can close and
    reopen the path without the firmware seeing a hang-up. :meth:`close` closes both ends:
    the board is unplugged, the bridge's reads and writes fail and the path disappears.
    """

    def __init__(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        FdPort.__init__(self, master)
        self.slave = slave
        self.path = os.ttyname(slave)

    def close(self):
        FdPort.close(self)
        with contextlib.suppress(OSError):
            os.close(self.slave)


def open_pty():
    """A pseudo-terminal pair in raw mode (a :class:`PtyPort`)."""
    return PtyPort()
