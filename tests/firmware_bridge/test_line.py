"""The bridge's line session, unit tests: hand-made frames with a numeric clock, and the real
reference firmware (``firmware/ctfw_device.Link``) on an in-memory wire.

The wire is the only fake here; the same firmware runs over real ptys in test_gateway.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citytwin.firmware_bridge.frames import (
    Calls,
    Channel,
    Clock,
    Frame,
    FrameType,
    Message,
    Nak,
    encode,
    pack_ack,
    pack_message,
    parse,
    unpack_nak,
)
from citytwin.firmware_bridge.framing import FrameDecoder, encode_frame
from citytwin.firmware_bridge.line import Inbound, LineOptions, LineSession, Offline, Online

HELLO = {"kind": "meter", "id": "m1", "fw": "t 1", "hb_ms": 100}


def hello_frame(seq: int = 0, **fields: Any) -> bytes:
    return encode(Frame(FrameType.HELLO, seq, json.dumps({**HELLO, **fields}).encode(), True))


def frames(data: bytes) -> list[Frame]:
    return [parse(b) for b in FrameDecoder().feed(data)]


def opened(now: float = 0.0, **options: Any) -> LineSession:
    line = LineSession(LineOptions(**options))
    line.opened(now)
    return line


# -- hand-made frames, numeric clock -----------------------------------------------------------
def test_handshake_heartbeats_and_heartbeat_timeout() -> None:
    line = opened(hello_interval=0.5)
    assert [f.type for f in frames(line.take_output())] == [FrameType.HELLO_REQ]
    line.poll(0.4)
    assert line.take_output() == b""
    line.poll(0.5)
    assert [f.type for f in frames(line.take_output())] == [FrameType.HELLO_REQ]
    (online,) = line.receive(hello_frame(seq=7, hb_ms=400), 0.6)
    assert isinstance(online, Online) and online.hello.device_id == "m1"
    assert online.previous is None
    (ack,) = frames(line.take_output())
    assert ack.type == FrameType.ACK and ack.payload == pack_ack(7)
    assert line.poll(1.59) == [] and line.take_output() == b""
    line.poll(1.6)  # the bridge's heartbeat, every second
    assert [f.type for f in frames(line.take_output())] == [FrameType.HEARTBEAT]
    line.receive(encode(Frame(FrameType.HEARTBEAT, 8)), 1.65)
    assert line.poll(2.85) == []  # 1.2 s of silence is the limit (3 x 400 ms)
    assert [f.type for f in frames(line.take_output())] == [FrameType.HEARTBEAT]
    (gone,) = line.poll(2.86)
    assert isinstance(gone, Offline) and "heartbeat timeout" in gone.reason
    assert line.hello is None and line.counters["heartbeat_timeouts"] == 1
    assert [f.type for f in frames(line.take_output())] == [FrameType.HELLO_REQ]


def test_a_resent_hello_is_acked_but_starts_no_second_session() -> None:
    line = opened()
    assert len(line.receive(hello_frame(seq=3), 0.1)) == 1
    assert line.receive(hello_frame(seq=3), 0.2) == []  # our ACK was lost: it said it again
    assert [f.payload for f in frames(line.take_output())[1:]] == [pack_ack(3), pack_ack(3)]
    assert line.counters["sessions"] == 1 and line.counters["duplicates"] == 1


def test_the_same_hello_after_other_frames_is_a_rebooted_board() -> None:
    line = opened()
    line.receive(hello_frame(seq=0), 0.1)
    line.receive(encode(Frame(FrameType.HEARTBEAT, 1)), 0.2)
    (again,) = line.receive(hello_frame(seq=0), 0.3)  # seq starts at 0 again after a reboot
    assert isinstance(again, Online) and again.previous == again.hello
    assert line.counters["sessions"] == 2


def test_frames_outside_a_session_are_answered_no_session() -> None:
    line = opened()
    line.take_output()
    line.receive(encode(Frame(FrameType.HEADS, 12, b"\x00\x00\x00\x01GGrr")), 0.1)
    line.receive(encode(Frame(FrameType.ACK, 13, pack_ack(0))), 0.1)  # ACK/NAK/BYE: ignored
    (nak,) = frames(line.take_output())
    assert nak.type == FrameType.NAK and unpack_nak(nak.payload) == (12, Nak.NO_SESSION)
    assert line.counters["refused.no_session"] == 1


def test_bye_ends_the_session_and_a_closed_port_ends_it_too() -> None:
    line = opened()
    line.receive(hello_frame(), 0.1)
    (bye,) = line.receive(encode(Frame(FrameType.BYE, 1)), 0.2)
    assert isinstance(bye, Offline) and "BYE" in bye.reason
    line.receive(hello_frame(seq=5), 0.3)
    (lost,) = line.closed("read failed: [Errno 5]")
    assert isinstance(lost, Offline) and "Errno 5" in lost.reason
    assert line.poll(10.0) == [] and line.take_output() == b""  # a closed port gets nothing


def test_refusals_are_naked_with_their_reason_and_counted() -> None:
    line = opened()
    line.receive(hello_frame(), 0.0)
    line.take_output()
    bad = [
        Frame(FrameType.HEADS, 1, b"\x00\x00\x00\x01Gr7", True),  # not letters
        Frame(FrameType.CLOCK, 2, b""),  # bridge -> device only
        Frame(FrameType.MESSAGE, 3, pack_message(Message(Channel.STATE, False, True, b"}"))),
        Frame(FrameType.MESSAGE, 4, pack_message(Message(Channel.CONFIG, True, True, b"{}"))),
        Frame(FrameType.MESSAGE, 5, pack_message(Message(Channel.STATE, True, True, b"[1]"))),
    ]
    for f in bad:
        assert line.receive(encode(f), 0.1) == []
    line.receive(encode_frame(b"\x09\x03\x01\x00\x06"), 0.1)  # protocol version 9
    line.receive(encode_frame(b"\x01\x03\x01"), 0.1)  # no room for a seq: counted, no NAK
    naks = [unpack_nak(f.payload) for f in frames(line.take_output())]
    assert naks == [(1, Nak.MALFORMED), (2, Nak.UNKNOWN_TYPE), (3, Nak.OUT_OF_ORDER),
                    (4, Nak.MALFORMED), (5, Nak.MALFORMED), (6, Nak.UNSUPPORTED_VERSION)]
    assert line.counters["refused"] == 7 and line.hello is not None  # the session goes on


def test_message_parts_are_joined_and_bounded() -> None:
    line = opened(max_message=300)
    line.receive(hello_frame(), 0.0)
    body = json.dumps({"energy_wh": 1.5, "pad": "x" * 150}).encode()
    parts = [body[:100], body[100:]]
    events = []
    for k, chunk in enumerate(parts):
        msg = Message(Channel.STATE, k == 0, k == 1, chunk)
        events += line.receive(encode(Frame(FrameType.MESSAGE, 10 + k, pack_message(msg),
                                            True)), 0.1)
    assert events == [Inbound("state", json.loads(body))]
    big = Message(Channel.STATE, True, False, b"x" * 301)
    line.take_output()
    line.receive(encode(Frame(FrameType.MESSAGE, 20, pack_message(big), True)), 0.2)
    assert unpack_nak(frames(line.take_output())[0].payload) == (20, Nak.TOO_LARGE)


def test_messages_of_other_channels_may_come_between_parts() -> None:
    line = opened()
    line.receive(hello_frame(), 0.0)
    ack = b'{"cmd_id":"c1","status":"rejected","reason":"' + b"r" * 40 + b'"}'
    pieces = [Message(Channel.ACK, True, False, ack[:30]),
              Message(Channel.STATE, True, True, b'{"tick":3,"heads":"Gr"}'),
              Message(Channel.ACK, False, True, ack[30:])]
    events = []
    for seq, msg in enumerate(pieces, 1):
        events += line.receive(encode(Frame(FrameType.MESSAGE, seq, pack_message(msg), True)),
                               0.1)
    assert events == [Inbound("state", {"tick": 3, "heads": "Gr"}),
                      Inbound("ack", json.loads(ack))]
    assert line.counters["parts_abandoned"] == 0


def test_a_repeated_reliable_frame_is_acked_again_and_applied_once() -> None:
    line = opened()
    line.receive(hello_frame(), 0.0)
    msg = encode(Frame(FrameType.MESSAGE, 4, pack_message(
        Message(Channel.ACK, True, True, b'{"cmd_id":"c1","status":"done"}')), True))
    first = line.receive(msg, 0.1)
    second = line.receive(msg, 0.2)
    assert len(first) == 1 and second == []
    assert line.counters["duplicates"] == 1 and line.counters["frames_lost"] == 3  # 1..3


def test_messages_to_the_device_respect_its_mtu_and_rx_max() -> None:
    line = opened()
    line.receive(hello_frame(mtu=64, rx_max=300), 0.0)
    line.take_output()
    assert line.send_message(Channel.CONFIG, b"c" * 150, 0.1)
    (part1,) = frames(line.take_output())  # one at a time
    assert part1.ack_requested and len(part1.payload) == 64
    assert not line.send_message(Channel.CMD, b"x" * 301, 0.1)
    assert line.counters["too_large_for_device"] == 1
    line.send_calls(Calls(3, 3.0, (True,)), 0.1)  # waits behind the config's parts
    line.send_clock(Clock(3, 3.0, 1.0), 0.1)
    assert line.take_output() == b""


@given(st.lists(st.tuples(st.integers(0, 0x30), st.integers(0, 3), st.integers(0, 0xFFFF),
                          st.binary(max_size=48)), max_size=15), st.booleans())
@settings(deadline=None, derandomize=True, max_examples=1000)
def test_fuzz_any_intact_frame_is_taken_or_refused_never_crashes(
        specs: list[tuple[int, int, int, bytes]], in_session: bool) -> None:
    """Frames that pass the CRC but carry anything (any type, flags, seq, payload): the session
    never raises, and every frame it refuses is counted and, if it asked for an answer or not,
    NAKed with its seq."""
    line = opened()
    if in_session:
        line.receive(hello_frame(), 0.0)
    line.take_output()
    stream = b"".join(encode_frame(bytes([1, ftype, flags]) + seq.to_bytes(2, "big") + payload)
                      for ftype, flags, seq, payload in specs)
    t = 0.0
    for i in range(0, len(stream), 37):
        t += 0.001
        line.receive(stream[i:i + 37], t)
        line.poll(t)
    naks = [f for f in frames(line.take_output()) if f.type == FrameType.NAK]
    assert len(naks) == line.counters["refused"]


# -- the reference firmware on an in-memory wire ---------------------------------------------
class _Port:
    """An in-memory serial port for the firmware (read returns None when empty)."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.tx = bytearray()

    def read(self, n: int) -> bytes | None:
        data = bytes(self.rx[:n])
        del self.rx[:n]
        return data or None

    def write(self, data: bytes) -> int:
        self.tx += data
        return len(data)


class Wire:
    """The bridge's LineSession and a firmware Link, joined in memory. ``tamper`` may change
    what travels from the bridge to the device (return the bytes to deliver)."""

    def __init__(self, fw: dict[str, ModuleType], board: Any, **options: Any) -> None:
        self.fw = fw
        self.port = _Port()
        self.link = fw["ctfw_device"].Link(board, self.port)
        self.line = opened(**options)
        self.events: list[Any] = []
        self.t = 0.0
        self.tamper: Callable[[bytes], bytes] | None = None
        self.link.start()

    def pump(self, rounds: int = 6) -> list[Any]:
        got = []
        for _ in range(rounds):
            self.t += 0.001
            down = self.line.take_output()
            if self.tamper is not None and down:
                down = self.tamper(down)
            self.port.rx += down
            self.link.step(self.fw["ctfw_device"].ticks_ms())
            up = bytes(self.port.tx)
            self.port.tx.clear()
            got += self.line.receive(up, self.t) + self.line.poll(self.t)
        self.events += got
        return got


def test_firmware_handshake_and_meter_state_on_each_clock(firmware: dict[str, ModuleType]
                                                          ) -> None:
    board = firmware["ctfw_meter"].MeterBoard("meter-hall", lockstep=True)
    wire = Wire(firmware, board)
    (online,) = [e for e in wire.pump() if isinstance(e, Online)]
    assert online.hello.birth()["capabilities"]["commands"] == ["curtail", "relay"]
    assert wire.link.online and wire.line.counters["sessions"] == 1
    for tick in (1, 2, 3):
        wire.line.send_clock(Clock(tick, float(tick), 1.0, "lockstep"), wire.t)
    states = [e.payload for e in wire.pump() if isinstance(e, Inbound)]
    assert [s["tick"] for s in states] == [1, 2, 3]
    assert states[2]["energy_wh"] > states[1]["energy_wh"] > 0  # the register integrates
    assert states[2]["energy_wh"] == pytest.approx(
        (board.power_at(1.0) + 2 * board.power_at(2.0) + board.power_at(3.0)) / 2 / 3600,
        rel=1e-3)


def test_firmware_signal_board_takes_a_split_config_and_answers_calls(
        firmware: dict[str, ModuleType], eight_phase: dict[str, Any]) -> None:
    board = firmware["ctfw_signal"].SignalBoard("ctl-1", lockstep=True)
    wire = Wire(firmware, board)
    wire.pump()
    config = json.dumps(eight_phase).encode()
    assert len(config) > 256  # the firmware's mtu: needs several parts
    wire.line.send_message(Channel.CONFIG, config, wire.t)
    wire.line.send_calls(Calls(0, 0.0, (False,) * 8), wire.t)  # must wait for the config
    heads = [e.payload for e in wire.pump(30) if isinstance(e, Inbound)]
    assert board.counters.get("configs") == 1 and "input_without_config" not in board.counters
    assert heads == [{"tick": 0, "heads": "r" * 8}]  # starts in all red
    for tick in range(1, 40):
        wire.line.send_calls(Calls(tick, float(tick), (tick % 3 == 0,) * 8), wire.t)
        wire.pump(2)
    shown = [e.payload["heads"] for e in wire.events if isinstance(e, Inbound)]
    assert len(shown) == 40 and any("G" in h for h in shown)
    for h in shown:  # the board's own monitor: no two conflicting links lit together
        lit = [i for i, c in enumerate(h) if c != "r"]
        assert not any(j in eight_phase["conflicts"][i] for i in lit for j in lit)


def test_firmware_command_acks_survive_a_lost_ack(firmware: dict[str, ModuleType]) -> None:
    """The bridge's ACK of the device's command ack is lost once: the device sends it again,
    the bridge ACKs again and forwards it once."""
    board = firmware["ctfw_meter"].MeterBoard("m1")
    wire = Wire(firmware, board)
    wire.pump()
    cmd = b'{"v":1,"seq":1,"id":"c1","name":"relay","args":{"state":"open"},"t":0}'
    wire.line.send_message(Channel.CMD, cmd, wire.t)
    dropped = []

    def drop_first_ack(data: bytes) -> bytes:
        kept = b""
        for f in frames(data):
            if f.type == FrameType.ACK and not dropped:
                dropped.append(f)
                continue
            kept += encode(f)
        return kept

    wire.tamper = drop_first_ack
    wire.link.rto_ms = 0  # resend at the next step rather than after 500 ms
    wire.pump(12)
    acks = [e.payload for e in wire.events if isinstance(e, Inbound)]
    assert dropped and board.relay == "open"
    assert acks == [{"cmd_id": "c1", "status": "accepted"}, {"cmd_id": "c1", "status": "done"}]
    assert wire.line.counters["duplicates"] >= 1


def test_firmware_rejoins_when_the_bridge_forgot_it(firmware: dict[str, ModuleType]) -> None:
    """The bridge restarts (a new LineSession): the device's next frame is NAKed no_session
    and the device says HELLO again, once."""
    board = firmware["ctfw_meter"].MeterBoard("m1", lockstep=True)
    wire = Wire(firmware, board)
    wire.pump()
    wire.line = opened(wire.t)
    wire.line.take_output()  # its HELLO_REQ is lost
    wire.link.send_message(firmware["ctfw_wire"].CH_STATE, {"tick": 1, "energy_wh": 0.0,
                                                           "power_w": 1.0, "relay": "closed"})
    events = wire.pump(8)
    assert [type(e) for e in events] == [Online]
    assert wire.line.counters["refused.no_session"] == 1 and wire.link.online


def test_firmware_survives_corrupted_frames(firmware: dict[str, ModuleType]) -> None:
    """Every 3rd frame to the device gets a flipped bit: the device rejects and counts them,
    the bridge resends what was reliable, and every message arrives exactly once."""
    board = firmware["ctfw_meter"].MeterBoard("m1")
    wire = Wire(firmware, board)
    wire.pump()
    count = [0]

    def flip_every_third(data: bytes) -> bytes:
        out = bytearray()
        for f in frames(data):
            raw = bytearray(encode(f))
            count[0] += 1
            if count[0] % 3 == 0:
                raw[len(raw) // 2] ^= 0x10
            out += raw
        return bytes(out)

    wire.tamper = flip_every_third
    wire.link.rto_ms = 0
    for k in range(6):
        wire.line.send_message(Channel.CMD, json.dumps(
            {"id": f"c{k}", "name": "curtail", "args": {"limit_w": 1000.0 + k}}).encode(), wire.t)
    wire.line.outbox.rto, wire.line.outbox.retries = 0.002, 20
    wire.pump(200)
    acks = [e.payload for e in wire.events if isinstance(e, Inbound)]
    assert sorted(a["cmd_id"] for a in acks if a["status"] == "done") == [
        f"c{k}" for k in range(6)]
    assert board.limit_w == 1005.0
    assert wire.link.decoder.counters["rejected"] >= 1
    assert board.counters["commands_accepted"] == 6
