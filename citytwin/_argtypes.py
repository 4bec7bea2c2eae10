"""Value types for the command lines' options: each parses one argument or raises
:class:`argparse.ArgumentTypeError` with what is wrong (argparse then exits with 2)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from citytwin.errors import BridgeError

if TYPE_CHECKING:
    from citytwin.hil.broker import BrokerURL


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, a speed factor)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def name(text: str) -> str:
    """A site or device id: 1-64 of ``A-Z a-z 0-9 _ . -``."""
    from citytwin.hil.protocol import valid_name

    if not valid_name(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return text


def broker_url(text: str) -> BrokerURL:
    from citytwin.hil.broker import BrokerURL

    try:
        return BrokerURL.parse(text)
    except BridgeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
