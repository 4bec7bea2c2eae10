"""The citytwin HIL contract, version 1: topics and payloads (``docs/hil-protocol.md``).

Every topic has the same depth::

    citytwin/v1/{site}/{kind}/{device}/{channel}

``kind`` is ``signal``, ``drone``, ``meter`` or ``sim`` (the simulator itself). Channels a
device publishes: ``avail`` (retained, also its last will), ``birth`` (retained), ``state``,
``ack``. Channels the simulator publishes to a device: ``config`` (retained), ``input``,
``cmd``, ``error``; and on its own ``sim`` topics: ``avail`` (retained, last will), ``clock``,
``event``. Payloads are UTF-8 JSON objects carrying ``"v": 1``.

This module builds and parses topics and validates inbound payloads; it does no I/O. Inbound
payloads are checked by :func:`decode`, which raises :class:`Rejected` with one of
:data:`REJECT_CODES`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Schema version of every payload.
VERSION = 1
#: Topic root.
ROOT = f"citytwin/v{VERSION}"
#: Largest inbound payload accepted, bytes.
MAX_PAYLOAD = 16 * 1024
KINDS = ("signal", "drone", "meter")
DEVICE_CHANNELS = ("avail", "birth", "state", "ack")
SIM_CHANNELS = ("config", "input", "cmd", "error")
#: Reasons an inbound message is rejected (the ``code`` of an ``error`` message).
REJECT_CODES = ("bad_topic", "oversized", "malformed", "unsupported_version", "unknown_device",
                "out_of_order", "stale", "out_of_range", "not_online", "unknown_command",
                "conflict")
#: Link-state letters a signal controller may publish (SUMO's): red, yellow, minor and major
#: green, and ``o``/``O`` for a dark or flashing head (drivers yield / have priority).
SIGNAL_LETTERS = "ryGgoO"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Rejected(Exception):  # noqa: N818 - a verdict, not a failure of citytwin
    """An inbound message failed validation; ``code`` is one of :data:`REJECT_CODES`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def valid_name(name: str) -> bool:
    """True if ``name`` can be a site or device id (1-64 of ``A-Z a-z 0-9 _ . -``)."""
    return bool(_NAME.match(name))


# -- topics -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Topic:
    """A parsed topic: ``citytwin/v1/{site}/{kind}/{device}/{channel}``."""

    site: str
    kind: str
    device: str
    channel: str

    def __str__(self) -> str:
        return f"{ROOT}/{self.site}/{self.kind}/{self.device}/{self.channel}"


def topic(site: str, kind: str, device: str, channel: str) -> str:
    """Build a topic string."""
    return str(Topic(site, kind, device, channel))


def device_filters(site: str) -> list[str]:
    """The subscriptions that receive every channel devices of a site publish on."""
    return [f"{ROOT}/{site}/+/+/{channel}" for channel in DEVICE_CHANNELS]


def parse_topic(text: str) -> Topic:
    """Parse an inbound device topic.

    Raises:
        Rejected: ``bad_topic`` when the topic is not ``citytwin/v1/site/kind/device/channel``
            with a known kind and a device channel.
    """
    parts = text.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != ROOT:
        raise Rejected("bad_topic", f"expected {ROOT}/SITE/KIND/DEVICE/CHANNEL, got {text!r}")
    _, _, site, kind, device, channel = parts
    if kind not in KINDS:
        raise Rejected("bad_topic", f"unknown device kind {kind!r} (one of {', '.join(KINDS)})")
    if channel not in DEVICE_CHANNELS:
        raise Rejected("bad_topic", f"devices publish on {', '.join(DEVICE_CHANNELS)}, "
                                    f"not {channel!r}")
    if not (valid_name(site) and valid_name(device)):
        raise Rejected("bad_topic", "site and device ids are 1-64 of A-Z a-z 0-9 _ . -")
    return Topic(site, kind, device, channel)


# -- inbound payloads -------------------------------------------------------------------------
class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]


Seq = Annotated[int, Field(ge=0, lt=2**53)]
Tick = Annotated[int, Field(ge=0, lt=2**53)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Avail(_Msg):
    """``avail``: retained online/offline; the device's last will says ``offline``."""

    status: Literal["online", "offline"]


class Birth(_Msg):
    """``birth``: who the device is and what it can do; starts a new session (``seq`` anew)."""

    kind: Literal["signal", "drone", "meter"]
    fw: Annotated[str, Field(max_length=64)] = ""
    lockstep: bool = False
    capabilities: dict[str, Any] = Field(default_factory=dict)


class SignalState(_Msg):
    """Signal controller ``state``: one SUMO letter per link of its junction."""

    seq: Seq
    tick: Tick | None = None
    heads: Annotated[str, Field(min_length=1, max_length=512)]


class DroneState(_Msg):
    """Drone ``state``: position in the city's metric frame, heading clockwise from north."""

    seq: Seq
    tick: Tick | None = None
    x: Finite
    y: Finite
    alt: Annotated[float, Field(ge=0, le=500)]
    heading: Annotated[float, Field(ge=0, lt=360)]
    speed: Annotated[float, Field(ge=0, le=60)]
    battery: Annotated[float, Field(ge=0, le=100)]
    mode: Literal["landed", "idle", "flying", "returning", "landing"]


class MeterState(_Msg):
    """Meter ``state``: energy register and power of its building."""

    seq: Seq
    tick: Tick | None = None
    energy_wh: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    power_w: Annotated[float, Field(ge=0, le=1e8)]
    relay: Literal["closed", "open"]


class Ack(_Msg):
    """``ack``: a device's answer to a command (``accepted`` then ``done``, or ``rejected``)."""

    seq: Seq
    cmd_id: Annotated[str, Field(min_length=1, max_length=64)]
    status: Literal["accepted", "rejected", "done"]
    reason: Annotated[str, Field(max_length=256)] = ""


STATE_MODELS: dict[str, type[_Msg]] = {"signal": SignalState, "drone": DroneState,
                                       "meter": MeterState}
Inbound = Avail | Birth | SignalState | DroneState | MeterState | Ack


def decode(t: Topic, payload: bytes) -> Inbound:
    """Validate an inbound payload for topic ``t``.

    Raises:
        Rejected: ``oversized``, ``malformed`` (not JSON, wrong fields or types),
            ``unsupported_version`` or ``out_of_range`` (a value outside its bounds).
    """
    if len(payload) > MAX_PAYLOAD:
        raise Rejected("oversized", f"{len(payload)} bytes; the limit is {MAX_PAYLOAD}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected("malformed", f"not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Rejected("malformed", "the payload must be a JSON object")
    if data.get("v") != VERSION:
        raise Rejected("unsupported_version",
                       f"schema version {data.get('v')!r}; this simulator speaks v{VERSION}")
    by_channel: dict[str, type[_Msg]] = {"avail": Avail, "birth": Birth, "ack": Ack}
    model = by_channel.get(t.channel) or STATE_MODELS[t.kind]
    try:
        return cast(Inbound, model.model_validate(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        code = "out_of_range" if err["type"] in _RANGE_ERRORS else "malformed"
        raise Rejected(code, f"{where}: {err['msg']}") from None


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                 "finite_number", "literal_error", "string_too_long", "string_too_short"}


def encode(payload: dict[str, Any]) -> bytes:
    """Serialise an outbound payload (adds the schema version, compact, keys sorted)."""
    return json.dumps({"v": VERSION, **payload}, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode()
