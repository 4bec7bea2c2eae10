"""Commands a device receives: parsing, rejection reasons, and a memory against redelivery.

A ``cmd`` payload is ``{"v":1,"id":"c17","seq":n,"name":str,"args":{...},"t":s,
"valid_until":s}``. :class:`Command` is its parsed form. :class:`CommandMemory` remembers the
last status answered for each of the most recent command ids, so a command redelivered by QoS 1
(after a broker restart, say) is answered again and never executed twice. No I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from citytwin.hil.emulated.payload import PayloadError, integer, number, text

__all__ = ["Command", "CommandMemory", "CommandRejected", "Status"]

#: What an ``ack`` says about a command.
Status = Literal["accepted", "rejected", "done"]


class CommandRejected(Exception):  # noqa: N818 - a verdict on a command, not a failure
    """A command is refused; ``reason`` goes into the ``rejected`` ack."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:256]


@dataclass(frozen=True)
class Command:
    """One command from the simulator.

    Attributes:
        id: The command id the acks refer to (``cmd_id``).
        name: What to do (``goto``, ``curtail``, ...).
        args: Its arguments, unchecked (each device checks its own).
        seq: The simulator's sequence number, if given.
        t: Sim time the command was issued at, if given.
        valid_until: Sim time after which the command must not start, or None (no expiry).
        problem: Why the command cannot run whatever its name (a rejection reason), or "".
    """

    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    t: float | None = None
    valid_until: float | None = None
    problem: str = ""

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Command:
        """Parse a decoded ``cmd`` payload.

        A command whose id is usable is always returned, so that it can be answered; what else
        is wrong with it is in ``problem`` (a rejection reason).

        Raises:
            PayloadError: No usable ``id``: the command cannot even be answered.
        """
        cmd_id = text(data, "id")
        name = data.get("name")
        args = data.get("args")
        try:
            if args is not None and not isinstance(args, dict):
                raise PayloadError("args: expected an object")
            seq = integer(data, "seq", default=-1, lo=0)
            t = number(data, "t", default=math.nan)
            until = number(data, "valid_until", default=math.nan)
        except PayloadError as exc:
            return cls(id=cmd_id, name=str(name), problem=f"bad_args: {exc.reason}")
        return cls(id=cmd_id, name=name if isinstance(name, str) else "", args=args or {},
                   seq=None if seq < 0 else seq, t=None if math.isnan(t) else t,
                   valid_until=None if math.isnan(until) else until)

    def expired(self, sim_time: float | None) -> bool:
        """True if the command's ``valid_until`` lies before ``sim_time``."""
        return (self.valid_until is not None and sim_time is not None
                and self.valid_until < sim_time)


class CommandMemory:
    """The last status answered for each of the ``size`` most recent command ids.

    Args:
        size: How many ids to remember (the oldest is forgotten first).
    """

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError(f"CommandMemory(size={size}): remember at least one id")
        self._size = size
        self._last: OrderedDict[str, tuple[Status, str]] = OrderedDict()

    def get(self, cmd_id: str) -> tuple[Status, str] | None:
        """The last ``(status, reason)`` answered for ``cmd_id``, or None if not remembered."""
        return self._last.get(cmd_id)

    def record(self, cmd_id: str, status: Status, reason: str = "") -> None:
        """Remember the latest status of ``cmd_id`` (forgetting the oldest id if full)."""
        if cmd_id not in self._last and len(self._last) >= self._size:
            self._last.popitem(last=False)
        self._last[cmd_id] = (status, reason)

    def __contains__(self, cmd_id: object) -> bool:
        return cmd_id in self._last

    def __len__(self) -> int:
        return len(self._last)
