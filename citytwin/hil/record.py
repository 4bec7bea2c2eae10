"""The device log of a run: every device message in and out, with sim tick and wall time.

``devices.jsonl`` in the run folder holds one JSON object per line::

    {"tick": 12, "wall": 1764072000.123, "dir": "in", "topic": "citytwin/v1/...", "payload": "..."}

``dir`` is ``in`` (a message the bridge took in, in the order and at the tick it was applied),
``out`` (a message it published) or ``sim`` (a decision the bridge made from the wall clock,
such as a missed lockstep deadline, which a replay must repeat). Payloads that are not UTF-8 are
stored base64-encoded with ``"b64": true``. Inbound lines are written when they are applied, so
replaying them tick by tick repeats the run without devices.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

FILE_NAME = "devices.jsonl"


class Record(NamedTuple):
    """One line of the device log."""

    tick: int
    wall: float
    dir: str
    topic: str
    payload: bytes


class Recorder:
    """Appends records to ``devices.jsonl`` (or keeps nothing when ``path`` is None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")
        self.count = 0

    def write(self, tick: int, wall: float, direction: str, topic: str, payload: bytes) -> None:
        self.count += 1
        if self._file is None:
            return
        line: dict[str, object] = {"tick": tick, "wall": round(wall, 6), "dir": direction,
                                   "topic": topic}
        try:
            line["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            line["payload"] = base64.b64encode(payload).decode("ascii")
            line["b64"] = True
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_records(path: Path) -> Iterator[Record]:
    """The records of a device log, in order.

    Raises:
        ValueError: a line is not a record (the message names the line).
    """
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            try:
                d = json.loads(text)
                payload = (base64.b64decode(d["payload"]) if d.get("b64")
                           else str(d["payload"]).encode("utf-8"))
                yield Record(int(d["tick"]), float(d["wall"]), str(d["dir"]), str(d["topic"]),
                             payload)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a device-log record ({exc})") from None
