"""Framing: COBS, the CRC check, and the incremental decoder, with byte strings only.

The decoder must accept exactly the frames that were encoded: garbage, truncation, oversized
runs and bit errors are rejected and counted, and an intact frame after any of them is never
lost. The firmware's own decoder (``firmware/ctfw_wire.py``) must agree byte for byte.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citytwin.firmware_bridge.framing import (
    MAX_BODY,
    MAX_FRAME,
    FrameDecoder,
    FramingError,
    cobs_decode,
    cobs_encode,
    crc16,
    encode_frame,
)

bodies = st.binary(min_size=1, max_size=MAX_BODY)
small_bodies = st.binary(min_size=1, max_size=80)


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"a\x00b", bytes(range(1, 255)),
                                  bytes(range(1, 256)), b"\x01" * 254 + b"\x00", b"\x01" * 508,
                                  b"\x00" + b"\x01" * 253])
def test_cobs_round_trip_edge_cases(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert b"\x00" not in encoded
    assert cobs_decode(encoded) == data


@given(st.binary(max_size=2000))
@settings(deadline=None, derandomize=True)
def test_cobs_round_trip(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert b"\x00" not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("bad", [b"\x00", b"\x05ab", b"\x03a\x00"])
def test_cobs_decode_refuses_invalid_input(bad: bytes) -> None:
    with pytest.raises(FramingError):
        cobs_decode(bad)


def test_frames_are_delimited_on_both_sides_and_bounded() -> None:
    wire = encode_frame(b"\x01\x02\x00\x03")
    assert wire[0] == 0 and wire[-1] == 0 and b"\x00" not in wire[1:-1]
    assert len(encode_frame(b"\xff" * MAX_BODY)) - 2 <= MAX_FRAME
    with pytest.raises(FramingError):
        encode_frame(b"x" * (MAX_BODY + 1))
    with pytest.raises(FramingError):
        encode_frame(b"")


@given(st.lists(bodies, min_size=1, max_size=5), st.integers(1, 64))
@settings(deadline=None, derandomize=True, max_examples=200,
          suppress_health_check=[HealthCheck.too_slow])
def test_any_split_of_the_stream_gives_the_same_frames(frames: list[bytes], step: int) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), step):
        got += dec.feed(stream[i:i + step])
    assert got == frames
    assert dec.counters["rejected"] == 0 and dec.pending == 0


@given(st.binary(max_size=200), small_bodies, small_bodies)
@settings(deadline=None, derandomize=True, max_examples=2000)
def test_garbage_before_a_frame_never_loses_it(garbage: bytes, first: bytes,
                                               second: bytes) -> None:
    dec = FrameDecoder()
    got = dec.feed(garbage + encode_frame(first) + encode_frame(second))
    assert got[-2:] == [first, second]
    # garbage can itself hold a valid frame only by a 2^-23 accident
    assert len(got) == 2


@given(st.lists(st.one_of(st.binary(min_size=1, max_size=48).map(lambda b: ("frame", b)),
                          st.binary(min_size=1, max_size=40).map(lambda b: ("noise", b))),
                max_size=10),
       st.randoms(use_true_random=False))
@settings(deadline=None, derandomize=True, max_examples=5000)
def test_fuzz_no_crash_and_no_false_accept(pieces: list[tuple[str, bytes]],
                                           rnd: random.Random) -> None:
    """Frames, raw noise and truncated frames in any order, fed in random slices: every frame
    that arrives whole is accepted, and nothing else is."""
    stream = bytearray()
    sent = []
    for what, data in pieces:
        if what == "frame":
            wire = encode_frame(data)
            if rnd.random() < 0.3:  # cut short: a port closed or opened mid-frame
                stream += wire[:rnd.randrange(1, len(wire) - 1)]
                continue
            sent.append(data)
            stream += wire
        else:
            stream += data
    dec = FrameDecoder()
    got = []
    i = 0
    while i < len(stream):
        k = rnd.randint(1, 40)
        got += dec.feed(bytes(stream[i:i + k]))
        i += k
    encoded = {d for w, d in pieces if w == "frame"}
    assert all(body in encoded for body in got)  # no false accept
    # every frame sent whole is received, in order (noise may complete a cut-off frame)
    rest = iter(got)
    assert all(any(body == other for other in rest) for body in sent)
    assert dec.pending <= MAX_FRAME


@given(st.binary(max_size=2500))
@settings(deadline=None, derandomize=True, max_examples=3000)
def test_fuzz_random_bytes_never_crash(data: bytes) -> None:
    dec = FrameDecoder()
    for body in dec.feed(data):
        assert 0 < len(body) <= MAX_BODY
    assert dec.pending <= MAX_FRAME


def test_oversized_input_is_bounded_counted_and_resyncs() -> None:
    dec = FrameDecoder()
    flood = b"\x55" * (10 * MAX_FRAME)
    assert dec.feed(flood) == []
    assert dec.pending == 0  # dropped as it came: memory stays bounded
    assert dec.counters["oversized"] == 1
    assert dec.feed(encode_frame(b"after")) == [b"after"]


def test_rejections_are_counted_by_reason() -> None:
    dec = FrameDecoder()
    good = encode_frame(b"\x01hello")
    assert dec.feed(b"\x00\x01\x02\x00") == []  # too short
    assert dec.feed(good[:-4] + b"\x00") == []  # truncated
    assert dec.feed(good) == [b"\x01hello"]
    c = dec.counters
    assert c["short"] == 1 and c["bad_check"] == 1 and c["frames"] == 1 and c["rejected"] == 2


def _flips(wire: bytes, positions: tuple[int, ...]) -> bytes:
    out = bytearray(wire)
    for p in positions:
        out[p // 8] ^= 1 << (p % 8)
    return bytes(out)


_SAMPLES = [b"\x01\x13\x00\x00\x07" + b"\x00\x00\x03\x2b" + b"gGGGrrrrGGGgrrrr",
            b"\x01\x04\x00\x12\x34\x00\x07",
            b"\x01\x20\x01\x00\x09\x01\x03" + b'{"v":1,"id":"c1","name":"relay"}',
            bytes(range(0, 48)),
            b"\x00" * 24,
            b"\xff" * 300]


@pytest.mark.parametrize("body", _SAMPLES, ids=lambda b: f"{len(b)}B")
def test_every_single_bit_error_is_rejected(body: bytes) -> None:
    wire = encode_frame(body)
    follower = encode_frame(b"\x01next")
    nbits = len(wire) * 8
    for p in range(nbits):  # the delimiters too
        dec = FrameDecoder()
        got = dec.feed(_flips(wire, (p,)) + follower)
        assert got == [b"\x01next"], f"bit {p} of {body!r}"
        assert dec.counters["rejected"] >= 1


@pytest.mark.parametrize("body", _SAMPLES[:4], ids=lambda b: f"{len(b)}B")
def test_every_double_bit_error_is_rejected(body: bytes) -> None:
    wire = encode_frame(body)
    nbits = len(wire) * 8
    dec = FrameDecoder()
    accepted = rejected = 0
    for pair in itertools.combinations(range(nbits), 2):
        for got in dec.feed(_flips(wire, pair)):
            accepted += 1
            assert got == body, f"bits {pair} gave a false frame"
        rejected += 1
    assert accepted == 0
    assert dec.counters["frames"] == 0 and dec.counters["rejected"] >= rejected


def test_triple_bit_errors_are_rejected() -> None:
    wire = encode_frame(_SAMPLES[1])
    nbits = len(wire) * 8
    dec = FrameDecoder()
    for triple in itertools.combinations(range(nbits), 3):
        assert dec.feed(_flips(wire, triple)) == [], f"bits {triple}"


@pytest.mark.parametrize("body", [_SAMPLES[0], _SAMPLES[2], _SAMPLES[5]],
                         ids=lambda b: f"{len(b)}B")
def test_a_large_sample_of_triple_bit_errors_is_rejected(body: bytes) -> None:
    """20,000 random 3-bit errors (a fixed seed) per frame, delimiters included: each one is
    rejected, and the frame after it arrives."""
    wire = encode_frame(body)
    follower = encode_frame(b"\x01next")
    rng = random.Random(3)
    nbits = len(wire) * 8
    for _ in range(20_000):
        triple = tuple(rng.sample(range(nbits), 3))
        dec = FrameDecoder()
        assert dec.feed(_flips(wire, triple) + follower) == [b"\x01next"], f"bits {triple}"


# -- the firmware's implementation agrees ---------------------------------------------------
@given(st.binary(max_size=1200))
@settings(deadline=None, derandomize=True, max_examples=500)
def test_firmware_cobs_and_crc_match_the_bridge(firmware: dict, data: bytes) -> None:
    fw = firmware["ctfw_wire"]
    assert fw.cobs_encode(data) == cobs_encode(data)
    assert fw.crc16(data) == crc16(data)
    if data:
        assert fw.cobs_decode(cobs_encode(data)) == data


@given(st.lists(st.one_of(small_bodies.map(encode_frame), st.binary(max_size=40)),
                max_size=10), st.integers(1, 50))
@settings(deadline=None, derandomize=True, max_examples=1000)
def test_firmware_decoder_agrees_with_the_bridge(firmware: dict, pieces: list[bytes],
                                                  step: int) -> None:
    stream = b"".join(pieces)
    ours, theirs = FrameDecoder(), firmware["ctfw_wire"].Decoder()
    a, b = [], []
    for i in range(0, len(stream), step):
        a += ours.feed(stream[i:i + step])
        b += theirs.feed(stream[i:i + step])
    assert a == b
    for key in ("frames", "rejected", "oversized", "short", "bad_check", "bad_cobs"):
        assert ours.counters[key] == theirs.counters[key], key
