"""The port: pyserial URLs (loop://, socket:// to a local socket, spy://, a real pty), the
errors they are translated into, and the reader thread that only hands bytes on."""

from __future__ import annotations

import os
import queue
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import serial

from citytwin.errors import BridgeError, SerialLinkError
from citytwin.firmware_bridge.port import (
    EMPTY_READS_LOST,
    PortLost,
    PortReader,
    open_port,
    write_all,
)
from tests.firmware_bridge.wire import master_read


def reader_of(port: Any) -> tuple[PortReader, queue.Queue[bytes | PortLost]]:
    inbox: queue.Queue[bytes | PortLost] = queue.Queue()
    reader = PortReader(port, inbox.put_nowait)
    reader.start()
    return reader, inbox


def take(inbox: queue.Queue[bytes | PortLost], n: int, timeout: float = 2.0) -> bytes:
    got = b""
    end = time.monotonic() + timeout
    while len(got) < n:
        item = inbox.get(timeout=max(0.01, end - time.monotonic()))
        assert isinstance(item, bytes), item
        got += item
    return got


def lost(inbox: queue.Queue[bytes | PortLost], timeout: float = 2.0) -> PortLost:
    end = time.monotonic() + timeout
    while True:
        item = inbox.get(timeout=max(0.01, end - time.monotonic()))
        if isinstance(item, PortLost):
            return item


def test_a_bad_url_is_a_bridge_error_and_a_missing_port_a_link_error(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match="pyserial URL") as bad:
        open_port("nosuch://x")
    assert not isinstance(bad.value, SerialLinkError)  # retrying cannot help
    with pytest.raises(SerialLinkError, match="cannot open serial port"):
        open_port(str(tmp_path / "ttyUSB9"))
    with pytest.raises(SerialLinkError):
        open_port("socket://127.0.0.1:1")  # nothing listens there


def test_loop_url_echoes_and_a_closed_port_is_reported_once() -> None:
    port = open_port("loop://")
    reader, inbox = reader_of(port)
    write_all(port, b"\x00hello\x00")
    assert take(inbox, 7) == b"\x00hello\x00"
    port.close()  # closed under the reader: it reports the loss and ends
    assert lost(inbox).reason
    reader.join(1.0)
    assert not reader.is_alive() and inbox.empty()
    with pytest.raises(SerialLinkError, match="write failed"):
        write_all(port, b"x")


def test_socket_url_to_a_local_server(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    port = open_port(url)
    conn, _ = server.accept()
    reader, inbox = reader_of(port)
    try:
        write_all(port, b"ping")
        assert conn.recv(4) == b"ping"
        conn.sendall(b"pong")
        assert take(inbox, 4) == b"pong"
        conn.close()  # the device side hangs up
        assert lost(inbox).reason
    finally:
        reader.stop()
        port.close()
        server.close()


def test_pty_hang_up_is_reported_at_once(serial_pair: tuple[int, str]) -> None:
    master, path = serial_pair
    port = open_port(path)
    reader, inbox = reader_of(port)
    os.write(master, b"abc")
    assert take(inbox, 3) == b"abc"
    write_all(port, b"xyz")
    assert master_read(master, 3) == b"xyz"
    t0 = time.monotonic()
    os.close(master)  # unplugged
    assert lost(inbox).reason
    assert time.monotonic() - t0 < 0.5
    reader.join(1.0)
    port.close()


def test_a_second_opener_of_the_same_device_is_refused(serial_pair: tuple[int, str]) -> None:
    _, path = serial_pair
    port = open_port(path)
    try:
        with pytest.raises(SerialLinkError, match="second bridge"):
            open_port(path)
    finally:
        port.close()


def test_spy_url_logs_the_traffic(serial_pair: tuple[int, str], tmp_path: Path) -> None:
    master, path = serial_pair
    log = tmp_path / "spy.txt"
    port = open_port(f"spy://{path}?file={log}")
    write_all(port, b"\x00\x41\x00")
    assert master_read(master, 3) == b"\x00\x41\x00"
    port.close()
    assert "TX" in log.read_text() and "41" in log.read_text()


class _RacyPort:
    """A port whose reads fail with pyserial's "readable but no data" ``failures`` times in a
    row (the Linux pty race when below EMPTY_READS_LOST; a hung-up port when not)."""

    name = "racy"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.data = [b"after the race"]

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, n: int) -> bytes:
        if self.failures:
            self.failures -= 1
            raise serial.SerialException("device reports readiness to read but returned no "
                                         "data (device disconnected or multiple access on "
                                         "port?)")
        if self.data:
            return self.data.pop()
        time.sleep(0.01)
        return b""


def test_the_pty_race_is_survived_but_a_dead_port_is_not() -> None:
    racy = _RacyPort(EMPTY_READS_LOST - 1)
    reader, inbox = reader_of(racy)
    assert take(inbox, 14) == b"after the race"
    reader.stop()
    assert reader.empty_reads == EMPTY_READS_LOST - 1 and inbox.empty()
    dead = _RacyPort(10 * EMPTY_READS_LOST)
    reader, inbox = reader_of(dead)
    assert "returned no data" in lost(inbox).reason
    assert reader.empty_reads == EMPTY_READS_LOST - 1
