"""Serial framing: bytes on the line <-> frame bodies. Pure code, no I/O.

A frame on the wire (``docs/firmware-protocol.md``)::

    0x00 | COBS(body) | check (3 bytes) | 0x00

* **COBS** (Cheshire and Baker's consistent overhead byte stuffing) removes every 0x00 from
  the body, so 0x00 only ever delimits frames: a receiver that lost its place (noise, a port
  opened mid-frame) is back in step at the next 0x00. Every frame is *preceded* by a delimiter
  too, so garbage on the line ends at that delimiter and never swallows the frame after it.
* **check**: CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no
  final XOR; check value 0x29B1 for ``b"123456789"``) computed over the *encoded* bytes, sent
  as three bytes that are never zero: ``0x80 | crc >> 9``, ``0x80 | (crc >> 2) & 0x7F``,
  ``0x80 | crc & 0x03``. Because the CRC covers exactly the bytes on the line, a bit error on
  the line is the same bit error in the checked code word, and the CRC's Hamming distance of 4
  (for up to 4,093 bytes) holds for the line itself: every error of 1, 2 or 3 bits, and every
  error of an odd number of bits, is detected. A CRC over the *decoded* body would not give
  that: one flipped COBS code byte moves zeros around and becomes many bit errors.
* Bounded: an encoded frame (COBS bytes and check) is at most :data:`MAX_FRAME` bytes; a
  longer run without a delimiter is counted as ``oversized`` and skipped up to the next one.

:class:`FrameDecoder` is the incremental receiver (the Packetizer half of pyserial's
``serial.threaded`` split; the port half is :mod:`citytwin.firmware_bridge.port`).
"""

from __future__ import annotations

import binascii
from collections import Counter

__all__ = ["CHECK_SIZE", "DELIMITER", "MAX_BODY", "MAX_FRAME", "FrameDecoder", "FramingError",
           "cobs_decode", "cobs_encode", "crc16", "encode_frame"]

#: The frame delimiter.
DELIMITER = 0
#: Largest frame body (header and payload), bytes.
MAX_BODY = 1029
#: Bytes of the check trailer.
CHECK_SIZE = 3
#: Largest encoded frame between delimiters (COBS overhead of MAX_BODY plus the check).
MAX_FRAME = MAX_BODY + MAX_BODY // 254 + 1 + CHECK_SIZE
_DELIM = b"\x00"


class FramingError(ValueError):
    """Bytes that are not a valid encoded frame (or a body that cannot be framed)."""


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc`` continues an earlier computation)."""
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``: the result has no 0x00 and is one byte longer per started
    254-byte run without a zero (and one byte longer than ``data`` at least)."""
    out = bytearray()
    for block in data.split(_DELIM):
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Decode COBS bytes (without delimiters).

    Raises:
        FramingError: A zero byte, or a code byte that points past the end.
    """
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise FramingError(f"COBS code byte {code} at {i} does not fit {n} bytes")
        block = data[i + 1:end]
        if _DELIM in block:
            raise FramingError("COBS data contains a zero byte")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def _check(crc: int) -> bytes:
    return bytes((0x80 | crc >> 9, 0x80 | (crc >> 2) & 0x7F, 0x80 | crc & 0x03))


def encode_frame(body: bytes) -> bytes:
    """The wire bytes of one frame: leading delimiter, COBS body, check, delimiter.

    Raises:
        FramingError: ``body`` is empty or longer than :data:`MAX_BODY`.
    """
    if not 0 < len(body) <= MAX_BODY:
        raise FramingError(f"a frame body has 1-{MAX_BODY} bytes, not {len(body)}")
    encoded = cobs_encode(body)
    return _DELIM + encoded + _check(crc16(encoded)) + _DELIM


class FrameDecoder:
    """Incremental receiver: feed it whatever the port read, get the intact frame bodies back.

    Every run of bytes between two delimiters is one candidate frame. Empty runs (two
    delimiters in a row) are normal and ignored. Any other run that is not an intact frame is
    rejected and counted in :attr:`counters` under one reason:

    * ``oversized``: more than ``max_frame`` bytes without a delimiter (the bytes are dropped
      as they come, so memory stays bounded, until the next delimiter);
    * ``short``: too short to hold a check and a body;
    * ``bad_check``: the check bytes are malformed or the CRC does not match (noise, a frame
      cut short by a lost connection or a port opened mid-frame, two frames run together);
    * ``bad_cobs``: the CRC matched but the COBS structure is invalid (a sender bug).

    Attributes:
        counters: ``frames`` (accepted), ``rejected`` (all rejections) and the reasons above;
            ``bytes`` (all bytes fed).

    Args:
        max_frame: Longest encoded frame accepted, bytes.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if max_frame < CHECK_SIZE + 2:
            raise ValueError(f"max_frame must be at least {CHECK_SIZE + 2}, not {max_frame}")
        self.max_frame = max_frame
        self.counters: Counter[str] = Counter()
        self._buf = bytearray()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes held for a frame whose delimiter has not arrived yet."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partly received frame (e.g. after the port was reopened)."""
        self._buf.clear()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the line; return the bodies of the frames they completed, in order."""
        self.counters["bytes"] += len(data)
        bodies: list[bytes] = []
        start = 0
        while True:
            end = data.find(_DELIM, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._skipping:
                if len(self._buf) + len(chunk) > self.max_frame:
                    self._reject("oversized")
                    self._buf.clear()
                    self._skipping = True
                else:
                    self._buf += chunk
            if end < 0:
                return bodies
            if self._skipping:
                self._skipping = False
            elif self._buf:
                body = self._frame(bytes(self._buf))
                if body is not None:
                    bodies.append(body)
                self._buf.clear()
            start = end + 1

    def _frame(self, raw: bytes) -> bytes | None:
        reason = "short"
        if len(raw) >= CHECK_SIZE + 2:
            encoded, check = raw[:-CHECK_SIZE], raw[-CHECK_SIZE:]
            reason = "bad_check"
            if check == _check(crc16(encoded)):
                try:
                    body = cobs_decode(encoded)
                except FramingError:
                    reason = "bad_cobs"
                else:
                    self.counters["frames"] += 1
                    return body
        self._reject(reason)
        return None

    def _reject(self, reason: str) -> None:
        self.counters["rejected"] += 1
        self.counters[reason] += 1
