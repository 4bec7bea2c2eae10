"""What every emulated device does, whatever its kind: sessions, sim time, commands. No I/O.

A :class:`Device` is fed the MQTT messages addressed to it and returns the messages it
publishes in answer (:class:`Outbound`: channel, payload, QoS, retain); the runner
(:mod:`citytwin.hil.emulated.runner`) moves them over the wire. Subclasses (signal, drone,
meter) implement the hooks ``_configure``, ``_on_input``, ``_on_clock``, ``_execute`` and, if
they need the wall clock, ``_on_wall``.

The shared contract, as a real device would speak it:

- The last will is ``avail`` ``{"v":1,"status":"offline"}`` (retained, QoS 1). On every
  (re)connect, :meth:`Device.connected` gives ``avail`` online and ``birth`` (both retained,
  QoS 1) and restarts ``seq`` at 0; every ``state`` and ``ack`` then carries the next ``seq``
  (one counter for both channels).
- Subscriptions: the device's own ``config``, ``input``, ``cmd``, ``error``, and every
  simulator's ``clock`` and ``avail`` of the site.
- A retained ``config`` redelivered on reconnect is recognised and not applied again.
- Sim time is what ``clock`` and ``input`` say (the latest; a step back means a new simulator
  session); a ``cmd`` can only move it forward. No behaviour reads the wall clock except the
  hooks that are handed it.
- Commands: a known id is answered with its last status and not executed again; then
  ``expired`` (``valid_until`` before the sim time), ``unknown_command``, ``bad_args: ...`` or
  a kind's own reason reject it; otherwise ``accepted``, and ``done`` when finished.
- ``error`` messages (the simulator rejected something) are logged and counted.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from citytwin import __version__
from citytwin.errors import BridgeError
from citytwin.hil.emulated.commands import Command, CommandMemory, CommandRejected, Status
from citytwin.hil.emulated.payload import PayloadError, choice, decode, integer, number, text
from citytwin.hil.protocol import ROOT, VERSION, topic, valid_name

__all__ = ["FIRMWARE", "Device", "Outbound"]

_log = logging.getLogger(__name__)

#: The ``fw`` string of every emulated device's birth.
FIRMWARE = f"citytwin-emu {__version__}"
_OWN_CHANNELS = ("config", "input", "cmd", "error")
_SIM_CHANNELS = ("clock", "avail")


@dataclass(frozen=True)
class Outbound:
    """A message a device publishes on one of its own channels.

    Attributes:
        channel: ``avail``, ``birth``, ``state`` or ``ack``.
        payload: The JSON object, ``"v": 1`` included.
        qos: MQTT QoS.
        retain: Whether the broker keeps it for late subscribers.
    """

    channel: str
    payload: dict[str, Any]
    qos: int = 0
    retain: bool = False


class Device(ABC):
    """The behaviour every emulated device kind shares.

    Args:
        device_id: The device id (1-64 of ``A-Z a-z 0-9 _ . -``).
        site: The site id, same alphabet.
        lockstep: Announce in ``birth`` that the simulator may wait for this device each tick
            (``state`` is then published at QoS 1).
        memory: How many command ids to remember against redelivery.

    Raises:
        BridgeError: The device or site id is not a valid name.
    """

    #: The device kind (``signal``, ``drone``, ``meter``).
    kind: ClassVar[str]
    #: Names of the commands this kind accepts.
    commands: ClassVar[tuple[str, ...]] = ()

    def __init__(self, device_id: str, *, site: str = "lab", lockstep: bool = False,
                 memory: int = 1024) -> None:
        for what, name in (("device id", device_id), ("site", site)):
            if not valid_name(name):
                raise BridgeError(f"bad {what} {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        self.device_id = device_id
        self.site = site
        self.lockstep = lockstep
        #: Everything worth counting: ``malformed``, ``errors_received``, ``error.<code>``,
        #: ``bad_config``, ``commands_rejected``, ``duplicate_commands`` and per-kind counts.
        self.counters: Counter[str] = Counter()
        self._memory = CommandMemory(memory)
        self._seq = 0
        self._out: list[Outbound] = []
        self._config: dict[str, Any] | None = None
        self._sim_time: float | None = None
        self._sims: dict[str, bool] = {}
        self._last_heard: float | None = None

    # -- identity -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``kind/id``, as logs and the command line show the device."""
        return f"{self.kind}/{self.device_id}"

    def topic(self, channel: str) -> str:
        """The topic of one of this device's channels."""
        return topic(self.site, self.kind, self.device_id, channel)

    def subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters and QoS to subscribe to (renewed on every reconnect)."""
        own = [(self.topic(ch), 1) for ch in _OWN_CHANNELS]
        return own + [(f"{ROOT}/{self.site}/sim/+/{ch}", 1) for ch in _SIM_CHANNELS]

    @abstractmethod
    def capabilities(self) -> dict[str, Any]:
        """What this device can do, for its ``birth`` (``commands`` is added)."""

    # -- session ------------------------------------------------------------------------------
    def will(self) -> Outbound:
        """The last will: ``avail`` offline, retained, QoS 1."""
        return Outbound("avail", {"v": VERSION, "status": "offline"}, qos=1, retain=True)

    def goodbye(self) -> Outbound:
        """What a device publishes when it stops on purpose (the same as its will)."""
        return self.will()

    def connected(self) -> list[Outbound]:
        """Start a session (every connect and reconnect): ``avail`` online and ``birth``."""
        self._seq = 0
        birth = {"v": VERSION, "kind": self.kind, "fw": FIRMWARE, "lockstep": self.lockstep,
                 "capabilities": {**self.capabilities(), "commands": list(self.commands)}}
        return [Outbound("avail", {"v": VERSION, "status": "online"}, qos=1, retain=True),
                Outbound("birth", birth, qos=1, retain=True)]

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next ``state`` or ``ack`` will carry."""
        return self._seq

    # -- what the simulator says --------------------------------------------------------------
    @property
    def sim_time(self) -> float | None:
        """The latest sim time seen, seconds (None before any)."""
        return self._sim_time

    @property
    def sim_online(self) -> bool | None:
        """True if a simulator of the site says it is online, False if all say offline,
        None if none has said anything."""
        return any(self._sims.values()) if self._sims else None

    @property
    def config(self) -> dict[str, Any] | None:
        """The ``config`` payload in force (None before a valid one arrived)."""
        return self._config

    def handle(self, topic_text: str, payload: bytes, wall: float = 0.0) -> list[Outbound]:
        """Take one MQTT message; return what to publish in answer.

        Args:
            topic_text: The topic it arrived on.
            payload: Its raw bytes.
            wall: Wall-clock time of arrival (monotonic seconds); only link timers use it.
        """
        parts = topic_text.split("/")
        sim_id = "sim"
        if parts[-1] in _OWN_CHANNELS and topic_text == self.topic(parts[-1]):
            channel = parts[-1]
        elif (len(parts) == 6 and parts[3] == "sim" and parts[2] == self.site
              and parts[-1] in _SIM_CHANNELS and "/".join(parts[:2]) == ROOT):
            channel, sim_id = parts[-1], parts[4]
        else:
            self.counters["foreign_topic"] += 1
            _log.debug("%s: ignoring a message on %s", self.name, topic_text)
            return []
        try:
            data = decode(payload)
        except PayloadError as exc:
            self.counters["malformed"] += 1
            _log.warning("%s: unusable %s message: %s", self.name, channel, exc.reason)
            return []
        return self.receive(channel, data, wall=wall, sim=sim_id)

    def receive(self, channel: str, data: dict[str, Any], *, wall: float = 0.0,
                sim: str = "sim") -> list[Outbound]:
        """Take one decoded message; return what to publish in answer.

        Args:
            channel: ``config``, ``input``, ``cmd`` or ``error`` (the device's own topics), or
                ``clock`` or ``avail`` (a simulator's topics; a device never subscribes to its
                own ``avail``).
            data: The decoded JSON payload.
            wall: Wall-clock time of arrival (monotonic seconds).
            sim: The simulator id of ``clock`` and ``avail``.
        """
        try:
            if channel == "avail":
                self._sim_avail(sim, data, wall)
            elif channel == "clock":
                self._heard(wall)
                self._clock(data)
            elif channel == "config":
                self._config_message(data)
            elif channel == "input":
                self._heard(wall)
                tick = integer(data, "tick", lo=0)
                t = number(data, "t")
                self._see_time(t)
                self._on_input(tick, t, data)
            elif channel == "cmd":
                self._heard(wall)
                self._command(data)
            elif channel == "error":
                self._heard(wall)
                self._error(data)
        except PayloadError as exc:
            self.counters["malformed"] += 1
            _log.warning("%s: unusable %s message: %s", self.name, channel, exc.reason)
        return self._flush()

    def poll(self, wall: float) -> list[Outbound]:
        """Let wall-clock timers run (the runner calls this a few times a second)."""
        self._on_wall(wall)
        return self._flush()

    # -- for subclasses -----------------------------------------------------------------------
    def _configure(self, data: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Apply a new ``config``; raise :class:`PayloadError` to refuse it."""

    def _on_input(self, tick: int, t: float, data: dict[str, Any]) -> None:  # noqa: B027
        """Handle an ``input`` (``tick`` and ``t`` already checked)."""

    def _on_clock(self, tick: int, t: float, data: dict[str, Any]) -> None:  # noqa: B027
        """Handle a simulator ``clock``."""

    def _on_wall(self, wall: float) -> None:  # noqa: B027
        """Run wall-clock timers."""

    def _on_sim_avail(self, online: bool | None, wall: float) -> None:  # noqa: B027
        """React to a change of :attr:`sim_online`."""

    def _execute(self, cmd: Command) -> bool:
        """Start a command whose name is in :attr:`commands`.

        Returns:
            True if it finished already (``done`` follows ``accepted`` at once); False if the
            device calls :meth:`_finish` later.

        Raises:
            PayloadError: Bad arguments (rejected as ``bad_args: <reason>``).
            CommandRejected: Refused for another reason.
        """
        raise CommandRejected("unknown_command")

    def _state(self, payload: dict[str, Any]) -> None:
        """Publish a ``state`` (``v`` and ``seq`` are added)."""
        out = {"v": VERSION, "seq": self._take_seq(), **payload}
        self._out.append(Outbound("state", out, qos=1 if self.lockstep else 0))

    def _finish(self, cmd_id: str, status: Status = "done", reason: str = "") -> None:
        """Publish the final ack of a command that was accepted earlier."""
        self._ack(cmd_id, status, reason)

    # -- internals ----------------------------------------------------------------------------
    def _take_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _ack(self, cmd_id: str, status: Status, reason: str = "") -> None:
        self._memory.record(cmd_id, status, reason)
        out: dict[str, Any] = {"v": VERSION, "seq": self._take_seq(), "cmd_id": cmd_id,
                               "status": status}
        if reason:
            out["reason"] = reason
        self._out.append(Outbound("ack", out, qos=1))

    def _flush(self) -> list[Outbound]:
        out, self._out = self._out, []
        return out

    def _heard(self, wall: float) -> None:
        self._last_heard = wall

    def _see_time(self, t: float) -> None:
        if self._sim_time is not None and t < self._sim_time:
            _log.info("%s: sim time went back from %g to %g s: a new simulator session",
                      self.name, self._sim_time, t)
        self._sim_time = t

    def _clock(self, data: dict[str, Any]) -> None:
        tick = integer(data, "tick", lo=0)
        t = number(data, "t")
        self._see_time(t)
        self._on_clock(tick, t, data)

    def _sim_avail(self, sim: str, data: dict[str, Any], wall: float) -> None:
        before = self.sim_online
        self._sims[sim] = choice(data, "status", ("online", "offline")) == "online"
        if self.sim_online != before:
            _log.info("%s: simulator %s is %s", self.name, sim,
                      "online" if self._sims[sim] else "offline")
            self._on_sim_avail(self.sim_online, wall)

    def _config_message(self, data: dict[str, Any]) -> None:
        if data == self._config:
            return  # the retained config, redelivered after a reconnect
        try:
            self._configure(data)
        except PayloadError as exc:
            self.counters["bad_config"] += 1
            _log.error("%s: config refused, keeping the previous one: %s", self.name,
                       exc.reason)
            return
        self._config = data
        _log.info("%s: configured", self.name)

    def _error(self, data: dict[str, Any]) -> None:
        code = text(data, "code", default="unknown")
        ref = data.get("ref")
        if not isinstance(ref, dict):
            ref = {}
        self.counters["errors_received"] += 1
        self.counters[f"error.{code}"] += 1
        _log.warning("%s: the simulator rejected our %s (seq %s): %s: %s", self.name,
                     ref.get("channel", "?"), ref.get("seq"), code, data.get("detail", ""))

    def _command(self, data: dict[str, Any]) -> None:
        cmd = Command.from_payload(data)
        if cmd.t is not None and (self._sim_time is None or cmd.t > self._sim_time):
            self._sim_time = cmd.t
        known = self._memory.get(cmd.id)
        if known is not None:
            self.counters["duplicate_commands"] += 1
            _log.info("%s: command %s seen before; answering %s again", self.name, cmd.id,
                      known[0])
            self._ack(cmd.id, *known)
            return
        try:
            if cmd.problem:
                raise CommandRejected(cmd.problem)
            if cmd.expired(self._sim_time):
                raise CommandRejected("expired")
            if cmd.name not in self.commands:
                raise CommandRejected("unknown_command")
            finished = self._execute(cmd)
        except PayloadError as exc:
            self._reject(cmd, f"bad_args: {exc.reason}")
        except CommandRejected as exc:
            self._reject(cmd, exc.reason)
        else:
            self.counters["commands_accepted"] += 1
            _log.info("%s: command %s %s %s accepted", self.name, cmd.id, cmd.name, cmd.args)
            self._ack(cmd.id, "accepted")
            if finished:
                self._ack(cmd.id, "done")

    def _reject(self, cmd: Command, reason: str) -> None:
        self.counters["commands_rejected"] += 1
        _log.info("%s: command %s %r rejected: %s", self.name, cmd.id, cmd.name, reason)
        self._ack(cmd.id, "rejected", reason)
