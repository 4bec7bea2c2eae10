"""The bridge's side of one serial line: handshake, liveness, reliable delivery. No I/O.

:class:`LineSession` is fed the bytes the port read (:meth:`~LineSession.receive`) and the
time (:meth:`~LineSession.poll`), and returns :class:`Online`, :class:`Offline` and
:class:`Inbound` events; what it wants written to the port collects in
:meth:`~LineSession.take_output`. The clock is passed in, so tests drive it with numbers.

The rules it keeps (``docs/firmware-protocol.md``):

* **Handshake.** While no device is in session it sends ``HELLO_REQ`` every
  ``hello_interval``; a valid ``HELLO`` starts a session (:class:`Online`) and is ACKed. A
  repeat of the same ``HELLO`` (its ACK was lost) is ACKed again and changes nothing; any
  other ``HELLO`` starts a new session. Frames other than ``HELLO`` outside a session are
  answered with ``NAK no_session``, which tells the device to say ``HELLO``.
* **Liveness.** In a session the bridge sends a ``HEARTBEAT`` every ``heartbeat`` seconds.
  A device that sends no valid frame for ``timeout_factor`` times the heartbeat interval its
  ``HELLO`` promised is declared gone (:class:`Offline`); so is one that says ``BYE``, and
  every device when the port closes (:meth:`~LineSession.closed`).
* **Reliable frames** (``SIM_AVAIL`` and ``MESSAGE`` parts of ``config``, ``cmd``, ``error``,
  and every part of a message that needs more than one frame) go one at a time, asking for an
  ACK, and are sent again after ``rto`` seconds, up to ``retries`` times; ``NAK busy`` retries
  too, any other NAK gives up. A reliable frame that arrives twice (its ACK was lost) is ACKed
  again and not applied twice. The per-tick frames (``CLOCK``, ``CALLS``, a single-frame
  ``input``) are not acknowledged: a late tick is worthless, the next one replaces it.
* **Messages** longer than the device's ``mtu`` are split into parts; parts from the device
  are joined up to ``max_message`` bytes.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from citytwin.firmware_bridge.frames import (
    Calls,
    Channel,
    Clock,
    Frame,
    FrameRefused,
    FrameType,
    Hello,
    Message,
    Nak,
    encode,
    pack_ack,
    pack_calls,
    pack_clock,
    pack_message,
    pack_nak,
    parse,
    unpack_ack,
    unpack_heads,
    unpack_hello,
    unpack_message,
    unpack_nak,
)
from citytwin.firmware_bridge.framing import FrameDecoder

__all__ = ["Event", "Inbound", "LineOptions", "LineSession", "Offline", "Online"]

_log = logging.getLogger(__name__)
_RELIABLE_CHANNELS = (Channel.CONFIG, Channel.CMD, Channel.ERROR)
_FROM_DEVICE = {Channel.STATE: "state", Channel.ACK: "ack"}


@dataclass(frozen=True)
class LineOptions:
    """Timing and limits of a :class:`LineSession`.

    Attributes:
        rto: Seconds to wait for an ACK before sending a reliable frame again.
        retries: Sends of one reliable frame before giving up on it.
        heartbeat: Seconds between the bridge's heartbeats to the device.
        hello_interval: Seconds between ``HELLO_REQ`` while no device is in session.
        timeout_factor: A device is gone after this many of its heartbeat intervals of silence.
        max_message: Largest JSON message taken from a device, bytes.
        queue_limit: Reliable frames waiting to be sent; more are dropped and counted.
    """

    rto: float = 0.25
    retries: int = 5
    heartbeat: float = 1.0
    hello_interval: float = 1.0
    timeout_factor: float = 3.0
    max_message: int = 16 * 1024
    queue_limit: int = 256

    def __post_init__(self) -> None:
        if not (self.rto > 0 and self.retries >= 1 and self.heartbeat > 0
                and self.hello_interval > 0 and self.timeout_factor >= 1
                and self.max_message >= 256 and self.queue_limit >= 1):
            raise ValueError(f"LineOptions out of range: {self}")


@dataclass(frozen=True)
class Online:
    """A device started a session with its ``HELLO`` (``previous``: the one it replaces)."""

    hello: Hello
    previous: Hello | None = None


@dataclass(frozen=True)
class Offline:
    """The device in session is gone, and why."""

    hello: Hello
    reason: str


@dataclass(frozen=True)
class Inbound:
    """A message of the device for MQTT: ``channel`` ``state`` or ``ack``, payload without
    ``v`` and ``seq`` (the gateway adds them)."""

    channel: str
    payload: dict[str, Any]


Event = Online | Offline | Inbound


@dataclass
class _InFlight:
    frame: Frame
    sent: float
    attempts: int


class LineSession:
    """One serial line seen from the bridge (one device at a time).

    Args:
        options: Timing and limits.
    """

    def __init__(self, options: LineOptions | None = None) -> None:
        self.options = options or LineOptions()
        self.decoder = FrameDecoder()
        #: Frames and messages in and out, refusals, retries, sessions and timeouts.
        self.counters: Counter[str] = Counter()
        self.hello: Hello | None = None
        self._open = False
        self._out = bytearray()
        self._tx_seq = 0
        self._queue: deque[Frame] = deque()
        self._inflight: _InFlight | None = None
        self._hello_seq = -1
        self._rx_last: int | None = None
        self._rx_reliable = -1
        self._parts: bytearray | None = None
        self._parts_channel: Channel | None = None
        self._last_rx = 0.0
        self._next_beat = 0.0

    # -- port ---------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether the port is open (as last told)."""
        return self._open

    def opened(self, now: float) -> None:
        """The port was (re)opened: start listening and ask for a ``HELLO``."""
        self._open = True
        self.decoder.reset()
        self._out.clear()
        self._next_beat = now
        self.poll(now)

    def closed(self, reason: str) -> list[Event]:
        """The port closed or failed: the device in session, if any, is gone."""
        self._open = False
        self._out.clear()
        self.decoder.reset()
        return self._end(f"port lost: {reason}")

    def take_output(self) -> bytes:
        """The bytes to write to the port now (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float:
        """The earliest time :meth:`poll` has something to do."""
        times = [self._next_beat]
        if self._inflight is not None:
            times.append(self._inflight.sent + self.options.rto)
        if self.hello is not None:
            times.append(self._last_rx + self._timeout(self.hello))
        return min(times)

    # -- time ---------------------------------------------------------------------------------
    def poll(self, now: float) -> list[Event]:
        """Run the timers: heartbeats or ``HELLO_REQ``, retransmissions, the device's
        heartbeat timeout."""
        events: list[Event] = []
        if not self._open:
            return events
        hello = self.hello
        if hello is not None and now - self._last_rx > self._timeout(hello):
            self.counters["heartbeat_timeouts"] += 1
            events += self._end(f"no frame for {now - self._last_rx:.2f} s (heartbeat "
                                f"timeout {self._timeout(hello):g} s)")
        if now >= self._next_beat:
            if self.hello is None:
                self._send(FrameType.HELLO_REQ)
                self._next_beat = now + self.options.hello_interval
            else:
                self._send(FrameType.HEARTBEAT)
                self._next_beat = now + self.options.heartbeat
        flight = self._inflight
        if flight is not None and now - flight.sent >= self.options.rto:
            if flight.attempts >= self.options.retries:
                self.counters["delivery_failed"] += 1
                _log.warning("%s: no ACK for %s seq %d after %d tries; dropped", self._who(),
                             flight.frame.type.name, flight.frame.seq, flight.attempts)
                self._inflight = None
            else:
                self.counters["retransmits"] += 1
                flight.sent, flight.attempts = now, flight.attempts + 1
                self._write(flight.frame)
        self._pump(now)
        return events

    # -- receiving ----------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Event]:
        """Take bytes read from the port; return what they meant."""
        events: list[Event] = []
        for body in self.decoder.feed(data):
            try:
                frame = parse(body)
            except FrameRefused as refusal:
                self._refused(refusal)
                continue
            self.counters["frames_in"] += 1
            try:
                events += self._frame(frame, now)
            except FrameRefused as refusal:
                refusal.seq, refusal.ack_requested = frame.seq, frame.ack_requested
                self._refused(refusal)
        self._pump(now)
        return events

    def _frame(self, frame: Frame, now: float) -> list[Event]:
        ftype = frame.type
        if ftype == FrameType.HELLO:
            return self._hello(frame, now)
        if self.hello is None:
            if ftype not in (FrameType.ACK, FrameType.NAK, FrameType.BYE):
                raise FrameRefused(Nak.NO_SESSION, "say HELLO first")
            return []
        self._last_rx = now
        self._track_seq(frame)
        if frame.ack_requested and frame.seq == self._rx_reliable:
            self.counters["duplicates"] += 1
            self._send(FrameType.ACK, pack_ack(frame.seq))
            return []
        events: list[Event] = []
        if ftype == FrameType.ACK:
            self._acked(unpack_ack(frame.payload))
        elif ftype == FrameType.NAK:
            self._naked(*unpack_nak(frame.payload))
        elif ftype == FrameType.BYE:
            events += self._end("it said goodbye (BYE)")
        elif ftype == FrameType.HEADS:
            heads = unpack_heads(frame.payload)
            events.append(Inbound("state", {"tick": heads.tick, "heads": heads.letters}))
        elif ftype == FrameType.MESSAGE:
            events += self._message(unpack_message(frame.payload))
        elif ftype != FrameType.HEARTBEAT:
            raise FrameRefused(Nak.UNKNOWN_TYPE, f"{ftype.name} is not sent by devices")
        if frame.ack_requested:
            self._rx_reliable = frame.seq
            self._send(FrameType.ACK, pack_ack(frame.seq))
        return events

    def _hello(self, frame: Frame, now: float) -> list[Event]:
        hello = unpack_hello(frame.payload)
        self._last_rx = now
        if hello == self.hello and frame.seq == self._hello_seq:
            self.counters["duplicates"] += 1  # our ACK was lost; same session
        else:
            previous, self.hello = self.hello, hello
            self._hello_seq = frame.seq
            self._reset_session()
            self.counters["sessions"] += 1
            _log.info("%s: HELLO (fw %r, heartbeat %g s)", self._who(), hello.fw,
                      hello.heartbeat)
            self._send(FrameType.ACK, pack_ack(frame.seq))
            self._next_beat = now + self.options.heartbeat
            return [Online(hello, previous)]
        self._send(FrameType.ACK, pack_ack(frame.seq))
        return []

    def _message(self, part: Message) -> list[Event]:
        name = _FROM_DEVICE.get(part.channel)
        if name is None:
            raise FrameRefused(Nak.MALFORMED, f"channel {part.channel.name} is not sent by "
                               "devices")
        if part.first:
            if self._parts is not None:
                self.counters["parts_abandoned"] += 1
            self._parts, self._parts_channel = bytearray(), part.channel
        elif self._parts is None or self._parts_channel != part.channel:
            raise FrameRefused(Nak.OUT_OF_ORDER, "a continuation without its first part")
        if len(self._parts) + len(part.data) > self.options.max_message:
            self._parts = None
            raise FrameRefused(Nak.TOO_LARGE, f"message over {self.options.max_message} bytes")
        self._parts += part.data
        if not part.last:
            return []
        data, self._parts = bytes(self._parts), None
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            payload = None
        if not isinstance(payload, dict):
            raise FrameRefused(Nak.MALFORMED, f"{name} message is not a JSON object")
        self.counters["messages_in"] += 1
        return [Inbound(name, payload)]

    def _acked(self, ref: int) -> None:
        if self._inflight is not None and self._inflight.frame.seq == ref:
            self._inflight = None
        else:
            self.counters["stray_acks"] += 1

    def _naked(self, ref: int, reason: int) -> None:
        self.counters["naks_received"] += 1
        try:
            name = Nak(reason).name.lower()
        except ValueError:
            name = f"reason {reason}"
        flight = self._inflight
        if flight is None or flight.frame.seq != ref:
            _log.info("%s: NAK %s for seq %d", self._who(), name, ref)
            return
        if reason == Nak.BUSY and flight.attempts < self.options.retries:
            return  # sent again when rto has passed
        self.counters["delivery_failed"] += 1
        _log.warning("%s: %s seq %d refused: %s", self._who(), flight.frame.type.name, ref,
                     name)
        self._inflight = None

    def _refused(self, refusal: FrameRefused) -> None:
        self.counters["refused"] += 1
        self.counters[f"refused.{refusal.reason.name.lower()}"] += 1
        _log.debug("%s: refused a frame: %s", self._who(), refusal)
        if refusal.seq is not None:
            self._send(FrameType.NAK, pack_nak(refusal.seq, refusal.reason))

    def _track_seq(self, frame: Frame) -> None:
        if self._rx_last is not None:
            gap = (frame.seq - self._rx_last - 1) & 0xFFFF
            if gap and gap < 0x8000:
                self.counters["frames_lost"] += gap
        self._rx_last = frame.seq

    # -- sending ------------------------------------------------------------------------------
    def send_clock(self, clock: Clock) -> None:
        """Forward the sim clock (not acknowledged)."""
        if self.hello is not None:
            self._send(FrameType.CLOCK, pack_clock(clock))

    def send_calls(self, calls: Calls) -> None:
        """Forward a signal controller's detector input (not acknowledged)."""
        if self.hello is not None:
            self._send(FrameType.CALLS, pack_calls(calls))

    def send_sim_avail(self, online: bool) -> None:
        """Tell the device whether the simulator is online (reliable)."""
        if self.hello is not None:
            self._enqueue(Frame(FrameType.SIM_AVAIL, 0, bytes((int(online),)), True))

    def send_message(self, channel: Channel, data: bytes) -> bool:
        """Send a JSON message, split into parts as the device's ``mtu`` needs.

        Returns:
            False if no device is in session or the message is over its ``rx_max``.
        """
        hello = self.hello
        if hello is None:
            return False
        if len(data) > hello.rx_max:
            self.counters["too_large_for_device"] += 1
            _log.warning("%s: a %d-byte %s message is over the device's rx_max of %d bytes; "
                         "not sent", self._who(), len(data), channel.name.lower(), hello.rx_max)
            return False
        size = hello.mtu - 2
        parts = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        reliable = channel in _RELIABLE_CHANNELS or len(parts) > 1
        for k, chunk in enumerate(parts):
            payload = pack_message(Message(channel, k == 0, k == len(parts) - 1, chunk))
            if reliable:
                self._enqueue(Frame(FrameType.MESSAGE, 0, payload, True))
            else:
                self._send(FrameType.MESSAGE, payload)
        self.counters["messages_out"] += 1
        return True

    def _enqueue(self, frame: Frame) -> None:
        if len(self._queue) >= self.options.queue_limit:
            self.counters["queue_full"] += 1
            return
        self._queue.append(frame)

    def _pump(self, now: float) -> None:
        if self._inflight is None and self._queue and self._open:
            f = self._queue.popleft()
            frame = Frame(f.type, self._take_seq(), f.payload, True)
            self._inflight = _InFlight(frame, now, 1)
            self._write(frame)

    def _send(self, ftype: FrameType, payload: bytes = b"") -> None:
        if self._open:
            self._write(Frame(ftype, self._take_seq(), payload))

    def _write(self, frame: Frame) -> None:
        self.counters["frames_out"] += 1
        self._out += encode(frame)

    def _take_seq(self) -> int:
        seq = self._tx_seq
        self._tx_seq = (seq + 1) & 0xFFFF
        return seq

    # -- internals ----------------------------------------------------------------------------
    def _timeout(self, hello: Hello) -> float:
        return self.options.timeout_factor * hello.heartbeat

    def _reset_session(self) -> None:
        self._queue.clear()
        self._inflight = None
        self._rx_last = None
        self._rx_reliable = -1
        self._parts = None

    def _end(self, reason: str) -> list[Event]:
        hello = self.hello
        self.hello = None
        self._reset_session()
        if hello is None:
            return []
        _log.info("%s/%s: offline: %s", hello.kind, hello.device_id, reason)
        return [Offline(hello, reason)]

    def _who(self) -> str:
        return f"{self.hello.kind}/{self.hello.device_id}" if self.hello else "serial line"
