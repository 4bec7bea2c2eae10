"""The bridge's side of one serial line: handshake, liveness, what frames mean. No I/O.

:class:`LineSession` is fed the bytes the port read (:meth:`~LineSession.receive`) and the
time (:meth:`~LineSession.poll`), and returns :class:`Online`, :class:`Offline` and
:class:`Inbound` events; what it wants written to the port collects in
:meth:`~LineSession.take_output`. The clock is passed in, so tests drive it with numbers.

The rules it keeps (``docs/firmware-protocol.md``):

* **Handshake.** While no device is in session it sends ``HELLO_REQ`` every
  ``hello_interval``; a valid ``HELLO`` starts a session (:class:`Online`) and is ACKed. The
  same ``HELLO`` again (same bytes, same ``seq``) before any other frame of the session is a
  resend whose ACK was lost: ACKed again, nothing else. Any other ``HELLO`` starts a new
  session (a rebooted board, or another board on the line). Frames other than ``HELLO``,
  ``ACK``, ``NAK`` and ``BYE`` outside a session get ``NAK no_session``: say ``HELLO``.
* **Liveness.** In a session the bridge sends a ``HEARTBEAT`` every ``heartbeat`` seconds
  (at most 1 s, so a device may give the bridge up after 3.5 s of silence). A device that
  sends no valid frame for ``timeout_factor`` times the heartbeat interval its ``HELLO``
  promised is gone (:class:`Offline`); so is one that says ``BYE``, and the device in session
  when the port closes (:meth:`~LineSession.closed`).
* **Delivery** (:class:`~citytwin.firmware_bridge.outbox.Outbox`): control frames at once,
  reliable frames one at a time until ACKed, per-tick frames in order behind them. A reliable
  frame from the device that arrives twice (our ACK was lost) is ACKed again, applied once.
* **Messages** longer than the device's ``mtu`` are split into parts; parts from the device
  are joined, one message in progress per channel, up to ``max_message`` bytes.
"""

from __future__ import annotations

import logging
from collections import Counter
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
    json_object,
    pack_ack,
    pack_calls,
    pack_clock,
    pack_nak,
    parse,
    split_message,
    unpack_ack,
    unpack_heads,
    unpack_hello,
    unpack_message,
    unpack_nak,
)
from citytwin.firmware_bridge.framing import FrameDecoder
from citytwin.firmware_bridge.outbox import Outbox

__all__ = ["MAX_BRIDGE_HEARTBEAT", "Event", "Inbound", "LineOptions", "LineSession",
           "Offline", "Online"]

_log = logging.getLogger(__name__)
#: Longest interval between the bridge's heartbeats, seconds (devices rely on it).
MAX_BRIDGE_HEARTBEAT = 1.0
_RELIABLE_CHANNELS = (Channel.CONFIG, Channel.CMD, Channel.ERROR)
_FROM_DEVICE = {Channel.STATE: "state", Channel.ACK: "ack"}
_NO_SESSION_OK = (FrameType.ACK, FrameType.NAK, FrameType.BYE)


@dataclass(frozen=True)
class LineOptions:
    """Timing and limits of a :class:`LineSession`.

    Attributes:
        rto: Seconds to wait for an ACK before sending a reliable frame again.
        retries: Sends of one reliable frame before giving up on it.
        heartbeat: Seconds between the bridge's heartbeats (at most 1).
        hello_interval: Seconds between ``HELLO_REQ`` while no device is in session.
        timeout_factor: A device is gone after this many of its heartbeat intervals of silence.
        max_message: Largest JSON message taken from a device, bytes (at most 16 KiB, the MQTT
            contract's limit).
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
        if not (self.rto > 0 and self.retries >= 1
                and 0 < self.heartbeat <= MAX_BRIDGE_HEARTBEAT
                and self.hello_interval > 0 and self.timeout_factor >= 1
                and 256 <= self.max_message <= 16 * 1024 and self.queue_limit >= 1):
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


class LineSession:
    """One serial line seen from the bridge (one device at a time).

    Args:
        options: Timing and limits.
    """

    def __init__(self, options: LineOptions | None = None) -> None:
        self.options = opts = options or LineOptions()
        self.decoder = FrameDecoder()
        #: Frames and messages in and out, refusals, retries, sessions and timeouts.
        self.counters: Counter[str] = Counter()
        self.outbox = Outbox(opts.rto, opts.retries, opts.queue_limit, self.counters)
        #: The device in session, if any.
        self.hello: Hello | None = None
        self._open = False
        self._hello_seq = -1
        self._heard_since_hello = False
        self._rx_last: int | None = None
        self._rx_reliable = -1
        self._parts: dict[Channel, bytearray] = {}  # a message in progress per channel
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
        self.outbox.clear()
        self.outbox.discard_output()
        self._next_beat = now
        self.poll(now)

    def closed(self, reason: str) -> list[Event]:
        """The port closed or failed: the device in session, if any, is gone."""
        self._open = False
        self.decoder.reset()
        self.outbox.discard_output()
        return self._end(f"port lost: {reason}")

    def take_output(self) -> bytes:
        """The bytes to write to the port now (and forget them)."""
        return self.outbox.take_output()

    def next_deadline(self) -> float:
        """The earliest time :meth:`poll` has something to do."""
        times = [self._next_beat]
        resend = self.outbox.next_deadline()
        if resend is not None:
            times.append(resend)
        if self.hello is not None:
            times.append(self._last_rx + self._timeout(self.hello))
        return min(times)

    # -- time ---------------------------------------------------------------------------------
    def poll(self, now: float) -> list[Event]:
        """Run the timers: heartbeats or ``HELLO_REQ``, resends, the device's heartbeat
        timeout."""
        events: list[Event] = []
        if not self._open:
            return events
        hello = self.hello
        if hello is not None and now - self._last_rx > self._timeout(hello):
            self.counters["heartbeat_timeouts"] += 1
            events += self._end(f"no frame for {now - self._last_rx:.2f} s (heartbeat "
                                f"timeout {self._timeout(hello):g} s)")
            self._next_beat = now  # ask for a HELLO at once
        if now >= self._next_beat:
            if self.hello is None:
                self.outbox.control(FrameType.HELLO_REQ)
                self._next_beat = now + self.options.hello_interval
            else:
                self.outbox.control(FrameType.HEARTBEAT)
                self._next_beat = now + self.options.heartbeat
        self.outbox.poll(now)
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
        return events

    def _frame(self, frame: Frame, now: float) -> list[Event]:
        ftype = frame.type
        if ftype == FrameType.HELLO:
            return self._hello(frame, now)
        if self.hello is None:
            if ftype not in _NO_SESSION_OK:
                raise FrameRefused(Nak.NO_SESSION, "say HELLO first")
            return []
        self._last_rx = now
        self._heard_since_hello = True
        self._track_seq(frame)
        if frame.ack_requested and frame.seq == self._rx_reliable:
            self.counters["duplicates"] += 1
            self.outbox.control(FrameType.ACK, pack_ack(frame.seq))
            return []
        events: list[Event] = []
        if ftype == FrameType.ACK:
            self.outbox.acked(unpack_ack(frame.payload), now)
        elif ftype == FrameType.NAK:
            ref, reason = unpack_nak(frame.payload)
            self.counters["naks_received"] += 1
            if not self.outbox.naked(ref, reason, now):
                _log.info("%s: NAK %d for seq %d", self._who(), reason, ref)
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
            self.outbox.control(FrameType.ACK, pack_ack(frame.seq))
        return events

    def _hello(self, frame: Frame, now: float) -> list[Event]:
        hello = unpack_hello(frame.payload)
        self._last_rx = now
        if (hello == self.hello and frame.seq == self._hello_seq
                and not self._heard_since_hello):
            self.counters["duplicates"] += 1  # our ACK was lost; same session
            self.outbox.control(FrameType.ACK, pack_ack(frame.seq))
            return []
        previous, self.hello = self.hello, hello
        self._reset_session()
        self.outbox.control(FrameType.ACK, pack_ack(frame.seq))
        self._hello_seq, self._rx_last = frame.seq, frame.seq
        self.counters["sessions"] += 1
        _log.info("%s: HELLO (fw %r, heartbeat %g s)", self._who(), hello.fw, hello.heartbeat)
        self._next_beat = now + self.options.heartbeat
        return [Online(hello, previous)]

    def _message(self, part: Message) -> list[Event]:
        name = _FROM_DEVICE.get(part.channel)
        if name is None:
            raise FrameRefused(Nak.MALFORMED, f"channel {part.channel.name} is not sent by "
                               "devices")
        parts = self._parts.get(part.channel)
        if part.first:
            if parts is not None:
                self.counters["parts_abandoned"] += 1
            parts = self._parts[part.channel] = bytearray()
        elif parts is None:
            raise FrameRefused(Nak.OUT_OF_ORDER, "a continuation without its first part")
        if len(parts) + len(part.data) > self.options.max_message:
            del self._parts[part.channel]
            raise FrameRefused(Nak.TOO_LARGE, f"message over {self.options.max_message} bytes")
        parts += part.data
        if not part.last:
            return []
        data = bytes(self._parts.pop(part.channel))
        payload = json_object(data, f"{name} message")
        self.counters["messages_in"] += 1
        return [Inbound(name, payload)]

    def _refused(self, refusal: FrameRefused) -> None:
        self.counters["refused"] += 1
        self.counters[f"refused.{refusal.reason.name.lower()}"] += 1
        _log.debug("%s: refused a frame: %s", self._who(), refusal)
        if refusal.seq is not None:
            self.outbox.control(FrameType.NAK, pack_nak(refusal.seq, refusal.reason))

    def _track_seq(self, frame: Frame) -> None:
        if self._rx_last is not None:
            gap = (frame.seq - self._rx_last - 1) & 0xFFFF
            if gap and gap < 0x8000:
                self.counters["frames_lost"] += gap
        self._rx_last = frame.seq

    # -- sending ------------------------------------------------------------------------------
    def send_clock(self, clock: Clock, now: float) -> None:
        """Forward the sim clock (per tick, not acknowledged)."""
        if self.hello is not None:
            self.outbox.per_tick("clock", FrameType.CLOCK, pack_clock(clock), now)

    def send_calls(self, calls: Calls, now: float) -> None:
        """Forward a signal controller's detector input (per tick, not acknowledged)."""
        if self.hello is not None:
            self.outbox.per_tick("calls", FrameType.CALLS, pack_calls(calls), now)

    def send_sim_avail(self, online: bool, now: float) -> None:
        """Tell the device whether the simulator is online (reliable)."""
        if self.hello is not None:
            self.outbox.reliable(FrameType.SIM_AVAIL, bytes((int(online),)), now)

    def send_message(self, channel: Channel, data: bytes, now: float) -> bool:
        """Send a JSON message, split into parts as the device's ``mtu`` needs.

        Returns:
            False if no device is in session, the message is over its ``rx_max``, or the
            reliable queue is full.
        """
        hello = self.hello
        if hello is None:
            return False
        if len(data) > hello.rx_max:
            self.counters["too_large_for_device"] += 1
            _log.warning("%s: a %d-byte %s message is over the device's rx_max of %d bytes; "
                         "not sent", self._who(), len(data), channel.name.lower(), hello.rx_max)
            return False
        parts = split_message(channel, data, hello.mtu)
        if channel in _RELIABLE_CHANNELS or len(parts) > 1:
            for payload in parts:
                if not self.outbox.reliable(FrameType.MESSAGE, payload, now):
                    return False
        else:
            self.outbox.per_tick(f"message.{channel.name}", FrameType.MESSAGE, parts[0], now)
        self.counters["messages_out"] += 1
        return True

    # -- internals ----------------------------------------------------------------------------
    def _timeout(self, hello: Hello) -> float:
        return self.options.timeout_factor * hello.heartbeat

    def _reset_session(self) -> None:
        self.outbox.clear()
        self._heard_since_hello = False
        self._rx_last = None
        self._rx_reliable = -1
        self._parts.clear()

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
