"""Reading what the simulator sends a device: JSON decoding and checked, typed fields.

:mod:`citytwin.hil.protocol` validates what devices send the simulator; the other direction
(``config``, ``input``, ``cmd``, ``error``, ``clock``, ``avail``) is read here, the way a real
device's firmware would read it: tolerant of extra keys, strict about the fields it uses. Every
problem raises :class:`PayloadError` whose ``reason`` is short enough for an ``ack`` reason.
No I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

from citytwin.errors import BridgeError
from citytwin.hil.protocol import MAX_PAYLOAD, VERSION

__all__ = ["PayloadError", "choice", "decode", "integer", "number", "text"]

_MISSING: Any = object()


class PayloadError(BridgeError):
    """A simulator payload (or a field of it) is unusable; ``reason`` says why, briefly."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:256]


def decode(payload: bytes) -> dict[str, Any]:
    """Decode a simulator payload: a UTF-8 JSON object with ``"v": 1``.

    Raises:
        PayloadError: Oversized, not JSON, not an object, or another schema version.
    """
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError(f"oversized: {len(payload)} bytes (limit {MAX_PAYLOAD})")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"malformed: not UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PayloadError("malformed: the payload is not a JSON object")
    if data.get("v") != VERSION:
        raise PayloadError(f"unsupported_version: v={data.get('v')!r}, this device speaks "
                           f"v{VERSION}")
    return data


def number(data: dict[str, Any], key: str, *, default: float = _MISSING,
           lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    """A finite number field, optionally bounded (``lo <= x <= hi``, or ``lo < x``).

    Raises:
        PayloadError: Missing (and no default), not a number, not finite or out of bounds.
    """
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise PayloadError(f"{key}: missing")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{key}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise PayloadError(f"{key}: not finite")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise PayloadError(f"{key}: must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
    if hi is not None and value > hi:
        raise PayloadError(f"{key}: must be <= {hi:g}, got {value:g}")
    return value


def integer(data: dict[str, Any], key: str, *, default: int = _MISSING, lo: int | None = None,
            hi: int | None = None) -> int:
    """An integer field (JSON integers only, not ``1.0``), optionally bounded.

    Raises:
        PayloadError: Missing (and no default), not an integer or out of bounds.
    """
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise PayloadError(f"{key}: missing")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{key}: expected an integer, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise PayloadError(f"{key}: must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise PayloadError(f"{key}: must be <= {hi}, got {value}")
    return value


def text(data: dict[str, Any], key: str, *, default: str = _MISSING,
         max_length: int = 64) -> str:
    """A non-empty string field of at most ``max_length`` characters.

    Raises:
        PayloadError: Missing (and no default), not a string, empty or too long.
    """
    value = data.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise PayloadError(f"{key}: missing")
        return default
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise PayloadError(f"{key}: expected a string of 1-{max_length} characters")
    return value


def choice(data: dict[str, Any], key: str, options: tuple[str, ...], *,
           default: str = _MISSING) -> str:
    """A string field that must be one of ``options``.

    Raises:
        PayloadError: Missing (and no default) or not one of ``options``.
    """
    value = text(data, key, default=default)
    if value not in options:
        raise PayloadError(f"{key}: must be one of {', '.join(options)}, got {value!r}")
    return value

