"""Compare signal policies on one scenario over many seeds: ``citytwin compare``.

Every policy runs on the same demand and seeds (common random numbers: seed ``s`` draws the
same trips whatever the policy), each run in a worker of a process pool; results are ordered
by policy and seed, so the output does not depend on which worker finished first.

Per policy and metric, ``comparison.json`` holds the per-seed values, their mean with a 95 %
confidence interval across seeds (Student's t), and the relative change against the first
policy: the mean of the paired per-seed relative differences ``x_p,s / x_first,s - 1`` with
its own t interval (null when the first policy's value is 0 or missing for some seed). A
scenario with emergency vehicles also runs, per policy and seed, the same run without
pre-emption (for the cross-traffic delay; see :mod:`citytwin.model.emergency`).

Policies are written ``name[:key=value[:key=value...]]``: ``max-pressure:min_green=8``. A key
sets the policy's own table (``[signals.max_pressure]``) when that table has it, else the
``[signals]`` table for ``yellow``, ``all_red``, ``min_green`` and ``detection_range``; a dotted
key names any table (``fixed:preemption.enabled=false``). Values are TOML values.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from citytwin.errors import ScenarioError
from citytwin.model.signal_policy import POLICIES

#: The metrics of a comparison: key, unit, whether higher is better.
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("mean_intersection_wait_s", "s", False),
    ("mean_time_loss_s", "s", False),
    ("mean_duration_s", "s", False),
    ("throughput_vph", "veh/h", True),
    ("mean_queue", "veh", False),
    ("mean_stops", "stops/trip", False),
    ("emergency_red_signals", "signals/trip", False),
    ("emergency_delay_s", "s", False),
)
_TOP_KEYS = ("yellow", "all_red", "min_green", "detection_range")
_COMPARABLE = tuple(p for p in POLICIES if p not in ("program", "external"))


@dataclass(frozen=True)
class PolicyRun:
    """A policy to compare: its label (as written) and its ``[signals]`` overrides."""

    label: str
    table: dict[str, Any]


def parse_policies(text: str) -> list[PolicyRun]:
    """Parse ``--policies``.

    Raises:
        ScenarioError: unknown policy, malformed parameter, repeated policy.
    """
    out: list[PolicyRun] = []
    for item in [x.strip() for x in text.split(",")]:
        if not item:
            raise ScenarioError(f"--policies {text!r}: empty policy name")
        name, *params = item.split(":")
        if name not in POLICIES:
            raise ScenarioError(f"--policies: unknown policy {name!r}; use "
                                f"{', '.join(_COMPARABLE)} (and 'program' for the network's "
                                "own programs)")
        if name == "external":
            raise ScenarioError("--policies: 'external' needs devices over the HIL bridge; "
                                "run the scenario with its [hil] table (citytwin run)")
        table: dict[str, Any] = {"policy": name}
        own = name.replace("-", "_")
        for p in params:
            key, eq, raw = p.partition("=")
            if not eq or not key:
                raise ScenarioError(f"--policies {item!r}: parameter {p!r} is not key=value")
            value = _value(raw)
            own_keys = _own_keys(own)
            if "." in key:
                path = key.split(".")
            elif key in own_keys or key not in _TOP_KEYS:
                path = [own, key]
            else:
                path = [key]
            if name == "program" and len(path) == 2 and path[0] == own:
                raise ScenarioError(f"--policies {item!r}: 'program' takes no parameter "
                                    f"{key!r}")
            node = table
            for part in path[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ScenarioError(f"--policies {item!r}: {key!r} is not a table")
            node[path[-1]] = value
        if any(r.label == item for r in out):
            raise ScenarioError(f"--policies: {item!r} given twice")
        out.append(PolicyRun(item, table))
    return out


def _own_keys(table: str) -> set[str]:
    """Keys of the ``[signals.<table>]`` table (none for ``program``)."""
    from citytwin.scenarios._signals_spec import SignalsSpec

    field = SignalsSpec.model_fields.get(table)
    if field is None or not isinstance(field.annotation, type):
        return set()
    return set(field.annotation.model_fields)


def _value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _run_one(task: tuple[str, str, dict[str, Any], int, float | None]) -> dict[str, Any]:
    """One (policy, seed) run in a worker: its metrics, junction waits and time series."""
    from citytwin.scenarios.loader import load_scenario

    path, label, table, seed, duration = task
    scenario = load_scenario(path).with_signals(table, f"--policies {label}")
    city = scenario.build_city(seed)
    scenario.run(city, duration=duration)
    k = city.kpis()
    tr = city.fleet.trips
    warm = city.config.warmup
    done = (tr.state == 2) & (tr.t_insert >= warm - 1e-9)

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else math.nan

    res: dict[str, Any] = {
        "mean_intersection_wait_s": k.get("mean_intersection_wait_s", math.nan),
        "mean_time_loss_s": mean(tr.time_loss[done]),
        "mean_duration_s": mean(tr.arrival[done] - tr.t_insert[done]),
        "throughput_vph": k.get("throughput_vph", math.nan),
        "mean_queue": k.get("mean_queue", math.nan),
        "mean_stops": mean(tr.stops[done].astype(np.float64)),
        "emergency_red_signals": math.nan, "emergency_delay_s": math.nan,
    }
    extra: dict[str, Any] = {"teleports": k["teleports"],
                             "vehicles_arrived": k["vehicles_arrived"],
                             "vehicles_demand": k["vehicles_demand"]}
    em = scenario.emergency_outputs(city, seed, duration).get("emergency")
    if em is not None and em.num_rows:
        d = em.to_pydict()
        res["emergency_red_signals"] = float(np.mean(d["red_signals"]))
        res["emergency_delay_s"] = float(np.mean(d["delay_s"]))
        extra["emergency_trips"] = em.num_rows
        extra["emergency_zero_red_share"] = float(np.mean(np.array(d["red_signals"]) == 0))
        extra["emergency_delay_ratio"] = float(np.mean(d["delay_ratio"]))
        extra["emergency_delay_ratio_max"] = float(np.max(d["delay_ratio"]))
        cross = [x for x in d["cross_delay_s"] if x is not None]
        extra["emergency_cross_delay_s"] = float(np.mean(cross)) if cross else math.nan
    j = city.junctions_table().to_pydict()
    wait: dict[str, list[float]] = {}
    sig = {city.network.junction_ids[r] for r in city.metrics.signal_rows.tolist()}
    for jid, begin, veh, w in zip(j["junction"], j["begin"], j["vehicles"], j["mean_wait_s"],
                                  strict=True):
        if jid in sig and begin >= warm - 1e-9 and w is not None:
            acc = wait.setdefault(jid, [0.0, 0.0])
            acc[0] += w * veh
            acc[1] += veh
    s = city.summary_table().to_pydict()
    return {"label": label, "seed": seed, "metrics": res, "extra": extra,
            "junction_wait": {jid: a[0] / a[1] for jid, a in sorted(wait.items()) if a[1]},
            "series": {"end": s["end"], "halting": s["halting"], "arrived": s["arrived"]}}


def run_comparison(scenario_path: str, policies: Sequence[PolicyRun], seeds: Sequence[int],
                   *, duration: float | None = None, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run every policy on every seed; return the comparison (``comparison.json``) and the
    raw runs (under ``"runs"``, for the report)."""
    tasks = [(scenario_path, p.label, p.table, s, duration) for p in policies for s in seeds]
    results: list[dict[str, Any]] = []
    if workers <= 1:
        for t in tasks:
            results.append(_run_one(t))
            if progress:
                progress(len(results), len(tasks))
    else:
        # spawn: a fresh interpreter per worker (forking a process with threads can deadlock)
        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            for r in pool.map(_run_one, tasks):
                results.append(r)
                if progress:
                    progress(len(results), len(tasks))
    by = {(r["label"], r["seed"]): r for r in results}
    base = policies[0].label
    out: dict[str, Any] = {}
    for p in policies:
        rows = [by[p.label, s] for s in seeds]
        entry: dict[str, Any] = {}
        for key, unit, higher in METRICS:
            vals = np.array([r["metrics"][key] for r in rows], np.float64)
            ref = np.array([by[base, s]["metrics"][key] for s in seeds], np.float64)
            m = {"unit": unit, "higher_is_better": higher, **interval(vals),
                 "per_seed": vals.tolist()}
            if p.label != base:
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = vals / ref - 1.0
                # undefined where the first policy's value is 0 or missing for a seed
                m["change_vs_first"] = (interval(rel) if np.isfinite(rel).all() else
                                        {"mean": None, "ci95": None, "n": 0})
            entry[key] = m
        extras = sorted({x for r in rows for x in r["extra"]})
        entry["other"] = {}
        for x in extras:
            vals = np.array([r["extra"].get(x, math.nan) for r in rows], np.float64)
            entry["other"][x] = {**interval(vals), "per_seed": vals.tolist()}
        out[p.label] = entry
    return {"seeds": list(seeds), "policies": [p.label for p in policies],
            "first_policy": base, "results": out, "runs": results}


def interval(values: np.ndarray) -> dict[str, Any]:
    """Mean and two-sided 95 % Student-t interval of finite ``values`` (n >= 2)."""
    from scipy import stats

    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "ci95": None, "n": int(v.size)}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": int(v.size)}


def write_comparison(result: dict[str, Any], out_dir: Path, scenario_name: str,
                     scenario_sha256: str) -> Path:
    """Write ``comparison.json`` (same inputs, same bytes) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "scenario": scenario_name,
        "scenario_sha256": scenario_sha256,
        "seeds": result["seeds"],
        "policies": result["policies"],
        "first_policy": result["first_policy"],
        "confidence": 0.95,
        "interval": "Student t across seeds",
        "change_vs_first": "mean of paired per-seed relative differences x/x_first - 1, "
                           "with its Student t interval",
        "results": {p: _clean(v) for p, v in result["results"].items()},
    }
    path = out_dir / "comparison.json"
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _clean(value: Any) -> Any:
    from citytwin.model.outputs import _clean as clean_number

    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    return clean_number(value)
