"""The run folder: same run, same bytes; KPIs rounded, NaN as null; a complete manifest."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from citytwin.model.outputs import WALL_KPIS, kpis_json, write_parquet, write_run
from tests.conftest import make_city

FILES = ("manifest.json", "kpis.json", "trips.parquet", "summary.parquet", "junctions.parquet")


def _run(net, seed: int):
    city = make_city(net, vehs_per_hour=1500.0, end=120.0, seed=seed)
    city.run_for(180)
    return city


def test_same_seed_same_bytes(small_grid, tmp_path):
    a = write_run(_run(small_grid, 1), tmp_path / "a", scenario_name="t", seed=1)
    b = write_run(_run(small_grid, 1), tmp_path / "b", scenario_name="t", seed=1)
    for name in ("trips.parquet", "summary.parquet", "junctions.parquet"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ka, kb = (json.loads((d / "kpis.json").read_text()) for d in (a, b))
    for key in WALL_KPIS:
        assert key in ka
        ka.pop(key), kb.pop(key)
    assert ka == kb
    c = write_run(_run(small_grid, 2), tmp_path / "c", scenario_name="t", seed=2)
    assert (a / "trips.parquet").read_bytes() != (c / "trips.parquet").read_bytes()


def test_tables_round_trip_without_varying_metadata(small_grid, tmp_path):
    city = _run(small_grid, 1)
    out = write_run(city, tmp_path, scenario_name="t", seed=1)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    trips = pq.read_table(out / "trips.parquet")
    assert trips.equals(city.trips_table())
    assert trips.num_rows == city.kpis()["vehicles_arrived"] > 0
    meta = pq.ParquetFile(out / "trips.parquet").metadata
    assert set(meta.metadata) == {b"ARROW:schema"}  # no pandas block, no timestamps
    assert meta.created_by.startswith("parquet-cpp-arrow")
    assert pq.read_table(out / "summary.parquet").num_rows == 3  # 180 s / 60 s
    assert pq.read_table(out / "junctions.parquet").num_rows == 3 * 9


def test_write_parquet_is_a_pure_function_of_the_table(tmp_path):
    table = pa.table({"x": [1.5, float("nan")], "s": ["a", "b"]})
    write_parquet(table, tmp_path / "1.parquet")
    write_parquet(table, tmp_path / "2.parquet")
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_kpis_json_sorted_rounded_nan_as_null():
    out = kpis_json({"b": 1.0 / 3.0, "a": 7, "c": float("nan"), "d": 123456789.0,
                     "e": math.inf})
    assert list(out) == ["a", "b", "c", "d", "e"]
    assert out == {"a": 7, "b": 0.333333, "c": None, "d": 123457000.0, "e": None}
    assert isinstance(out["a"], int)


def test_kpis_file_and_manifest(small_grid, tmp_path):
    city = _run(small_grid, 5)
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    out = write_run(city, tmp_path, scenario_name="small", scenario_path="x/small.toml",
                    scenario_sha256="ab" * 32, seed=5, started=started, extra={"note": "hi"})
    text = (out / "kpis.json").read_text()
    assert text.endswith("}\n") and "NaN" not in text and text.startswith('{\n  "')
    kpis = json.loads(text)
    assert list(kpis) == sorted(kpis) == sorted(city.kpis())
    m = json.loads((out / "manifest.json").read_text())
    assert m["scenario"] == "small" and m["scenario_file"] == "x/small.toml"
    assert m["scenario_sha256"] == "ab" * 32 and m["seed"] == 5
    assert m["duration_s"] == 180.0
    assert re.fullmatch(r"[0-9a-f]{32}", m["run_id"])
    assert m["started"] == "2026-01-02T03:04:05Z"
    assert m["finished"].endswith("Z") and m["finished"] > m["started"]
    assert set(m["packages"]) >= {"citytwin", "mesa", "numba", "numpy", "pyarrow"}
    assert all(m["packages"][p] for p in ("citytwin", "mesa", "numba", "numpy", "pyarrow"))
    assert m["python"].count(".") == 2 and m["platform"]
    assert m["extra"] == {"note": "hi"}
    other = write_run(city, tmp_path / "again", scenario_name="small", seed=5)
    assert json.loads((other / "manifest.json").read_text())["run_id"] != m["run_id"]
