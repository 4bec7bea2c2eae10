"""ctfw_device: the device's side of the citytwin serial protocol.

Runs unchanged on MicroPython and CPython. :class:`Link` owns the serial port: it says
``HELLO`` until the bridge ACKs it, sends heartbeats, answers every frame that asks for an ACK,
sends its own reliable frames again until they are ACKed, joins message parts, and calls the
hooks of its board (``ctfw_board.Board``).

The port is anything with ``read(n)`` (bytes, or None when nothing is waiting) and
``write(data)``: a ``machine.UART`` on a board, ``ctfw_port.FdPort`` on a pseudo-terminal.
"""

import json

import ctfw_wire as w

try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_add(a, b):
        return a + b

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        _time.sleep(ms / 1000)

try:
    import select
except ImportError:
    select = None

FW_VERSION = "0.1.0"


class Link:
    """The device's end of one serial line.

    Args:
        board: The board whose hooks get the bridge's messages.
        port: ``read(n)`` / ``write(data)``.
        hb_ms: Milliseconds between heartbeats (the bridge declares the device gone after
            three missed).
        mtu: Largest payload accepted in one frame (the bridge splits longer messages).
        rx_max: Largest JSON message accepted.
        rto_ms: Milliseconds to wait for an ACK before sending a reliable frame again.
        retries: Sends of one reliable frame before giving up.
        bridge_timeout_ms: Silence from the bridge after which the session is over.
    """

    def __init__(self, board, port, hb_ms=1000, mtu=256, rx_max=4096, rto_ms=500, retries=5,
                 bridge_timeout_ms=3500):
        self.board = board
        self.port = port
        self.hb_ms = hb_ms
        self.mtu = mtu
        self.rx_max = rx_max
        self.rto_ms = rto_ms
        self.retries = retries
        self.bridge_timeout_ms = bridge_timeout_ms
        self.decoder = w.Decoder(mtu + 5 + (mtu + 5) // 254 + 1 + w.CHECK_SIZE)
        self.online = False
        self.paused = False
        self.counters = {}
        self._seq = 0
        self._queue = []
        self._inflight = None  # [frame bytes, seq, sent_ms, attempts]
        self._hello = None  # [frame bytes, seq, sent_ms]
        self._rx_reliable = -1
        self._parts = None
        self._parts_channel = 0
        now = ticks_ms()
        self._last_rx = now
        self._next_hb = now
        board.link = self

    def count(self, key, n=1):
        self.counters[key] = self.counters.get(key, 0) + n

    # -- running ---------------------------------------------------------------------------
    def run(self, stop=None):
        """Serve the port until ``stop()`` is true or the port fails (OSError: unplugged)."""
        poller = None
        if select is not None:
            try:
                poller = select.poll()
                poller.register(self.port, select.POLLIN)
            except (AttributeError, TypeError, ValueError, OSError):
                poller = None
        self.start()
        while stop is None or not stop():
            self.step(ticks_ms())
            wait = self.next_wait(ticks_ms())
            if poller is not None:
                poller.poll(wait)
            else:
                sleep_ms(min(wait, 2))

    def start(self):
        """Begin a session attempt: say HELLO now."""
        self._new_hello(ticks_ms())

    def step(self, now):
        """Read what is waiting, answer it, run the timers."""
        for _ in range(4):  # bounded, so a flood cannot starve the timers
            data = self.port.read(512)
            if not data:
                break
            if not self.paused:
                self.receive(data, now)
        if not self.paused:
            self.timers(now)
            self.board.poll(now)

    def next_wait(self, now):
        """Milliseconds until the next timer (at most 50)."""
        due = [self._next_hb]
        if self._inflight is not None:
            due.append(ticks_add(self._inflight[2], self.rto_ms))
        if self._hello is not None:
            due.append(ticks_add(self._hello[2], self.rto_ms))
        wait = 50
        for t in due:
            wait = min(wait, max(0, ticks_diff(t, now)))
        return wait

    def timers(self, now):
        if self.online and ticks_diff(now, self._last_rx) > self.bridge_timeout_ms:
            self.count("bridge_timeouts")
            self._lost()
        hello = self._hello
        if hello is not None and ticks_diff(now, hello[2]) >= self.rto_ms * 2:
            hello[2] = now
            self._write(hello[0])
        if self.online and ticks_diff(now, self._next_hb) >= 0:
            self._next_hb = ticks_add(now, self.hb_ms)
            self.send(w.HEARTBEAT)
        flight = self._inflight
        if flight is not None and ticks_diff(now, flight[2]) >= self.rto_ms:
            if flight[3] >= self.retries:
                self.count("delivery_failed")
                self._inflight = None
            else:
                self.count("retransmits")
                flight[2] = now
                flight[3] += 1
                self._write(flight[0])
        self._pump(now)

    # -- sending ---------------------------------------------------------------------------
    def send(self, ftype, payload=b""):
        """Send a frame that asks for no ACK."""
        seq = self._take_seq()
        self._write(w.encode(ftype, seq, payload))

    def send_heads(self, tick, letters):
        """A signal controller's state: the heads answering ``tick``."""
        if not self.online:
            self.count("dropped_offline")
            return
        self.send(w.HEADS, w.struct.pack(">I", tick) + letters.encode())

    def send_message(self, channel, data, reliable=False):
        """A JSON message (a dict) on ``channel``, in as many parts as the bridge needs."""
        if not self.online:
            self.count("dropped_offline")
            return
        raw = json.dumps(data).encode()
        size = w.MAX_PAYLOAD - 2
        parts = [raw[i:i + size] for i in range(0, len(raw), size)] or [b""]
        reliable = reliable or len(parts) > 1
        for k, chunk in enumerate(parts):
            flags = (w.FIRST if k == 0 else 0) | (w.LAST if k == len(parts) - 1 else 0)
            payload = bytes((channel, flags)) + chunk
            if reliable:
                self._queue.append(payload)
            else:
                self.send(w.MESSAGE, payload)
        self._pump(ticks_ms())

    def bye(self):
        """Say goodbye (a clean shutdown)."""
        if self.online:
            self.send(w.BYE)
        self.online = False

    def _pump(self, now):
        if self._inflight is None and self._queue and self.online:
            seq = self._take_seq()
            frame = w.encode(w.MESSAGE, seq, self._queue.pop(0), w.ACK_REQUESTED)
            self._inflight = [frame, seq, now, 1]
            self._write(frame)

    def _take_seq(self):
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        return seq

    def _write(self, frame):
        self.count("frames_out")
        self.port.write(frame)

    # -- session ---------------------------------------------------------------------------
    def _new_hello(self, now):
        info = {"kind": self.board.kind, "id": self.board.device_id,
                "fw": "citytwin-fw-" + self.board.kind + " " + FW_VERSION,
                "lockstep": self.board.lockstep, "hb_ms": self.hb_ms, "mtu": self.mtu,
                "rx_max": self.rx_max}
        info.update(self.board.hello())
        seq = self._take_seq()
        frame = w.encode(w.HELLO, seq, json.dumps(info).encode(), w.ACK_REQUESTED)
        self._hello = [frame, seq, now]
        self._write(frame)

    def _lost(self):
        was = self.online
        self.online = False
        self._queue = []
        self._inflight = None
        self._parts = None
        self._rx_reliable = -1
        if was:
            self.board.on_link(False)
        self._new_hello(ticks_ms())

    # -- receiving -------------------------------------------------------------------------
    def receive(self, data, now):
        for body in self.decoder.feed(data):
            try:
                ftype, flags, seq, payload = w.parse(body)
            except ValueError as exc:
                self.count("refused")
                if len(exc.args) > 1:
                    self._nak(exc.args[1], exc.args[0])
                continue
            self._last_rx = now
            self.count("frames_in")
            wants_ack = flags & w.ACK_REQUESTED
            if wants_ack and seq == self._rx_reliable:
                self.count("duplicates")
                self.send(w.ACK, w.struct.pack(">H", seq))
                continue
            try:
                self._frame(ftype, payload)
            except ValueError as exc:
                reason = exc.args[0] if exc.args else w.NAK_MALFORMED
                self.count("refused")
                self._nak(seq, reason if isinstance(reason, int) else w.NAK_MALFORMED)
                continue
            except Exception:  # a board bug must not stop the firmware
                self.count("board_errors")
                self._nak(seq, w.NAK_REFUSED)
                continue
            if wants_ack:
                self._rx_reliable = seq
                self.send(w.ACK, w.struct.pack(">H", seq))

    def _nak(self, seq, reason):
        self.send(w.NAK, w.struct.pack(">HB", seq, reason))

    def _frame(self, ftype, payload):
        board = self.board
        if ftype == w.ACK or ftype == w.NAK:
            if len(payload) < (2 if ftype == w.ACK else 3):
                raise ValueError(w.NAK_MALFORMED)
            ref = w.struct.unpack(">H", payload[:2])[0]
            self._answer(ref, None if ftype == w.ACK else payload[2])
        elif ftype == w.HELLO_REQ:
            if self._hello is None:
                self._lost()  # the bridge lost our session (it restarted, or reopened)
            else:
                self._hello[2] = ticks_ms()
                self._write(self._hello[0])
        elif ftype == w.CLOCK:
            if len(payload) < 13:
                raise ValueError(w.NAK_MALFORMED)
            tick, t, dt, mode = w.struct.unpack(">IIIB", payload[:13])
            board.on_clock(tick, t / 1000, dt / 1000, w.MODES[mode] if mode < 3 else "fast")
        elif ftype == w.CALLS:
            if len(payload) < 10:
                raise ValueError(w.NAK_MALFORMED)
            tick, t, n = w.struct.unpack(">IIH", payload[:10])
            if len(payload) != 10 + (n + 7) // 8:
                raise ValueError(w.NAK_MALFORMED)
            board.on_calls(tick, t / 1000, payload[10:], n)
        elif ftype == w.SIM_AVAIL:
            if len(payload) < 1:
                raise ValueError(w.NAK_MALFORMED)
            board.on_sim_avail(payload[0] == 1)
        elif ftype == w.MESSAGE:
            self._message(payload)
        elif ftype != w.HEARTBEAT:
            raise ValueError(w.NAK_UNKNOWN_TYPE)

    def _answer(self, ref, reason):
        hello = self._hello
        if hello is not None and hello[1] == ref:
            self._hello = None
            if reason is None:
                self.online = True
                self._next_hb = ticks_add(ticks_ms(), self.hb_ms)
                self.board.on_link(True)
            return
        if reason == w.NAK_NO_SESSION:
            if hello is None:  # in session as far as we knew: the bridge lost it
                self._lost()
            return  # else: a frame sent before our HELLO; the HELLO is on its way
        flight = self._inflight
        if flight is None or flight[1] != ref:
            return
        if reason == w.NAK_BUSY:
            return  # sent again after rto_ms
        if reason is not None:
            self.count("delivery_failed")
        self._inflight = None
        self._pump(ticks_ms())

    def _message(self, payload):
        if len(payload) < 2:
            raise ValueError(w.NAK_MALFORMED)
        channel, flags = payload[0], payload[1]
        if channel not in (w.CH_CONFIG, w.CH_INPUT, w.CH_CMD, w.CH_ERROR):
            raise ValueError(w.NAK_MALFORMED)
        if flags & w.FIRST:
            self._parts = bytearray()
            self._parts_channel = channel
        elif self._parts is None or self._parts_channel != channel:
            raise ValueError(w.NAK_OUT_OF_ORDER)
        if len(self._parts) + len(payload) - 2 > self.rx_max:
            self._parts = None
            raise ValueError(w.NAK_TOO_LARGE)
        self._parts.extend(payload[2:])
        if not flags & w.LAST:
            return
        raw = bytes(self._parts)
        self._parts = None
        if channel == w.CH_CONFIG:
            self.board.on_config(raw)
            return
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ValueError(w.NAK_MALFORMED)
        if channel == w.CH_CMD:
            self.board.on_cmd(data)
        elif channel == w.CH_ERROR:
            self.board.on_error(data)
        else:
            self.board.on_input(data)
