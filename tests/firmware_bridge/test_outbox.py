"""The outbox: control frames at once, reliable frames one at a time until ACKed, per-tick
frames never ahead of a reliable frame queued before them. The clock is numbers."""

from __future__ import annotations

from collections import Counter

from citytwin.firmware_bridge.frames import Frame, FrameType, Nak, parse
from citytwin.firmware_bridge.framing import FrameDecoder
from citytwin.firmware_bridge.outbox import Outbox


def make() -> tuple[Outbox, Counter[str]]:
    counters: Counter[str] = Counter()
    return Outbox(rto=0.25, retries=3, queue_limit=4, counters=counters), counters


def sent(box: Outbox) -> list[Frame]:
    return [parse(b) for b in FrameDecoder().feed(box.take_output())]


def test_reliable_frames_go_one_at_a_time_and_per_tick_frames_wait_behind_them() -> None:
    box, _ = make()
    box.reliable(FrameType.MESSAGE, b"cfg1", 0.0)
    box.reliable(FrameType.MESSAGE, b"cfg2", 0.0)
    box.per_tick("calls", FrameType.CALLS, b"tick1", 0.0)
    box.control(FrameType.HEARTBEAT)  # control frames never wait
    first = sent(box)
    assert [(f.type, f.payload, f.ack_requested) for f in first] == [
        (FrameType.MESSAGE, b"cfg1", True), (FrameType.HEARTBEAT, b"", False)]
    box.per_tick("calls", FrameType.CALLS, b"tick2", 0.01)  # replaces tick1 (late ticks die)
    assert sent(box) == []
    assert box.acked(first[0].seq, 0.02)
    (second,) = sent(box)
    assert second.payload == b"cfg2"
    assert box.acked(second.seq, 0.03)
    (calls,) = sent(box)
    assert (calls.type, calls.payload, calls.ack_requested) == (FrameType.CALLS, b"tick2", False)


def test_a_per_tick_frame_after_a_reliable_one_is_not_merged_into_an_earlier_one() -> None:
    box, counters = make()
    box.reliable(FrameType.SIM_AVAIL, b"\x01", 0.0)
    box.per_tick("clock", FrameType.CLOCK, b"c1", 0.0)
    box.reliable(FrameType.MESSAGE, b"cfg", 0.0)
    box.per_tick("clock", FrameType.CLOCK, b"c2", 0.0)  # must stay behind cfg
    box.per_tick("clock", FrameType.CLOCK, b"c3", 0.0)  # replaces c2, not c1
    order = []
    for _ in range(4):
        frames = sent(box)
        order += [f.payload for f in frames]
        for f in frames:
            if f.ack_requested:
                box.acked(f.seq, 0.0)
    assert order == [b"\x01", b"c1", b"cfg", b"c3"]
    assert counters["replaced"] == 1


def test_resend_after_rto_then_give_up_and_move_on() -> None:
    box, counters = make()
    box.reliable(FrameType.MESSAGE, b"a", 0.0)
    box.reliable(FrameType.MESSAGE, b"b", 0.0)
    (a,) = sent(box)
    box.poll(0.2)
    assert sent(box) == []  # rto not reached
    assert box.next_deadline() == 0.25
    box.poll(0.25)
    box.poll(0.5)
    resent = sent(box)
    assert [f.seq for f in resent] == [a.seq, a.seq]  # same seq, so the device can dedupe
    box.poll(0.75)  # third send was the last: dropped, the next one goes
    (b,) = sent(box)
    assert b.payload == b"b" and b.seq != a.seq
    assert counters["retransmits"] == 2 and counters["delivery_failed"] == 1
    assert not box.acked(a.seq, 0.8) and counters["stray_acks"] == 1  # too late


def test_nak_busy_retries_any_other_nak_drops() -> None:
    box, counters = make()
    box.reliable(FrameType.MESSAGE, b"a", 0.0)
    (a,) = sent(box)
    assert box.naked(a.seq, Nak.BUSY, 0.01)
    assert box.in_flight is not None
    box.poll(0.25)
    assert [f.seq for f in sent(box)] == [a.seq]
    assert box.naked(a.seq, Nak.TOO_LARGE, 0.3)
    assert box.in_flight is None and counters["delivery_failed"] == 1
    assert not box.naked(999, Nak.BUSY, 0.3)  # not the frame in flight


def test_reliable_queue_is_bounded() -> None:
    box, counters = make()
    accepted = [box.reliable(FrameType.MESSAGE, bytes([i]), 0.0) for i in range(7)]
    assert accepted == [True] * 5 + [False] * 2  # one in flight, four waiting
    assert counters["queue_full"] == 2 and box.waiting == 4


def test_clear_forgets_frames_but_not_bytes_already_written() -> None:
    box, _ = make()
    box.reliable(FrameType.MESSAGE, b"a", 0.0)
    box.reliable(FrameType.MESSAGE, b"b", 0.0)
    box.clear()
    assert [f.payload for f in sent(box)] == [b"a"]
    assert box.in_flight is None and box.waiting == 0
    box.control(FrameType.HEARTBEAT)
    box.discard_output()
    assert box.take_output() == b""


def test_sequence_numbers_count_every_frame_and_wrap() -> None:
    box, _ = make()
    for _ in range(65537):
        box.control(FrameType.HEARTBEAT)
    seqs = [f.seq for f in sent(box)]
    assert seqs[:2] == [0, 1] and seqs[-2:] == [65535, 0]
