"""Frames of the serial protocol, version 1: header, types and payload layouts. No I/O.

A frame body (inside the COBS framing of :mod:`citytwin.firmware_bridge.framing`) is::

    version (u8 = 1) | type (u8) | flags (u8) | seq (u16, big-endian) | payload

``flags`` bit 0 asks the receiver for an ``ACK`` (or a ``NAK``); the other bits are sent as 0
and ignored. ``seq`` counts every frame a sender sends (wrapping after 65535); a frame sent
again because its ``ACK`` did not come keeps its ``seq``. Payload layouts are fixed binary for
the per-tick traffic (``CLOCK``, ``CALLS``, ``HEADS``) and JSON for everything else
(``HELLO``, ``MESSAGE``), so that a microcontroller parses the hot path with one
``struct.unpack`` and the rare messages with its ``json`` module. The full table is in
``docs/firmware-protocol.md``.

:func:`parse` turns a body into a :class:`Frame` or raises :class:`FrameRefused` with the
:class:`Nak` reason to answer; the ``unpack_*`` functions read typed payloads the same way.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from citytwin.firmware_bridge.framing import MAX_BODY, encode_frame
from citytwin.hil.protocol import valid_name

__all__ = ["ACK_REQUESTED", "FIRST", "HEADER", "LAST", "MAX_PAYLOAD", "MODES", "VERSION",
           "Calls", "Channel", "Clock", "Frame", "FrameRefused", "FrameType", "Heads", "Hello",
           "Message", "Nak", "encode", "json_object", "pack_ack", "pack_calls", "pack_clock",
           "pack_heads", "pack_message", "pack_nak", "parse", "split_message", "unpack_ack",
           "unpack_calls", "unpack_clock", "unpack_heads", "unpack_hello", "unpack_message",
           "unpack_nak"]

#: Protocol version (the first byte of every body).
VERSION = 1
#: ``version, type, flags, seq``.
HEADER = struct.Struct(">BBBH")
#: Largest payload, bytes.
MAX_PAYLOAD = MAX_BODY - HEADER.size
#: Header flag: the receiver must answer with ACK or NAK.
ACK_REQUESTED = 0x01
#: ``MESSAGE`` part flags.
FIRST, LAST = 0x01, 0x02
#: Clock modes, in the order of their code.
MODES = ("fast", "realtime", "lockstep")
_U16 = struct.Struct(">H")
_NAK = struct.Struct(">HB")
_CLOCK = struct.Struct(">IIIB")
_TICK_T = struct.Struct(">IIH")
_TICK = struct.Struct(">I")
_MSG = struct.Struct(">BB")
_U32_MAX = 2**32 - 1
_KINDS = ("signal", "drone", "meter")


class FrameType(IntEnum):
    """Frame types of protocol version 1."""

    HELLO = 0x01      # device -> bridge: identity; always asks for an ACK
    HELLO_REQ = 0x02  # bridge -> device: please say HELLO
    HEARTBEAT = 0x03  # both ways: I am here
    ACK = 0x04        # both ways: u16 seq of the frame acknowledged
    NAK = 0x05        # both ways: u16 seq and a u8 reason
    BYE = 0x06        # device -> bridge: going away on purpose
    CLOCK = 0x10      # bridge -> device: the sim clock
    SIM_AVAIL = 0x11  # bridge -> device: the simulator is online (1) or offline (0)
    CALLS = 0x12      # bridge -> device: a signal controller's detector input
    HEADS = 0x13      # device -> bridge: a signal controller's heads
    MESSAGE = 0x20    # both ways: a JSON message of one channel, in one or more parts


class Nak(IntEnum):
    """Why a frame was refused (the reason byte of a ``NAK``)."""

    UNSUPPORTED_VERSION = 1
    UNKNOWN_TYPE = 2
    MALFORMED = 3
    TOO_LARGE = 4
    NO_SESSION = 5
    BUSY = 6
    REFUSED = 7
    OUT_OF_ORDER = 8


class Channel(IntEnum):
    """Channels a ``MESSAGE`` carries (the MQTT channel it maps to)."""

    CONFIG = 1  # bridge -> device
    INPUT = 2   # bridge -> device (kinds without the compact CALLS layout)
    CMD = 3     # bridge -> device
    ERROR = 4   # bridge -> device
    STATE = 5   # device -> bridge
    ACK = 6     # device -> bridge (a command's ack)


class FrameRefused(Exception):  # noqa: N818 - a verdict, answered with a NAK
    """A body (or payload) that arrived intact but cannot be taken.

    Attributes:
        reason: The :class:`Nak` reason to answer with.
        seq: The frame's ``seq`` if the header could be read, else None.
        ack_requested: Whether the sender asked for an answer.
    """

    def __init__(self, reason: Nak, detail: str, seq: int | None = None,
                 ack_requested: bool = False) -> None:
        super().__init__(f"{reason.name.lower()}: {detail}")
        self.reason = reason
        self.detail = detail
        self.seq = seq
        self.ack_requested = ack_requested


@dataclass(frozen=True)
class Frame:
    """One frame: its type, sequence number, payload and whether it asks for an ACK."""

    type: FrameType
    seq: int
    payload: bytes = b""
    ack_requested: bool = False


def encode(frame: Frame) -> bytes:
    """The wire bytes of ``frame`` (delimiters included).

    Raises:
        ValueError: The payload is over :data:`MAX_PAYLOAD` or ``seq`` is not a u16.
    """
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(frame.payload)} bytes; the limit is {MAX_PAYLOAD}")
    if not 0 <= frame.seq <= 0xFFFF:
        raise ValueError(f"seq {frame.seq} is not a u16")
    flags = ACK_REQUESTED if frame.ack_requested else 0
    return encode_frame(HEADER.pack(VERSION, int(frame.type), flags, frame.seq) + frame.payload)


def parse(body: bytes) -> Frame:
    """Read a frame body.

    Raises:
        FrameRefused: ``MALFORMED`` (shorter than a header), ``UNSUPPORTED_VERSION`` or
            ``UNKNOWN_TYPE``.
    """
    if len(body) < HEADER.size:
        raise FrameRefused(Nak.MALFORMED, f"{len(body)} bytes is shorter than a header")
    version, kind, flags, seq = HEADER.unpack_from(body)
    ack = bool(flags & ACK_REQUESTED)
    if version != VERSION:
        raise FrameRefused(Nak.UNSUPPORTED_VERSION, f"protocol version {version}; this bridge "
                           f"speaks {VERSION}", seq, ack)
    try:
        ftype = FrameType(kind)
    except ValueError:
        raise FrameRefused(Nak.UNKNOWN_TYPE, f"frame type 0x{kind:02x}", seq, ack) from None
    return Frame(ftype, seq, body[HEADER.size:], ack)


def _malformed(what: str, payload: bytes) -> FrameRefused:
    return FrameRefused(Nak.MALFORMED, f"{what}: {len(payload)} bytes do not fit its layout")


# -- ACK / NAK --------------------------------------------------------------------------------
def pack_ack(ref: int) -> bytes:
    """``ACK`` payload: the acknowledged ``seq``."""
    return _U16.pack(ref)


def unpack_ack(payload: bytes) -> int:
    """The ``seq`` an ``ACK`` acknowledges. Raises FrameRefused (MALFORMED)."""
    if len(payload) < _U16.size:
        raise _malformed("ACK", payload)
    return int(_U16.unpack_from(payload)[0])


def pack_nak(ref: int, reason: Nak) -> bytes:
    """``NAK`` payload: the refused ``seq`` and the reason."""
    return _NAK.pack(ref, int(reason))


def unpack_nak(payload: bytes) -> tuple[int, int]:
    """``(seq, reason code)`` of a ``NAK`` (the code may be one this side does not know).

    Raises FrameRefused (MALFORMED)."""
    if len(payload) < _NAK.size:
        raise _malformed("NAK", payload)
    ref, reason = _NAK.unpack_from(payload)
    return int(ref), int(reason)


# -- CLOCK ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clock:
    """The sim clock: tick, sim time and tick length in seconds (sent as milliseconds)."""

    tick: int
    t: float
    dt: float
    mode: str = "fast"


def _ms(seconds: float, what: str) -> int:
    ms = round(seconds * 1000)
    if not 0 <= ms <= _U32_MAX:
        raise ValueError(f"{what} {seconds} s does not fit u32 milliseconds (0-49.7 days)")
    return ms


def pack_clock(clock: Clock) -> bytes:
    """``CLOCK`` payload: u32 tick, u32 t in ms, u32 dt in ms, u8 mode.

    Raises:
        ValueError: A value out of range, or an unknown mode.
    """
    if not 0 <= clock.tick <= _U32_MAX or clock.mode not in MODES:
        raise ValueError(f"clock {clock}: tick must be a u32, mode one of {MODES}")
    return _CLOCK.pack(clock.tick, _ms(clock.t, "t"), _ms(clock.dt, "dt"),
                       MODES.index(clock.mode))


def unpack_clock(payload: bytes) -> Clock:
    """Read a ``CLOCK`` payload. Raises FrameRefused (MALFORMED)."""
    if len(payload) < _CLOCK.size:
        raise _malformed("CLOCK", payload)
    tick, t, dt, mode = _CLOCK.unpack_from(payload)
    return Clock(tick, t / 1000, dt / 1000, MODES[mode] if mode < len(MODES) else "fast")


# -- CALLS (a signal controller's input) ------------------------------------------------------
@dataclass(frozen=True)
class Calls:
    """A signal controller's input: detector presence during tick ``tick`` (ends at ``t``)."""

    tick: int
    t: float
    calls: tuple[bool, ...]


def pack_calls(calls: Calls) -> bytes:
    """``CALLS`` payload: u32 tick, u32 t in ms, u16 n, then n presence bits, LSB first.

    Raises:
        ValueError: A value out of range, or too many detectors for one frame.
    """
    n = len(calls.calls)
    if not 0 <= calls.tick <= _U32_MAX or _TICK_T.size + (n + 7) // 8 > MAX_PAYLOAD:
        raise ValueError(f"CALLS for tick {calls.tick} with {n} detectors does not fit")
    bits = bytearray((n + 7) // 8)
    for i, present in enumerate(calls.calls):
        if present:
            bits[i >> 3] |= 1 << (i & 7)
    return _TICK_T.pack(calls.tick, _ms(calls.t, "t"), n) + bytes(bits)


def unpack_calls(payload: bytes) -> Calls:
    """Read a ``CALLS`` payload. Raises FrameRefused (MALFORMED)."""
    if len(payload) < _TICK_T.size:
        raise _malformed("CALLS", payload)
    tick, t, n = _TICK_T.unpack_from(payload)
    bits = payload[_TICK_T.size:]
    if len(bits) != (n + 7) // 8:
        raise _malformed("CALLS", payload)
    return Calls(tick, t / 1000, tuple(bool(bits[i >> 3] >> (i & 7) & 1) for i in range(n)))


# -- HEADS (a signal controller's state) ------------------------------------------------------
@dataclass(frozen=True)
class Heads:
    """A signal controller's state: one SUMO letter per link, answering tick ``tick``."""

    tick: int
    letters: str


def pack_heads(heads: Heads) -> bytes:
    """``HEADS`` payload: u32 tick, then one ASCII letter per link."""
    return _TICK.pack(heads.tick) + heads.letters.encode("ascii")


def unpack_heads(payload: bytes) -> Heads:
    """Read a ``HEADS`` payload. Raises FrameRefused (MALFORMED) unless ASCII letters."""
    letters = payload[_TICK.size:]
    if not letters.isalpha():  # bytes: ASCII letters only, and not empty
        raise _malformed("HEADS", payload)
    return Heads(int(_TICK.unpack_from(payload)[0]), letters.decode("ascii"))


# -- MESSAGE ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """One part of a JSON message: its channel, whether it is the first and/or last part, and
    its bytes (a message is the concatenation of its parts, UTF-8 JSON)."""

    channel: Channel
    first: bool
    last: bool
    data: bytes


def pack_message(message: Message) -> bytes:
    """``MESSAGE`` payload: u8 channel, u8 part flags (bit 0 first, bit 1 last), bytes."""
    flags = (FIRST if message.first else 0) | (LAST if message.last else 0)
    return _MSG.pack(int(message.channel), flags) + message.data


def split_message(channel: Channel, data: bytes, mtu: int) -> list[bytes]:
    """The ``MESSAGE`` payloads that carry ``data`` to a peer taking ``mtu``-byte payloads
    (one part for an empty message)."""
    size = mtu - _MSG.size
    if size < 1:
        raise ValueError(f"mtu {mtu} leaves no room for message bytes")
    chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    last = len(chunks) - 1
    return [pack_message(Message(channel, k == 0, k == last, chunk))
            for k, chunk in enumerate(chunks)]


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a UTF-8 JSON object (strict JSON: no ``NaN`` or ``Infinity``).

    Raises:
        FrameRefused: ``MALFORMED`` (not UTF-8 JSON, too deeply nested, not an object).
    """
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FrameRefused(Nak.MALFORMED, f"{what} is not UTF-8 JSON (NaN and Infinity are "
                           "not JSON)") from None
    if not isinstance(value, dict):
        raise FrameRefused(Nak.MALFORMED, f"{what} must be a JSON object")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def unpack_message(payload: bytes) -> Message:
    """Read a ``MESSAGE`` payload. Raises FrameRefused (MALFORMED)."""
    if len(payload) < _MSG.size:
        raise _malformed("MESSAGE", payload)
    code, flags = _MSG.unpack_from(payload)
    try:
        channel = Channel(code)
    except ValueError:
        raise FrameRefused(Nak.MALFORMED, f"MESSAGE channel {code} is unknown") from None
    return Message(channel, bool(flags & FIRST), bool(flags & LAST), payload[_MSG.size:])


# -- HELLO ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    """A device's identity and limits, from its ``HELLO``.

    Attributes:
        kind: ``signal``, ``drone`` or ``meter``.
        device_id: The device id (1-64 of ``A-Z a-z 0-9 _ . -``).
        fw: Firmware name and version.
        lockstep: The simulator may wait for this device every tick.
        heartbeat: Seconds between the device's heartbeats.
        mtu: Largest payload the device accepts in one frame, bytes.
        rx_max: Largest JSON message the device accepts, bytes.
        capabilities: Passed into the MQTT ``birth``.
    """

    kind: str
    device_id: str
    fw: str = ""
    lockstep: bool = False
    heartbeat: float = 1.0
    mtu: int = MAX_PAYLOAD
    rx_max: int = 4096
    capabilities: dict[str, Any] = field(default_factory=dict)

    def birth(self) -> dict[str, Any]:
        """The MQTT ``birth`` payload (without ``v``)."""
        return {"kind": self.kind, "fw": self.fw, "lockstep": self.lockstep,
                "capabilities": self.capabilities}


def unpack_hello(payload: bytes) -> Hello:
    """Read a ``HELLO`` payload: a JSON object ``{"kind", "id", "fw"?, "lockstep"?, "hb_ms"?,
    "mtu"?, "rx_max"?, "caps"?}``.

    Raises:
        FrameRefused: ``MALFORMED`` (not a JSON object, a field of the wrong type) or
            ``REFUSED`` (unknown kind, invalid id, limits out of range).
    """
    data = json_object(payload, "HELLO")
    kind, device_id, fw = data.get("kind"), data.get("id"), data.get("fw", "")
    lockstep, caps = data.get("lockstep", False), data.get("caps", {})
    numbers = [data.get(k, d) for k, d in (("hb_ms", 1000), ("mtu", MAX_PAYLOAD),
                                           ("rx_max", 4096))]
    if not (isinstance(device_id, str) and isinstance(fw, str) and isinstance(lockstep, bool)
            and isinstance(caps, dict)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in numbers)):
        raise FrameRefused(Nak.MALFORMED, "HELLO fields: id and fw strings, lockstep a "
                           "boolean, hb_ms/mtu/rx_max integers, caps an object")
    hb_ms, mtu, rx_max = numbers
    if kind not in _KINDS or not valid_name(device_id) or len(fw) > 64:
        raise FrameRefused(Nak.REFUSED, f"HELLO kind {kind!r} id {device_id!r}: need a kind "
                           f"of {', '.join(_KINDS)} and an id of 1-64 A-Z a-z 0-9 _ . -")
    if not (50 <= hb_ms <= 60_000 and 64 <= mtu <= MAX_PAYLOAD and 256 <= rx_max <= 1 << 20):
        raise FrameRefused(Nak.REFUSED, f"HELLO limits hb_ms={hb_ms} mtu={mtu} rx_max={rx_max}:"
                           f" need 50-60000, 64-{MAX_PAYLOAD} and 256-1048576")
    return Hello(kind, device_id, fw, lockstep, hb_ms / 1000, mtu, rx_max, caps)
