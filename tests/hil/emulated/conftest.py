"""Fixtures for the emulated devices: the configs a simulator sends, a contract check, and for
process tests a hand-played simulator (a plain paho client) and device processes."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from citytwin.hil.broker import BrokerURL, EmbeddedBroker
from citytwin.hil.emulated.device import Device, Outbound
from citytwin.hil.protocol import decode, encode, parse_topic, topic

ROOT = Path(__file__).resolve().parents[3]
SITE = "lab"
#: Ring and barrier group of each phase of the standard eight-phase dual ring.
RING = {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1}
GROUP = {1: 0, 2: 0, 5: 0, 6: 0, 3: 1, 4: 1, 7: 1, 8: 1}


def eight_phase_config(recall: dict[int, str] | None = None, **timing: float) -> dict[str, Any]:
    """The standard NEMA eight-phase junction: link ``p - 1`` and detector ``p - 1`` belong to
    phase ``p``; rings 1-4 and 5-8; barrier between 1/2/5/6 and 3/4/7/8. Links conflict unless
    their phases time together (same group, other ring)."""
    def concurrent(a: int, b: int) -> bool:
        return GROUP[a] == GROUP[b] and RING[a] != RING[b]

    recall = recall or {}
    return {
        "v": 1, "junction": "J5", "links": 8, "detectors": [f"d{p}" for p in range(1, 9)],
        "conflicts": [[q - 1 for q in range(1, 9) if q != p and not concurrent(p, q)]
                      for p in range(1, 9)],
        "timing": {"min_green": 5.0, "max_green": 40.0, "passage": 3.0, "yellow": 3.0,
                   "red_clear": 2.0, **timing},
        "barriers": [{"rings": [[1, 2], [5, 6]]}, {"rings": [[3, 4], [7, 8]]}],
        "phases": {str(p): {"green": {str(p - 1): "G"}, "detectors": [p - 1],
                            "recall": recall.get(p, "none")} for p in range(1, 9)},
    }


def calls(*phases: int) -> list[int]:
    """Detector presence of the eight-phase junction with the detectors of ``phases`` on."""
    return [1 if p in phases else 0 for p in range(1, 9)]


DRONE_CONFIG = {"v": 1, "home": [0.0, 0.0], "bounds": [-1000.0, -1000.0, 1000.0, 1000.0],
                "cruise_speed": 12.0, "climb_rate": 3.0, "cruise_alt": 60.0}


def contract(device: Device, out: list[Outbound]) -> list[dict[str, Any]]:
    """Check every outbound message against the simulator's own validation; return payloads."""
    for message in out:
        decode(parse_topic(device.topic(message.channel)), encode(message.payload))
    return [message.payload for message in out]


def acks(out: list[Outbound]) -> list[tuple[str, str, str]]:
    """``(cmd_id, status, reason)`` of the acks among ``out``."""
    return [(m.payload["cmd_id"], m.payload["status"], m.payload.get("reason", ""))
            for m in out if m.channel == "ack"]


def cmd(cmd_id: str, name: str, t: float = 0.0, valid_for: float = 30.0,
        **args: Any) -> dict[str, Any]:
    """A ``cmd`` payload as the simulator sends it."""
    return {"v": 1, "id": cmd_id, "seq": 1, "name": name, "args": args, "t": t,
            "valid_until": t + valid_for}


def clock(tick: int, t: float | None = None, dt: float = 1.0) -> dict[str, Any]:
    """A ``clock`` payload."""
    return {"v": 1, "tick": tick, "t": float(tick) if t is None else t, "dt": dt,
            "mode": "fast"}


# -- process tests ----------------------------------------------------------------------------
class SimClient:
    """The simulator's side played by hand: a paho client that keeps every message it sees."""

    def __init__(self, url: BrokerURL, client_id: str, subscribe: str = f"citytwin/v1/{SITE}/#"):
        version = (MQTTProtocolVersion.MQTTv311 if url.mqtt_version == "3.1.1"
                   else MQTTProtocolVersion.MQTTv5)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=version)
        self._lock = threading.Lock()
        self._seen: list[tuple[str, dict[str, Any] | None, bool]] = []
        subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.on_connect = lambda c, *a: c.subscribe(subscribe, 1)
        self._client.connect(url.host, url.port, keepalive=5)
        self._client.loop_start()
        if not subscribed.wait(5.0):
            pytest.fail("the simulator's test client could not subscribe")

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        data = json.loads(message.payload) if message.payload else None
        with self._lock:
            self._seen.append((message.topic, data, bool(message.retain)))

    def publish(self, channel_topic: str, payload: dict[str, Any], qos: int = 1,
                retain: bool = False) -> None:
        """Publish a JSON payload and wait until it left."""
        self._client.publish(channel_topic, json.dumps(payload), qos, retain).wait_for_publish(5)

    def seen(self, where: str) -> list[dict[str, Any]]:
        """Payloads seen so far on topic ``where``."""
        with self._lock:
            return [p for t, p, _ in self._seen if t == where and p is not None]

    def wait(self, where: str, match: Callable[[dict[str, Any]], bool] = lambda p: True,
             timeout: float = 10.0, retained: bool | None = None) -> dict[str, Any]:
        """The first payload on ``where`` that matches; fails the test after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                seen = list(self._seen)
            for t, p, r in seen:
                if t == where and p is not None and match(p) and retained in (None, r):
                    return p
            time.sleep(0.01)
        pytest.fail(f"nothing matching on {where} within {timeout} s; seen: {self.seen(where)}")

    def close(self) -> None:
        self._client.disconnect()  # wakes the network thread, so loop_stop returns at once
        self._client.loop_stop()


def device_topic(kind: str, device_id: str, channel: str) -> str:
    return topic(SITE, kind, device_id, channel)


SIM_CLOCK = topic(SITE, "sim", "sim", "clock")
SIM_AVAIL = topic(SITE, "sim", "sim", "avail")


@pytest.fixture
def sim(broker: EmbeddedBroker) -> Iterator[Callable[..., SimClient]]:
    """Open hand-played simulator clients on ``broker`` (``sim(client_id)``); closed after."""
    clients: list[SimClient] = []

    def open_client(client_id: str = "sim-by-hand", **kwargs: Any) -> SimClient:
        client = SimClient(broker.url, client_id, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def spawn(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``python -m citytwin device KIND --id ID ...`` processes on ``broker``; each
    returns once it printed its connected line. Leftovers are killed afterwards."""
    procs: list[subprocess.Popen] = []

    def start(kind: str, device_id: str, *extra: str) -> subprocess.Popen:
        log = (tmp_path / f"{device_id}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "citytwin", "device", kind, "--id", device_id, "--broker",
             str(broker.url), *extra], stdout=subprocess.PIPE, stderr=log,
            stdin=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)  # slow only on a loaded machine
        line = proc.stdout.readline().decode() if ready else ""
        if "connected to" not in line:
            proc.kill()
            proc.wait(5)
            log_text = (tmp_path / f"{device_id}.log").read_text()
            pytest.fail(f"device did not start: {line!r}\n{log_text}")
        assert line.strip() == f"device {kind}/{device_id} connected to {broker.url}"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
