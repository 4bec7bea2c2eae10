"""Serial bridge benchmarks: request/response round trips and sustained frame rates.

The reference firmware runs unchanged in its own process (``python firmware/main.py``) on a
real pseudo-terminal, as a board would on a USB serial port; the bridge side is in this
process. Three parts, each a few seconds:

1. ``pty``: the bridge's line session on the pty, read and written synchronously (no reader
   thread), against a signal board. (a) *ack*: a reliable ``MESSAGE`` (a command) until its
   ``ACK`` comes back; (b) *tick*: a ``CALLS`` until the board's ``HEADS`` for that tick (the
   board runs its controller in between). p50/p99/max over ``--samples`` requests.
2. ``rate``: ``CALLS`` sent pipelined (``--window`` ticks in flight) for ``--seconds``: the
   frames/s sustained in both directions (one ``CALLS`` down and one ``HEADS`` up per tick),
   and the same with a meter board (``CLOCK`` down, a JSON ``MESSAGE state`` up).
3. ``mqtt``: the full bridge (``SerialGateway``, its reader thread and MQTT client) and a
   Mosquitto started by ``EmbeddedBroker``: a simulator-side MQTT client publishes a signal
   ``input`` and waits for the ``state`` on MQTT (MQTT -> bridge -> pty -> board -> pty ->
   bridge -> MQTT); round trips one at a time, then pipelined for ``--seconds``.

    .venv/bin/python benchmarks/serial_bench.py                # all three, about 40 s
    .venv/bin/python benchmarks/serial_bench.py --parts pty --samples 500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from citytwin.firmware_bridge.frames import Calls, Channel, Clock  # noqa: E402
from citytwin.firmware_bridge.gateway import GatewayOptions, SerialGateway  # noqa: E402
from citytwin.firmware_bridge.line import Inbound, LineSession, Online  # noqa: E402
from citytwin.firmware_bridge.port import open_port, write_all  # noqa: E402
from citytwin.hil.broker import EmbeddedBroker  # noqa: E402
from citytwin.hil.transport import MqttLink  # noqa: E402

#: A two-stage junction: links 0-1 (phase 1, detector 0) against links 2-3 (phase 2).
CONFIG = {"v": 1, "junction": "J", "links": 4, "detectors": ["d0", "d1"],
          "conflicts": [[2, 3], [2, 3], [0, 1], [0, 1]],
          "timing": {"min_green": 5.0, "max_green": 30.0, "passage": 3.0, "yellow": 3.0,
                     "red_clear": 1.0},
          "barriers": [{"rings": [[1]]}, {"rings": [[2]]}],
          "phases": {"1": {"green": {"0": "G", "1": "G"}, "detectors": [0]},
                     "2": {"green": {"2": "G", "3": "G"}, "detectors": [1]}}}


class Board:
    """The reference firmware in its own process on a fresh pty."""

    def __init__(self, kind: str, device_id: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "firmware" / "main.py"), "--kind", kind, "--id",
             device_id, "--lockstep"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True)
        assert self.proc.stdout is not None
        self.path = self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


class Line:
    """The bridge's line session over a pty, driven synchronously (no threads)."""

    def __init__(self, path: str) -> None:
        self.port = open_port(path)
        self.port.timeout = 0.01
        self.session = LineSession()
        self.session.opened(time.monotonic())
        self.inbound: list[Inbound] = []
        self.online = False

    def turn(self) -> int:
        """Write what is due, read what came, run the timers; returns the messages taken
        (each kept in :attr:`inbound`)."""
        out = self.session.take_output()
        if out:
            write_all(self.port, out)
        data = self.port.read(max(1, self.port.in_waiting))
        now = time.monotonic()
        events = (self.session.receive(data, now) if data else []) + self.session.poll(now)
        out = self.session.take_output()
        if out:
            write_all(self.port, out)
        got = [e for e in events if isinstance(e, Inbound)]
        self.inbound += got
        self.online = self.online or any(isinstance(e, Online) for e in events)
        return len(got)

    def until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise TimeoutError("no answer from the board")
            self.turn()

    def idle(self) -> bool:
        """Nothing reliable in flight or waiting."""
        return self.session.outbox.in_flight is None and not self.session.outbox.waiting

    def close(self) -> None:
        self.port.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"n": len(s), "p50_ms": 1e3 * s[len(s) // 2], "p99_ms": 1e3 * s[int(len(s) * 0.99)],
            "max_ms": 1e3 * s[-1]}


def part_pty(samples: int) -> dict[str, Any]:
    board = Board("signal", "bench-ctl")
    line = Line(board.path)
    try:
        line.until(lambda: line.online)
        line.session.send_message(Channel.CONFIG, json.dumps(CONFIG).encode(),
                                  time.monotonic())
        line.until(line.idle)
        acks = []
        for k in range(samples):
            t0 = time.perf_counter()
            line.session.send_message(Channel.CMD, json.dumps(
                {"v": 1, "seq": k, "id": f"c{k}", "name": "noop", "args": {}}).encode(),
                time.monotonic())
            line.until(line.idle)
            acks.append(time.perf_counter() - t0)
            line.until(lambda k=k: any(e.payload.get("cmd_id") == f"c{k}"
                                       for e in line.inbound))  # its "rejected" ack
            line.inbound.clear()
        ticks = []
        for tick in range(samples):
            t0 = time.perf_counter()
            line.session.send_calls(Calls(tick, float(tick), (tick % 7 == 0, True)),
                                    time.monotonic())
            line.until(lambda tick=tick: any(e.payload.get("tick") == tick
                                             for e in line.inbound))
            ticks.append(time.perf_counter() - t0)
            line.inbound.clear()
        return {"ack": percentiles(acks), "tick": percentiles(ticks),
                "refused": line.session.counters["refused"],
                "rejected_frames": line.session.decoder.counters["rejected"]}
    finally:
        line.close()
        board.close()


def pipelined(line: Line, send: Callable[[int], None], seconds: float, window: int
              ) -> dict[str, float]:
    sent = answered = 0
    c0, d0 = dict(line.session.counters), dict(line.session.decoder.counters)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        while sent - answered < window:
            send(sent)
            sent += 1
        answered += line.turn()
        line.inbound.clear()
    wall = time.perf_counter() - t0
    c, d = line.session.counters, line.session.decoder.counters
    return {"ticks_per_s": answered / wall,
            "frames_down_per_s": (c["frames_out"] - c0.get("frames_out", 0)) / wall,
            "frames_up_per_s": (c["frames_in"] - c0.get("frames_in", 0)) / wall,
            "bytes_up_per_s": (d["bytes"] - d0.get("bytes", 0)) / wall,
            "lost_or_rejected": c["frames_lost"] + d["rejected"]}


def part_rate(seconds: float, window: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("signal", "meter"):
        board = Board(kind, f"bench-{kind}")
        line = Line(board.path)
        try:
            line.until(lambda line=line: line.online)
            if kind == "signal":
                line.session.send_message(Channel.CONFIG, json.dumps(CONFIG).encode(),
                                          time.monotonic())
            line.until(line.idle)
            out[kind] = pipelined(line, _sender(line, kind), seconds, window)
        finally:
            line.close()
            board.close()
    return out


def _sender(line: Line, kind: str) -> Callable[[int], None]:
    def calls(tick: int) -> None:
        line.session.send_calls(Calls(tick, float(tick), (True, tick % 5 == 0)),
                                time.monotonic())

    def clock(tick: int) -> None:
        line.session.send_clock(Clock(tick, float(tick), 1.0, "lockstep"), time.monotonic())

    return calls if kind == "signal" else clock


def part_mqtt(samples: int, seconds: float, window: int) -> dict[str, Any]:
    base = "citytwin/v1/bench/signal/bench-ctl"
    with EmbeddedBroker(prefer="mosquitto") as broker:
        board = Board("signal", "bench-ctl")
        gw = SerialGateway(board.path, broker.url, GatewayOptions(site="bench"))
        states: queue.Queue[tuple[bytes, float]] = queue.Queue()
        sim = MqttLink(broker.url, "bench-sim", [(f"{base}/state", 1), (f"{base}/birth", 1)],
                       lambda t, p, _w: states.put((p, time.perf_counter()))
                       if t.endswith("/state") else None)
        try:
            sim.start()
            gw.start()
            deadline = time.monotonic() + 10
            while not gw.online and time.monotonic() < deadline:
                time.sleep(0.01)
            sim.publish(f"{base}/config", json.dumps(CONFIG).encode(), 1, True)

            def publish(tick: int) -> None:
                sim.publish(f"{base}/input", json.dumps(
                    {"v": 1, "seq": tick + 1, "tick": tick, "t": float(tick),
                     "calls": [1, tick % 5 == 0], "counts": [0, 0]}).encode(), 0)

            publish(0)
            states.get(timeout=10)  # the config went through: the board answers
            rtts = []
            for tick in range(1, samples + 1):
                t0 = time.perf_counter()
                publish(tick)
                _, t1 = states.get(timeout=5)
                rtts.append(t1 - t0)
            sent = answered = 0
            first = samples + 1
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                while sent - answered < window:
                    publish(first + sent)
                    sent += 1
                states.get(timeout=5)
                answered += 1
            wall = time.perf_counter() - t0
            stats = gw.stats()
            return {"round_trip": percentiles(rtts), "states_per_s": answered / wall,
                    "gateway": {k: v for k, v in stats.items()
                                if k in ("line.refused", "framing.rejected", "line.replaced",
                                         "dropped_no_mqtt", "publish_failures")}}
        finally:
            gw.stop()
            sim.stop()
            board.close()


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "processor": platform.processor() or platform.machine()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="pty,rate,mqtt")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    parts = args.parts.split(",")
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "command": " ".join(["benchmarks/serial_bench.py",
                                                   *(argv or sys.argv[1:])]),
                              "machine": machine()}
    if "pty" in parts:
        result["pty"] = part_pty(args.samples)
    if "rate" in parts:
        result["rate"] = part_rate(args.seconds, args.window)
    if "mqtt" in parts:
        result["mqtt"] = part_mqtt(min(args.samples, 1000), args.seconds, args.window)
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
