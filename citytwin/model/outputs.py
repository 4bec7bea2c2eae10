"""The run folder: a manifest, the KPIs and three Parquet tables of a finished run.

::

    manifest.json      what ran: scenario, its file's SHA-256, seed, durations, versions, times
    kpis.json          City.kpis(), keys sorted, floats to 6 significant digits, NaN as null
    trips.parquet      City.trips_table(): one row per finished trip
    summary.parquet    City.summary_table(): network state per summary interval
    junctions.parquet  City.junctions_table(): per junction and interval

The same scenario and seed give byte-identical Parquet files and the same ``kpis.json`` except
the wall-time keys (:data:`WALL_KPIS`): tables are written with fixed options and no
time-dependent metadata. Only ``manifest.json`` records when and where a run happened.
``docs/scenarios.md`` documents every column and key.
"""

from __future__ import annotations

import json
import math
import platform
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from citytwin.model.city import City

#: KPI keys that measure the machine, not the city; they differ between identical runs.
WALL_KPIS = ("step_wall_seconds", "updates_per_second")

#: Distributions whose versions are recorded in the manifest.
PACKAGES = ("citytwin", "mesa", "numba", "numpy", "pyarrow", "scipy")

#: Options of every Parquet file (fixed, so the same table gives the same bytes).
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3,
                                   "version": "2.6", "use_dictionary": True,
                                   "write_statistics": True, "data_page_version": "1.0"}

_SIGNIFICANT = 6


def write_run(city: City, out_dir: str | Path, *, scenario_name: str,
              scenario_path: str | Path | None = None, scenario_sha256: str | None = None,
              seed: int, started: datetime | None = None,
              extra: Mapping[str, Any] | None = None,
              kpis: Mapping[str, Any] | None = None,
              tables: Mapping[str, pa.Table] | None = None) -> Path:
    """Write a run's outputs into ``out_dir`` (created if needed; files are replaced).

    Args:
        city: The city after its run.
        out_dir: The run folder.
        scenario_name: Name of the scenario that ran.
        scenario_path: Its source file, if any.
        scenario_sha256: Hex SHA-256 of that file's bytes, if any.
        seed: The seed of the run.
        started: When the run started (UTC); defaults to now.
        extra: More JSON-serialisable facts for the manifest (under ``"extra"``).
        kpis: What to write as ``kpis.json`` (default ``city.kpis()``; a HIL run adds its
            ``hil`` figures).
        tables: More tables, written as ``<name>.parquet`` (e.g. ``emergency``).

    Returns:
        The run folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(city.trips_table(), out / "trips.parquet")
    write_parquet(city.summary_table(), out / "summary.parquet")
    write_parquet(city.junctions_table(), out / "junctions.parquet")
    _write_json(out / "kpis.json", kpis_json(city.kpis() if kpis is None else kpis))
    for name, table in (tables or {}).items():
        write_parquet(table, out / f"{name}.parquet")
    finished = datetime.now(UTC)
    manifest = {
        "run_id": uuid.uuid4().hex,
        "scenario": scenario_name,
        "scenario_file": str(scenario_path) if scenario_path is not None else None,
        "scenario_sha256": scenario_sha256,
        "seed": seed,
        "duration_s": _clean(city.sim_time),
        "dt_s": city.config.dt,
        "started": _iso(started or finished),
        "finished": _iso(finished),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "files": ["manifest.json", "kpis.json", "trips.parquet", "summary.parquet",
                  "junctions.parquet", *(f"{name}.parquet" for name in tables or {})],
    }
    if extra:
        manifest["extra"] = dict(extra)
    _write_json(out / "manifest.json", manifest)
    return out


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write a table with :data:`PARQUET_OPTIONS` (same table, same bytes)."""
    pq.write_table(table, str(path), **PARQUET_OPTIONS)


def kpis_json(kpis: Mapping[str, Any]) -> dict[str, Any]:
    """KPIs as written to ``kpis.json``: keys sorted (also of nested tables), floats rounded
    to 6 significant digits, NaN and infinities as ``None``."""
    return {k: _clean(kpis[k]) for k in sorted(kpis)}


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return kpis_json(value)
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
        if isinstance(value, int):
            return value
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{_SIGNIFICANT}g}")


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    path.write_text(text, encoding="utf-8")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None
