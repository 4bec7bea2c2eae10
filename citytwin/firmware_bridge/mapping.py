"""How a device on a serial line appears on the MQTT contract (``docs/hil-protocol.md``). No I/O.

The gateway publishes, for the device its ``HELLO`` names, exactly what a native MQTT device
publishes, and turns what the simulator sends it into serial frames:

=======================================  ===================================================
MQTT (``citytwin/v1/{site}/...``)        serial line
=======================================  ===================================================
``{kind}/{id}/avail`` (retained, will)   ``online`` on ``HELLO``; ``offline`` when the port
                                         fails, on ``BYE``, after the heartbeat timeout
``{kind}/{id}/birth`` (retained)         from the ``HELLO`` (kind, fw, lockstep, caps)
``{kind}/{id}/state``                    ``HEADS``, or ``MESSAGE`` on channel ``state``
``{kind}/{id}/ack``                      ``MESSAGE`` on channel ``ack``
``{kind}/{id}/config`` (retained)        ``MESSAGE`` parts on channel ``config``, reliable
``{kind}/{id}/input``                    ``CALLS`` when it carries ``calls``, else ``MESSAGE``
                                         on channel ``input``
``{kind}/{id}/cmd``, ``.../error``       ``MESSAGE`` parts on channel ``cmd`` / ``error``
``sim/{sim}/clock``                      ``CLOCK``
``sim/{sim}/avail``                      ``SIM_AVAIL``
=======================================  ===================================================

Device JSON (``MESSAGE`` ``state``/``ack``) is forwarded as it is, except that ``v`` and
``seq`` are the gateway's: ``v`` is the contract's version and ``seq`` counts up through the
device's MQTT session. Simulator JSON (``config``, ``cmd``, ``error``, a drone's ``input``)
reaches the device byte for byte.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from citytwin.firmware_bridge.frames import MODES, Calls, Channel, Clock, Hello
from citytwin.firmware_bridge.line import Inbound
from citytwin.hil.protocol import ROOT, encode, topic

__all__ = ["Downlink", "Publication", "SimAvail", "ToDevice", "avail", "birth", "client_id",
           "downlink", "subscriptions", "uplink", "will"]

_TO_DEVICE = {"config": Channel.CONFIG, "cmd": Channel.CMD, "error": Channel.ERROR,
              "input": Channel.INPUT}
#: ``(topic, payload, qos, retain)``.
Publication = tuple[str, bytes, int, bool]


@dataclass(frozen=True)
class SimAvail:
    """The simulator's availability, for ``SIM_AVAIL``."""

    online: bool


@dataclass(frozen=True)
class ToDevice:
    """A JSON message for the device, unchanged, on ``channel``."""

    channel: Channel
    data: bytes


Downlink = Clock | Calls | SimAvail | ToDevice


def client_id(site: str, hello: Hello) -> str:
    """The MQTT client id of a serial device."""
    return f"citytwin-serial-{site}-{hello.kind}-{hello.device_id}"


def subscriptions(site: str, hello: Hello) -> list[tuple[str, int]]:
    """What the device's MQTT client subscribes to (as a native device does)."""
    subs = [(topic(site, hello.kind, hello.device_id, ch), 1)
            for ch in ("config", "input", "cmd", "error")]
    return subs + [(f"{ROOT}/{site}/sim/+/{ch}", 1) for ch in ("clock", "avail")]


def avail(site: str, hello: Hello, online: bool) -> Publication:
    """The device's retained availability."""
    return (topic(site, hello.kind, hello.device_id, "avail"),
            encode({"status": "online" if online else "offline"}), 1, True)


def will(site: str, hello: Hello) -> Publication:
    """The device client's last will: retained availability ``offline``."""
    return avail(site, hello, False)


def birth(site: str, hello: Hello) -> Publication:
    """The device's retained ``birth``, from its ``HELLO``."""
    return (topic(site, hello.kind, hello.device_id, "birth"), encode(hello.birth()), 1, True)


def uplink(site: str, hello: Hello, event: Inbound, seq: int) -> Publication:
    """The MQTT message of a device's ``state`` or ``ack`` with the gateway's ``seq``.

    QoS 1 for acks and for lockstep devices' states (the simulator waits for them), else 0.
    """
    payload = {k: v for k, v in event.payload.items() if k not in ("v", "seq")}
    payload["seq"] = seq
    qos = 1 if event.channel == "ack" or hello.lockstep else 0
    return (topic(site, hello.kind, hello.device_id, event.channel), encode(payload), qos,
            False)


def downlink(topic_: str, payload: bytes) -> Downlink | None:
    """What a message the device's client received means for the serial line.

    Returns:
        None for an empty payload (a retained message being cleared).

    Raises:
        ValueError: The topic is not one the client subscribes to, or the clock, avail or
            signal input is not usable (not JSON, a field missing or out of range).
    """
    if not payload:
        return None
    parts = topic_.split("/")
    if len(parts) != 6:
        raise ValueError(f"unexpected topic {topic_!r}")
    kind, channel = parts[3], parts[5]
    if kind == "sim":
        data = _object(payload)
        if channel == "clock":
            mode = data.get("mode")
            return Clock(_count(data, "tick"), _seconds(data, "t"),
                         _seconds(data, "dt") if "dt" in data else 0.0,
                         mode if mode in MODES else "fast")
        if channel == "avail":
            return SimAvail(data.get("status") == "online")
        raise ValueError(f"unexpected simulator channel {channel!r}")
    if channel not in _TO_DEVICE:
        raise ValueError(f"unexpected channel {channel!r}")
    if channel == "input":
        data = _object(payload)
        calls = data.get("calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise ValueError("input: calls must be a list")
            return Calls(_count(data, "tick"), _seconds(data, "t"),
                         tuple(bool(c) for c in calls))
    return ToDevice(_TO_DEVICE[channel], payload)


def _object(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise ValueError(f"{key} must be an integer 0 to 2^32-1, not {value!r}")
    return value


def _seconds(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or not 0 <= value < 2**32 / 1000):
        raise ValueError(f"{key} must be a number of seconds 0 to 49.7 days, not {value!r}")
    return float(value)
