"""The emulated traffic-signal controller: the NEMA controller behind the device contract.

The simulator's retained ``config`` becomes a :class:`~citytwin.hil.emulated.nema.NemaConfig`;
every ``input`` steps the controller with the tick's detector presence and is answered with a
``state`` ``{"seq", "tick", "heads"}`` that echoes the input's tick (so a lockstep simulator can
match it). One command, ``call {"phase": id}``, places a call on a phase as a push button or a
remote request would; it is ``done`` when the phase turns green. No I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from citytwin.hil.emulated.commands import Command, CommandRejected
from citytwin.hil.emulated.device import Device
from citytwin.hil.emulated.nema import NemaController
from citytwin.hil.emulated.nema_config import NemaConfig
from citytwin.hil.emulated.payload import PayloadError

__all__ = ["SignalDevice"]

_log = logging.getLogger(__name__)


class SignalDevice(Device):
    """An actuated signal controller speaking the citytwin contract.

    Args:
        device_id: The device id.
        site: The site id.
        lockstep: Announce lockstep in ``birth``.
        memory: How many command ids to remember against redelivery.
    """

    kind = "signal"
    commands = ("call",)

    def __init__(self, device_id: str, *, site: str = "lab", lockstep: bool = False,
                 memory: int = 1024) -> None:
        super().__init__(device_id, site=site, lockstep=lockstep, memory=memory)
        #: The controller in force (None until a valid config arrived).
        self.controller: NemaController | None = None
        self._pending: dict[str, str] = {}

    def capabilities(self) -> dict[str, Any]:
        """Controller type, letters it shows, and which message its ``state`` answers."""
        return {"controller": "nema-dual-ring", "letters": "ryGg", "replies": "input",
                "conflict_monitor": True}

    def _configure(self, data: dict[str, Any]) -> None:
        config = NemaConfig.from_payload(data)
        for a, b in config.unsafe_pairs():
            _log.warning("%s: phases %s and %s time together but have conflicting links; "
                         "the conflict monitor will show all red", self.name, a, b)
        self.controller = NemaController(config)
        for cmd_id in list(self._pending):
            self._finish(cmd_id, "rejected", "reconfigured")
        self._pending.clear()

    def _on_input(self, tick: int, t: float, data: dict[str, Any]) -> None:
        if self.controller is None:
            self.counters["input_without_config"] += 1
            _log.warning("%s: input for tick %d before any valid config; not answered",
                         self.name, tick)
            return
        try:
            presence = _presence(data, len(self.controller.config.detectors))
        except PayloadError as exc:
            self.counters["bad_input"] += 1
            _log.warning("%s: input for tick %d: %s; stepping without calls", self.name, tick,
                         exc.reason)
            presence = []
        before = self.controller.conflicts_prevented
        heads = self.controller.step(t, presence)
        if self.controller.conflicts_prevented > before:
            self.counters["conflicts_prevented"] += 1
            _log.error("%s: tick %d: conflicting links would have been lit; showing all red",
                       self.name, tick)
        self._state({"tick": tick, "heads": heads})
        green = self.controller.green_phases
        for cmd_id, phase in list(self._pending.items()):
            if phase in green:
                del self._pending[cmd_id]
                self._finish(cmd_id)

    def _execute(self, cmd: Command) -> bool:
        if self.controller is None:
            raise CommandRejected("not_configured")
        phase = cmd.args.get("phase")
        if isinstance(phase, int) and not isinstance(phase, bool):
            phase = str(phase)
        if not isinstance(phase, str) or phase not in self.controller.config.phases:
            raise PayloadError(f"phase: {phase!r} is not a phase of this junction")
        self.controller.place_call(phase)
        if phase in self.controller.green_phases:
            return True
        self._pending[cmd.id] = phase
        return False


def _presence(data: dict[str, Any], n: int) -> Sequence[bool]:
    """Per detector: actuated this tick (``calls[i]`` true or non-zero, or ``counts[i] > 0``)."""
    present = [False] * n
    for key in ("calls", "counts"):
        values = data.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != n:
            raise PayloadError(f"{key}: expected a list of {n} values (one per detector)")
        for i, value in enumerate(values):
            if not isinstance(value, bool | int | float) or value != value or value < 0:
                raise PayloadError(f"{key}[{i}]: expected a number >= 0 or a boolean")
            present[i] = present[i] or bool(value)
    return present
