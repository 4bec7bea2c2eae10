"""Problems in a scenario file, in the file's own words.

Turns TOML syntax errors and pydantic's validation errors into lines that start with the file
path and name the field as it is written in the file (``demand.flows[2].vehs_per_hour``),
with short messages (``must be > 0``, ``unknown key (did you mean 'period'?)``).
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from citytwin.scenarios.schema import ScenarioSpec

_MAX_ERRORS = 8


def toml_message(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if m:
        return f"{path}:{m[1]}:{m[2]}: invalid TOML: {msg[:m.start()]}"
    return f"{path}: invalid TOML: {msg}"


_PLAIN = {
    "missing": "required key is missing",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be an array",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
           "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}


def validation_message(path: Path, exc: ValidationError) -> str:
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors[:_MAX_ERRORS]:
        where = _field_path(err["loc"])
        lines.append(f"{path}: {where + ': ' if where else ''}{_describe(err)}")
    if len(errors) > _MAX_ERRORS:
        lines.append(f"{path}: ... and {len(errors) - _MAX_ERRORS} more problems")
    return "\n".join(lines)


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: ErrorDetails) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _BOUNDS:
        key, op = _BOUNDS[kind]
        return f"must be {op} {ctx[key]:g}" if isinstance(ctx.get(key), float) else \
            f"must be {op} {ctx.get(key)}"
    if kind == "extra_forbidden":
        allowed = _keys_at(err["loc"][:-1])
        hint = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        if hint:
            return f"unknown key (did you mean {hint[0]!r}?)"
        return "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)" if "min_length" in ctx else \
            "is too short"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in _PLAIN:
        got = err.get("input")
        shown = "" if kind == "missing" or isinstance(got, dict | list) else f", got {got!r}"
        return _PLAIN[kind] + shown
    msg = err["msg"]
    return msg[:1].lower() + msg[1:]


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the table at ``loc`` (for "did you mean" hints)."""
    model: type[BaseModel] | None = ScenarioSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_in(tp: object) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is not None:
        for arg in typing.get_args(tp):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
