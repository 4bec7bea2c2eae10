"""What travels on a serial wire, for the tests: reading a pty master, and what a UART makes of
bytes sent at another baud rate."""

from __future__ import annotations

import math
import os
import select
import time

import pytest


def master_read(fd: int, n: int, timeout: float = 2.0) -> bytes:
    """Read ``n`` bytes from a non-blocking pty master, waiting for them up to ``timeout``."""
    got = b""
    end = time.monotonic() + timeout
    while len(got) < n:
        if not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
            pytest.fail(f"only {len(got)} of {n} bytes within {timeout} s")
        got += os.read(fd, n - len(got))
    return got


def misbaud(data: bytes, tx_baud: int, rx_baud: int) -> bytes:
    """The bytes a UART at ``rx_baud`` reads from ``data`` sent at ``tx_baud`` (8N1).

    The sender's line: idle high, each byte a start bit (low), eight data bits LSB first, a
    stop bit (high). The receiver waits for a falling edge, samples the middle of its start
    bit, eight data bits and the stop bit at its own rate, and hands the byte on even with a
    framing error (as Linux does without ``INPCK``), then waits for the next edge.
    """
    bits = []
    for byte in data:
        bits += [0] + [(byte >> k) & 1 for k in range(8)] + [1]
    end = len(bits) / tx_baud

    def level(t: float) -> int:
        k = math.floor(t * tx_baud)
        return bits[k] if 0 <= k < len(bits) else 1

    out = bytearray()
    step = 1 / (16 * rx_baud)
    t = 0.0
    while t < end:
        if level(t) == 1:
            t += step
            continue
        start = t  # falling edge: sample mid-bit at the receiver's rate
        if level(start + 0.5 / rx_baud) == 1:
            t += step  # a glitch, not a start bit
            continue
        value = 0
        for k in range(8):
            value |= level(start + (k + 1.5) / rx_baud) << k
        out.append(value)
        t = start + 9.5 / rx_baud
        while t < end and level(t) == 0:  # a framing error: wait for the line to go high
            t += step
    return bytes(out)
