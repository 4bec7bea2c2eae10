"""A junction's signal-controller configuration: the simulator's retained ``config``, checked.

:class:`NemaConfig` reads ``{"junction","links","detectors","conflicts","timing","barriers",
"phases"}``: per link the links that must never be green with it (made symmetric); timing
(``min_green``, ``max_green``, ``passage``, ``yellow``, ``red_clear``; a phase may override any
in its own ``timing``); barrier groups holding, per ring, the ordered phase ids of that ring
(a ring may be empty in a group); and per phase (string ids) the links it turns green with
``G`` or ``g``, the detectors (indices into ``detectors``) that call it and its recall
(``none``, ``min``, ``max``). Every phase must sit in exactly one ring of one group. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from citytwin.hil.emulated.payload import PayloadError, choice, integer, number, text

__all__ = ["NemaConfig", "PhaseSpec", "Timing"]

_TIMING_KEYS = ("min_green", "max_green", "passage", "yellow", "red_clear")


@dataclass(frozen=True)
class Timing:
    """Phase timing, seconds of sim time."""

    min_green: float = 5.0
    max_green: float = 40.0
    passage: float = 3.0
    yellow: float = 3.0
    red_clear: float = 2.0

    @classmethod
    def from_payload(cls, data: Any, base: Timing | None = None) -> Timing:
        """Read a ``timing`` object; keys left out keep the values of ``base``.

        Raises:
            PayloadError: A value is not a number, out of range, or ``max_green < min_green``.
        """
        base = base or cls()
        if data is None:
            return base
        if not isinstance(data, dict):
            raise PayloadError("timing: expected an object")
        values = {key: number(data, key, default=getattr(base, key), lo=0.0, hi=3600.0)
                  for key in _TIMING_KEYS}
        timing = replace(base, **values)
        if timing.min_green <= 0 or timing.yellow <= 0:
            raise PayloadError("timing: min_green and yellow must be > 0")
        if timing.max_green < timing.min_green:
            raise PayloadError("timing: max_green must be >= min_green")
        return timing


@dataclass(frozen=True)
class PhaseSpec:
    """One phase: the links it turns green, the detectors that call it, its recall, timing."""

    id: str
    green: tuple[tuple[int, str], ...]
    detectors: tuple[int, ...]
    recall: str
    timing: Timing


@dataclass(frozen=True)
class NemaConfig:
    """A junction's controller configuration (the signal ``config`` payload).

    Attributes:
        junction: The junction id.
        links: Number of links (letters in ``heads``).
        detectors: Detector names; ``calls`` in an input has one entry per detector.
        conflicts: Per link, the links that must never be green with it (made symmetric).
        groups: Barrier groups; each holds, per ring, the ordered phase ids of that ring.
        phases: Phase id -> spec.
    """

    junction: str
    links: int
    detectors: tuple[str, ...]
    conflicts: tuple[frozenset[int], ...]
    groups: tuple[tuple[tuple[str, ...], ...], ...]
    phases: Mapping[str, PhaseSpec]

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> NemaConfig:
        """Read and check a signal ``config`` payload.

        Raises:
            PayloadError: Anything inconsistent, with the offending key in the reason.
        """
        links = integer(data, "links", lo=1, hi=512)
        detectors = data.get("detectors", [])
        if not isinstance(detectors, list) or not all(isinstance(d, str) for d in detectors):
            raise PayloadError("detectors: expected a list of names")
        conflicts = _read_conflicts(data.get("conflicts"), links)
        timing = Timing.from_payload(data.get("timing"))
        raw_phases = data.get("phases")
        if not isinstance(raw_phases, dict) or not raw_phases:
            raise PayloadError("phases: expected a non-empty object")
        phases = {str(pid): _read_phase(str(pid), spec, links, len(detectors), timing)
                  for pid, spec in raw_phases.items()}
        groups = _read_barriers(data.get("barriers"), phases)
        return cls(junction=text(data, "junction", default=""), links=links,
                   detectors=tuple(detectors), conflicts=conflicts, groups=groups,
                   phases=phases)

    def locate(self, phase: str) -> tuple[int, int, int]:
        """Where a phase sits: ``(group, ring, index in that ring's list)``."""
        for g, rings in enumerate(self.groups):
            for r, ring in enumerate(rings):
                if phase in ring:
                    return g, r, ring.index(phase)
        raise KeyError(phase)

    def unsafe_pairs(self) -> list[tuple[str, str]]:
        """Pairs of phases that time together (same group, other ring) yet have conflicting
        links: with them, the conflict monitor will force all red."""
        pairs = []
        for rings in self.groups:
            for r1, ring1 in enumerate(rings):
                for ring2 in rings[r1 + 1:]:
                    for a in ring1:
                        for b in ring2:
                            la = {i for i, _ in self.phases[a].green}
                            lb = {i for i, _ in self.phases[b].green}
                            if any(self.conflicts[i] & lb for i in la):
                                pairs.append((a, b))
        return pairs


def _read_conflicts(raw: Any, links: int) -> tuple[frozenset[int], ...]:
    if raw is None:
        raw = [[] for _ in range(links)]
    if not isinstance(raw, list) or len(raw) != links:
        raise PayloadError(f"conflicts: expected one list per link ({links})")
    sets: list[set[int]] = [set() for _ in range(links)]
    for i, row in enumerate(raw):
        if not isinstance(row, list):
            raise PayloadError(f"conflicts[{i}]: expected a list of link indices")
        for j in row:
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < links:
                raise PayloadError(f"conflicts[{i}]: {j!r} is not a link index")
            if j != i:
                sets[i].add(j)
                sets[j].add(i)
    return tuple(frozenset(s) for s in sets)


def _read_phase(pid: str, spec: Any, links: int, n_detectors: int, timing: Timing) -> PhaseSpec:
    if not isinstance(spec, dict):
        raise PayloadError(f"phases.{pid}: expected an object")
    green = spec.get("green", {})
    if not isinstance(green, dict):
        raise PayloadError(f"phases.{pid}.green: expected link -> 'G' or 'g'")
    pairs = []
    for key, letter in green.items():
        try:
            link = int(key)
        except ValueError:
            raise PayloadError(f"phases.{pid}.green: {key!r} is not a link index") from None
        if not 0 <= link < links or letter not in ("G", "g"):
            raise PayloadError(f"phases.{pid}.green: {key!r}: {letter!r} is not a link "
                               f"index 0-{links - 1} with letter G or g")
        pairs.append((link, letter))
    detectors = spec.get("detectors", [])
    if not isinstance(detectors, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < n_detectors
            for d in detectors):
        raise PayloadError(f"phases.{pid}.detectors: expected indices into detectors "
                           f"(0-{n_detectors - 1})")
    return PhaseSpec(id=pid, green=tuple(sorted(pairs)), detectors=tuple(detectors),
                     recall=choice(spec, "recall", ("none", "min", "max"), default="none"),
                     timing=Timing.from_payload(spec.get("timing"), timing))


def _read_barriers(raw: Any, phases: Mapping[str, PhaseSpec]
                   ) -> tuple[tuple[tuple[str, ...], ...], ...]:
    if not isinstance(raw, list) or not raw:
        raise PayloadError("barriers: expected a non-empty list of {\"rings\": [...]}")
    groups = []
    seen: set[str] = set()
    for g, group in enumerate(raw):
        rings = group.get("rings") if isinstance(group, dict) else None
        if not isinstance(rings, list) or not rings or not all(isinstance(r, list)
                                                               for r in rings):
            raise PayloadError(f"barriers[{g}].rings: expected a list of phase lists")
        if len(rings) != len(raw[0]["rings"]):
            raise PayloadError(f"barriers[{g}]: every group needs the same number of rings")
        ids = tuple(tuple(str(p) for p in ring) for ring in rings)
        for pid in (p for ring in ids for p in ring):
            if pid not in phases:
                raise PayloadError(f"barriers[{g}]: phase {pid} is not in phases")
            if pid in seen:
                raise PayloadError(f"barriers: phase {pid} appears twice")
            seen.add(pid)
        if not any(ids):
            raise PayloadError(f"barriers[{g}]: a group needs at least one phase")
        groups.append(ids)
    if missing := sorted(set(phases) - seen):
        raise PayloadError(f"barriers: phases {', '.join(missing)} are in no ring")
    return tuple(groups)
