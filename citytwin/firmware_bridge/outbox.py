"""The bridge's sending half of a serial line: sequence numbers, reliable frames, order. No I/O.

Three kinds of frames leave the bridge (``docs/firmware-protocol.md``, "Delivery"):

* **control** frames (``HELLO_REQ``, ``HEARTBEAT``, ``ACK``, ``NAK``) go out at once;
* **reliable** frames (``SIM_AVAIL``; ``MESSAGE`` parts of ``config``, ``cmd``, ``error``, and
  every part of a message split over several frames) go one at a time, asking for an ``ACK``;
  one is sent again after ``rto`` seconds without its ``ACK`` (or after ``NAK busy``), up to
  ``retries`` sends, then dropped and counted;
* **per-tick** frames (``CLOCK``, ``CALLS``, a one-frame ``input``) ask for no ``ACK``, but
  never overtake a reliable frame queued or in flight before them: a signal board must not see
  detector calls before the ``config`` that says what its detectors are. While they wait, a
  newer per-tick frame of the same kind replaces the older one (a late tick is worthless).

:class:`Outbox` keeps that discipline; the clock is passed in.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass

from citytwin.firmware_bridge.frames import Frame, FrameType, Nak, encode

__all__ = ["Outbox"]

_log = logging.getLogger(__name__)


@dataclass
class _Queued:
    type: FrameType
    payload: bytes
    reliable: bool
    key: str | None  # per-tick frames: a newer one with the same key replaces this one


@dataclass
class _InFlight:
    frame: Frame
    sent: float
    attempts: int


class Outbox:
    """Frames waiting to be written, in protocol order.

    Args:
        rto: Seconds to wait for an ACK before sending a reliable frame again.
        retries: Sends of one reliable frame before giving up on it.
        queue_limit: Reliable frames waiting; more are dropped and counted (``queue_full``).
        counters: Where ``frames_out``, ``retransmits``, ``delivery_failed``, ``queue_full``,
            ``replaced`` and ``stray_acks`` are counted.
    """

    def __init__(self, rto: float, retries: int, queue_limit: int,
                 counters: Counter[str]) -> None:
        self.rto = rto
        self.retries = retries
        self.queue_limit = queue_limit
        self.counters = counters
        self._seq = 0
        self._out = bytearray()
        self._queue: deque[_Queued] = deque()
        self._reliable_waiting = 0
        self._inflight: _InFlight | None = None

    @property
    def waiting(self) -> int:
        """Frames queued behind the one in flight (reliable and per-tick)."""
        return len(self._queue)

    @property
    def in_flight(self) -> Frame | None:
        """The reliable frame sent and not yet acknowledged, if any."""
        return self._inflight.frame if self._inflight is not None else None

    def clear(self) -> None:
        """Forget every frame queued or in flight (a session ended); bytes already written
        out (:meth:`take_output`) still go."""
        self._queue.clear()
        self._reliable_waiting = 0
        self._inflight = None

    def discard_output(self) -> None:
        """Forget the bytes not yet taken (the port closed or was reopened)."""
        self._out.clear()

    def take_output(self) -> bytes:
        """The bytes to write to the port now (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float | None:
        """When the frame in flight is due for a resend, if one is."""
        return self._inflight.sent + self.rto if self._inflight is not None else None

    # -- adding frames ------------------------------------------------------------------------
    def control(self, ftype: FrameType, payload: bytes = b"") -> None:
        """Write a control frame now (no ACK asked)."""
        self._write(Frame(ftype, self._take_seq(), payload))

    def reliable(self, ftype: FrameType, payload: bytes, now: float) -> bool:
        """Queue a frame that must be acknowledged; False if the queue is full."""
        if self._reliable_waiting >= self.queue_limit:
            self.counters["queue_full"] += 1
            return False
        self._queue.append(_Queued(ftype, payload, True, None))
        self._reliable_waiting += 1
        self._pump(now)
        return True

    def per_tick(self, key: str, ftype: FrameType, payload: bytes, now: float) -> None:
        """Send a per-tick frame, after the reliable frames before it; while it waits a newer
        one with the same ``key`` takes its place."""
        for item in reversed(self._queue):
            if item.reliable:
                break  # queued before this reliable frame: it must not move ahead of it
            if item.key == key:
                item.payload = payload
                self.counters["replaced"] += 1
                return
        self._queue.append(_Queued(ftype, payload, False, key))
        self._pump(now)

    # -- answers and time ---------------------------------------------------------------------
    def acked(self, ref: int, now: float) -> bool:
        """The peer ACKed ``ref``; True if that was the frame in flight."""
        if self._inflight is None or self._inflight.frame.seq != ref:
            self.counters["stray_acks"] += 1
            return False
        self._inflight = None
        self._pump(now)
        return True

    def naked(self, ref: int, reason: int, now: float) -> bool:
        """The peer NAKed ``ref``; True if that was the frame in flight. ``busy`` is retried
        (at the next resend time), any other reason drops the frame."""
        flight = self._inflight
        if flight is None or flight.frame.seq != ref:
            return False
        if reason == Nak.BUSY and flight.attempts < self.retries:
            return True
        self.counters["delivery_failed"] += 1
        _log.warning("%s seq %d refused by the device: %s", flight.frame.type.name, ref,
                     _reason_name(reason))
        self._inflight = None
        self._pump(now)
        return True

    def poll(self, now: float) -> None:
        """Resend or give up the frame in flight when its time has come."""
        flight = self._inflight
        if flight is not None and now - flight.sent >= self.rto:
            if flight.attempts >= self.retries:
                self.counters["delivery_failed"] += 1
                _log.warning("no ACK for %s seq %d after %d sends; dropped",
                             flight.frame.type.name, flight.frame.seq, flight.attempts)
                self._inflight = None
            else:
                self.counters["retransmits"] += 1
                flight.sent, flight.attempts = now, flight.attempts + 1
                self._write(flight.frame)
        self._pump(now)

    # -- internals ----------------------------------------------------------------------------
    def _pump(self, now: float) -> None:
        while self._inflight is None and self._queue:
            item = self._queue.popleft()
            frame = Frame(item.type, self._take_seq(), item.payload, item.reliable)
            self._write(frame)
            if item.reliable:
                self._reliable_waiting -= 1
                self._inflight = _InFlight(frame, now, 1)

    def _write(self, frame: Frame) -> None:
        self.counters["frames_out"] += 1
        self._out += encode(frame)

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        return seq


def _reason_name(code: int) -> str:
    try:
        return Nak(code).name.lower()
    except ValueError:
        return f"reason {code}"
