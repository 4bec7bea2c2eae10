"""ctfw_wire: the citytwin serial protocol v1, framing and frames, for device firmware.

Runs unchanged on MicroPython and CPython (no typing, no dataclasses, no f-string ``=``). The
protocol is ``docs/firmware-protocol.md``; the bridge's own implementation is
``citytwin/firmware_bridge/framing.py`` and ``frames.py``, and the tests check the two
against each other byte for byte.

A frame on the wire: ``0x00 | COBS(body) | check(3) | 0x00``, where body is ``version(1) |
type(1) | flags(1) | seq(2, big-endian) | payload`` and check is CRC-16/CCITT-FALSE of the
COBS bytes in three never-zero bytes.
"""

try:
    import struct
except ImportError:  # very old MicroPython ports
    import ustruct as struct

try:
    from array import array
except ImportError:
    array = None

VERSION = 1
MAX_BODY = 1029
MAX_PAYLOAD = MAX_BODY - 5
CHECK_SIZE = 3
MAX_FRAME = MAX_BODY + MAX_BODY // 254 + 1 + CHECK_SIZE

# frame types
HELLO = 0x01
HELLO_REQ = 0x02
HEARTBEAT = 0x03
ACK = 0x04
NAK = 0x05
BYE = 0x06
CLOCK = 0x10
SIM_AVAIL = 0x11
CALLS = 0x12
HEADS = 0x13
MESSAGE = 0x20
TYPES = (HELLO, HELLO_REQ, HEARTBEAT, ACK, NAK, BYE, CLOCK, SIM_AVAIL, CALLS, HEADS, MESSAGE)

# header flags, MESSAGE part flags
ACK_REQUESTED = 0x01
FIRST = 0x01
LAST = 0x02

# NAK reasons
NAK_UNSUPPORTED_VERSION = 1
NAK_UNKNOWN_TYPE = 2
NAK_MALFORMED = 3
NAK_TOO_LARGE = 4
NAK_NO_SESSION = 5
NAK_BUSY = 6
NAK_REFUSED = 7
NAK_OUT_OF_ORDER = 8

# MESSAGE channels
CH_CONFIG = 1
CH_INPUT = 2
CH_CMD = 3
CH_ERROR = 4
CH_STATE = 5
CH_ACK = 6

MODES = ("fast", "realtime", "lockstep")


def _crc_table():
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table.append(crc)
    return array("H", table) if array is not None else table


_TABLE = _crc_table()


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR)."""
    table = _TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ b]
    return crc


def check_bytes(crc):
    """The three never-zero check bytes of a CRC."""
    return bytes((0x80 | (crc >> 9), 0x80 | ((crc >> 2) & 0x7F), 0x80 | (crc & 0x03)))


def cobs_encode(data):
    """COBS-encode ``data`` (a run of 254 non-zero bytes takes code 0xFF)."""
    out = bytearray(1)
    code_at = 0
    code = 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at = len(out)
                out.append(0)
                code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Decode COBS bytes; raise ValueError if they are not valid COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise ValueError("bad COBS")
        out.extend(data[i + 1:end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode(ftype, seq, payload=b"", flags=0):
    """The wire bytes of one frame (both delimiters included)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too large")
    body = struct.pack(">BBBH", VERSION, ftype, flags, seq & 0xFFFF) + payload
    encoded = cobs_encode(body)
    return b"\x00" + encoded + check_bytes(crc16(encoded)) + b"\x00"


class Decoder:
    """Incremental receiver: ``feed(bytes)`` returns the intact frame bodies, in order.

    Runs of bytes between delimiters that are not intact frames are dropped and counted in
    ``counters`` (``oversized``, ``short``, ``bad_check``, ``bad_cobs``); memory is bounded by
    ``max_frame``.
    """

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self.counters = {"frames": 0, "rejected": 0, "oversized": 0, "short": 0,
                         "bad_check": 0, "bad_cobs": 0}
        self._buf = bytearray()
        self._skipping = False

    def reset(self):
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data):
        bodies = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._skipping:
                if len(self._buf) + len(chunk) > self.max_frame:
                    self._reject("oversized")
                    self._buf = bytearray()
                    self._skipping = True
                else:
                    self._buf.extend(chunk)
            if end < 0:
                return bodies
            if self._skipping:
                self._skipping = False
            elif self._buf:
                body = self._frame(bytes(self._buf))
                if body is not None:
                    bodies.append(body)
                self._buf = bytearray()
            start = end + 1

    def _frame(self, raw):
        if len(raw) < CHECK_SIZE + 2:
            return self._reject("short")
        encoded = raw[:-CHECK_SIZE]
        if raw[-CHECK_SIZE:] != check_bytes(crc16(encoded)):
            return self._reject("bad_check")
        try:
            body = cobs_decode(encoded)
        except ValueError:
            return self._reject("bad_cobs")
        self.counters["frames"] += 1
        return body

    def _reject(self, reason):
        self.counters["rejected"] += 1
        self.counters[reason] += 1
        return None


def parse(body):
    """``(type, flags, seq, payload)`` of a frame body.

    Raises ``ValueError(reason)`` with a NAK reason code as its only argument; for a readable
    header the error carries the frame's seq as its second argument.
    """
    if len(body) < 5:
        raise ValueError(NAK_MALFORMED)
    version, ftype, flags, seq = struct.unpack(">BBBH", body[:5])
    if version != VERSION:
        raise ValueError(NAK_UNSUPPORTED_VERSION, seq, flags)
    if ftype not in TYPES:
        raise ValueError(NAK_UNKNOWN_TYPE, seq, flags)
    return ftype, flags, seq, body[5:]
