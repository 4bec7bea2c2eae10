"""Frames: the header, every payload layout, and the refusals, with byte strings only; the
firmware's constants and parser must agree with the bridge's."""

from __future__ import annotations

import json
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citytwin.firmware_bridge.frames import (
    HEADER,
    MAX_PAYLOAD,
    Calls,
    Channel,
    Clock,
    Frame,
    FrameRefused,
    FrameType,
    Heads,
    Message,
    Nak,
    encode,
    json_object,
    pack_ack,
    pack_calls,
    pack_clock,
    pack_heads,
    pack_message,
    pack_nak,
    parse,
    split_message,
    unpack_ack,
    unpack_calls,
    unpack_clock,
    unpack_heads,
    unpack_hello,
    unpack_message,
    unpack_nak,
)
from citytwin.firmware_bridge.framing import FrameDecoder


def body_of(frame: Frame) -> bytes:
    (body,) = FrameDecoder().feed(encode(frame))
    return body


def test_header_layout_and_round_trip() -> None:
    body = body_of(Frame(FrameType.HEADS, 0x1234, b"\x00\x00\x00\x07Gr", True))
    assert body[:5] == bytes([1, 0x13, 0x01, 0x12, 0x34])
    assert parse(body) == Frame(FrameType.HEADS, 0x1234, b"\x00\x00\x00\x07Gr", True)


@pytest.mark.parametrize(("body", "reason", "seq"), [
    (b"\x01\x03\x00\x00", Nak.MALFORMED, None),                 # shorter than a header
    (b"\x02\x03\x01\x00\x09", Nak.UNSUPPORTED_VERSION, 9),
    (b"\x01\x7f\x01\x00\x0a", Nak.UNKNOWN_TYPE, 10),
])
def test_parse_refuses_with_the_nak_reason_and_the_seq(body: bytes, reason: Nak,
                                                       seq: int | None) -> None:
    with pytest.raises(FrameRefused) as refused:
        parse(body)
    assert refused.value.reason == reason and refused.value.seq == seq
    assert refused.value.ack_requested == (seq is not None)


def test_encode_refuses_out_of_range_frames() -> None:
    with pytest.raises(ValueError, match="payload"):
        encode(Frame(FrameType.MESSAGE, 0, b"x" * (MAX_PAYLOAD + 1)))
    with pytest.raises(ValueError, match="u16"):
        encode(Frame(FrameType.HEARTBEAT, 65536))
    assert len(body_of(Frame(FrameType.MESSAGE, 65535, b"x" * MAX_PAYLOAD))) == 1029


def test_ack_and_nak_payloads() -> None:
    assert pack_ack(0xBEEF) == b"\xbe\xef" and unpack_ack(b"\xbe\xef") == 0xBEEF
    assert pack_nak(7, Nak.NO_SESSION) == b"\x00\x07\x05"
    assert unpack_nak(b"\x00\x07\x05") == (7, 5)
    assert unpack_nak(b"\x00\x07\xc8") == (7, 200)  # a reason this side does not know
    for bad, unpack in ((b"\x01", unpack_ack), (b"\x00\x01", unpack_nak)):
        with pytest.raises(FrameRefused) as refused:
            unpack(bad)
        assert refused.value.reason == Nak.MALFORMED


def test_clock_payload() -> None:
    clock = Clock(812, 811.5, 0.1, "lockstep")
    payload = pack_clock(clock)
    assert payload == (812).to_bytes(4, "big") + (811_500).to_bytes(4, "big") \
        + (100).to_bytes(4, "big") + b"\x02"
    assert unpack_clock(payload) == clock
    for bad in (Clock(-1, 0.0, 1.0), Clock(1, -0.5, 1.0), Clock(1, 0.0, 1.0, "warp"),
                Clock(1, 5e6, 1.0)):
        with pytest.raises(ValueError):
            pack_clock(bad)
    with pytest.raises(FrameRefused):
        unpack_clock(payload[:-1])


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.lists(st.booleans(), max_size=600))
@settings(deadline=None, derandomize=True)
def test_calls_round_trip(tick: int, t_ms: int, bits: list[bool]) -> None:
    calls = Calls(tick, t_ms / 1000, tuple(bits))
    payload = pack_calls(calls)
    assert len(payload) == 10 + (len(bits) + 7) // 8
    assert unpack_calls(payload) == calls


def test_calls_bits_are_lsb_first_and_length_checked() -> None:
    payload = pack_calls(Calls(1, 2.0, (True, False, False, True, False, False, False, False,
                                        False, True)))
    assert payload[10:] == bytes([0b0000_1001, 0b0000_0010])
    with pytest.raises(FrameRefused):
        unpack_calls(payload + b"\x00")  # a byte more than 10 detectors need
    with pytest.raises(FrameRefused):
        unpack_calls(payload[:-1])


def test_heads_payload() -> None:
    payload = pack_heads(Heads(41, "GGrryy"))
    assert payload == b"\x00\x00\x00\x29GGrryy"
    assert unpack_heads(payload) == Heads(41, "GGrryy")
    for bad in (b"\x00\x00\x00\x29", b"\x00\x00", b"\x00\x00\x00\x29Gr1",
                b"\x00\x00\x00\x29G\xc3\xa9"):
        with pytest.raises(FrameRefused) as refused:
            unpack_heads(bad)
        assert refused.value.reason == Nak.MALFORMED


def test_message_payload_and_refusals() -> None:
    msg = Message(Channel.STATE, True, False, b'{"a"')
    assert pack_message(msg) == b"\x05\x01" + b'{"a"'
    assert unpack_message(pack_message(msg)) == msg
    with pytest.raises(FrameRefused):
        unpack_message(b"\x05")
    with pytest.raises(FrameRefused, match="channel 9"):
        unpack_message(b"\x09\x03{}")


@given(st.binary(max_size=3000), st.integers(64, MAX_PAYLOAD))
@settings(deadline=None, derandomize=True)
def test_split_message_parts_join_back(data: bytes, mtu: int) -> None:
    parts = [unpack_message(p) for p in split_message(Channel.CONFIG, data, mtu)]
    assert all(len(pack_message(p)) <= mtu for p in parts)
    assert [p.first for p in parts] == [True] + [False] * (len(parts) - 1)
    assert [p.last for p in parts] == [False] * (len(parts) - 1) + [True]
    assert b"".join(p.data for p in parts) == data


HELLO = {"kind": "signal", "id": "ctl-r1c1", "fw": "acme 1.0", "lockstep": True, "hb_ms": 250,
         "mtu": 128, "rx_max": 2048, "caps": {"letters": "ryGg"}}


def test_hello_is_read_with_its_limits_and_becomes_the_birth() -> None:
    hello = unpack_hello(json.dumps(HELLO).encode())
    assert (hello.kind, hello.device_id, hello.heartbeat, hello.mtu, hello.rx_max) == (
        "signal", "ctl-r1c1", 0.25, 128, 2048)
    assert hello.birth() == {"kind": "signal", "fw": "acme 1.0", "lockstep": True,
                             "capabilities": {"letters": "ryGg"}}
    minimal = unpack_hello(b'{"kind":"meter","id":"m1"}')
    assert (minimal.heartbeat, minimal.mtu, minimal.lockstep) == (1.0, MAX_PAYLOAD, False)


@pytest.mark.parametrize(("change", "reason"), [
    ({"kind": "toaster"}, Nak.REFUSED),
    ({"id": "has space"}, Nak.REFUSED),
    ({"id": "x" * 65}, Nak.REFUSED),
    ({"fw": "f" * 65}, Nak.REFUSED),
    ({"hb_ms": 10}, Nak.REFUSED),
    ({"mtu": 2000}, Nak.REFUSED),
    ({"rx_max": 10}, Nak.REFUSED),
    ({"hb_ms": "1000"}, Nak.MALFORMED),
    ({"lockstep": 1}, Nak.MALFORMED),
    ({"caps": []}, Nak.MALFORMED),
    ({"id": 7}, Nak.MALFORMED),
])
def test_bad_hello_is_refused_with_a_reason(change: dict[str, object], reason: Nak) -> None:
    with pytest.raises(FrameRefused) as refused:
        unpack_hello(json.dumps({**HELLO, **change}).encode())
    assert refused.value.reason == reason


@pytest.mark.parametrize("data", [b"", b"[1]", b'{"a":NaN}', b'{"a":Infinity}', b"\xff{}",
                                  b"[" * 20000 + b"]" * 20000, b'{"a":'])
def test_json_object_refuses_what_is_not_a_strict_json_object(data: bytes) -> None:
    with pytest.raises(FrameRefused) as refused:
        json_object(data, "state message")
    assert refused.value.reason == Nak.MALFORMED


def test_firmware_constants_and_parser_agree(firmware: dict[str, ModuleType]) -> None:
    fw = firmware["ctfw_wire"]
    assert fw.VERSION == 1 and fw.MAX_PAYLOAD == MAX_PAYLOAD and HEADER.size == 5
    assert {name: getattr(fw, name) for name in FrameType.__members__} == {
        name: int(t) for name, t in FrameType.__members__.items()}
    assert {f"NAK_{n}": int(r) for n, r in Nak.__members__.items()} == {
        n: getattr(fw, n) for n in dir(fw) if n.startswith("NAK_")}
    assert {f"CH_{n}": int(c) for n, c in Channel.__members__.items()} == {
        n: getattr(fw, n) for n in dir(fw) if n.startswith("CH_")}
    frame = Frame(FrameType.CALLS, 300, pack_calls(Calls(5, 5.0, (True,))), True)
    assert fw.encode(int(frame.type), frame.seq, frame.payload, 1) == encode(frame)
    assert fw.parse(body_of(frame)) == (0x12, 1, 300, frame.payload)
    with pytest.raises(ValueError) as refused:
        fw.parse(b"\x01\x7f\x00\x00\x01")
    assert refused.value.args[:2] == (fw.NAK_UNKNOWN_TYPE, 1)
