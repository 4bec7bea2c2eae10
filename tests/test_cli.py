"""The command line, in-process and as a real subprocess: run folders, exit codes, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import citytwin
from citytwin.cli import main
from citytwin.errors import SimulationError
from citytwin.scenarios import Scenario
from tests.conftest import TINY_SCENARIO

FILES = ("manifest.json", "kpis.json", "trips.parquet", "summary.parquet", "junctions.parquet")
TRIP_COLUMNS = ["id", "vtype", "depart", "arrival", "duration", "route_length", "waiting_time",
                "time_loss", "depart_delay", "stops"]
SUMMARY_COLUMNS = ["begin", "end", "running", "waiting_to_depart", "inserted", "arrived",
                   "mean_speed", "halting", "teleports"]
JUNCTION_COLUMNS = ["junction", "begin", "end", "vehicles", "mean_wait_s", "queue_mean",
                    "queue_max"]
REQUIRED_KPIS = {"vehicles_inserted", "vehicles_arrived", "vehicles_running_end", "teleports",
                 "mean_duration_s", "mean_time_loss_s", "mean_waiting_time_s",
                 "vehicle_updates", "step_wall_seconds", "updates_per_second"}
WALL = ("step_wall_seconds", "updates_per_second")
ROOT = Path(__file__).resolve().parents[1]


def _run(scenario: Path, out: Path, *extra: str) -> int:
    return main(["run", str(scenario), "--out", str(out), "--duration", "90", *extra])


def _kpis(out: Path) -> dict:
    return json.loads((out / "kpis.json").read_text())


def test_run_writes_the_run_folder(tiny_scenario, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(tiny_scenario, out) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bar when stderr is not a terminal
    assert f"outputs written to {out}" in captured.out
    for label in ("inserted", "arrived", "running at end", "teleports", "mean duration",
                  "mean time loss", "mean waiting", "updates/s", "wall time"):
        assert label in captured.out
    for name in FILES:
        assert (out / name).is_file(), name
    assert pq.read_table(out / "trips.parquet").column_names == TRIP_COLUMNS
    assert pq.read_table(out / "summary.parquet").column_names == SUMMARY_COLUMNS
    assert pq.read_table(out / "junctions.parquet").column_names == JUNCTION_COLUMNS
    k = _kpis(out)
    assert set(k) >= REQUIRED_KPIS
    assert k["vehicles_inserted"] == (k["vehicles_arrived"] + k["vehicles_running_end"]
                                      + k["vehicles_teleported_out"])
    assert k["vehicles_arrived"] > 0 and k["sim_seconds"] == 90
    assert pq.read_table(out / "trips.parquet").num_rows == k["vehicles_arrived"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["scenario"] == "tiny" and m["seed"] == 3 and m["duration_s"] == 90
    assert Path(m["scenario_file"]) == tiny_scenario.resolve()


def test_same_seed_same_bytes_other_seed_other_trips(tiny_scenario, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _run(tiny_scenario, a, "--seed", "11", "--quiet") == 0
    assert _run(tiny_scenario, b, "--seed", "11", "--quiet") == 0
    assert _run(tiny_scenario, c, "--seed", "12", "--quiet") == 0
    assert (a / "trips.parquet").read_bytes() == (b / "trips.parquet").read_bytes()
    ka, kb = _kpis(a), _kpis(b)
    assert {k: v for k, v in ka.items() if k not in WALL} == \
        {k: v for k, v in kb.items() if k not in WALL}
    assert (a / "trips.parquet").read_bytes() != (c / "trips.parquet").read_bytes()


def test_subprocess_run(tiny_scenario, tmp_path):
    out = tmp_path / "sub"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "citytwin", "run", str(tiny_scenario),
                           "--duration", "60", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # stderr is a pipe: no progress bar
    assert "outputs written to" in proc.stdout
    for name in FILES:
        assert (out / name).is_file(), name
    k = _kpis(out)
    assert set(k) >= REQUIRED_KPIS
    assert k["vehicles_inserted"] == (k["vehicles_arrived"] + k["vehicles_running_end"]
                                      + k["vehicles_teleported_out"])


def test_progress_bar_on_a_terminal(tiny_scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _run(tiny_scenario, tmp_path / "tty") == 0
    assert "sim s" in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _run(tiny_scenario, tmp_path / "quiet", "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.strip() == f"outputs written to {tmp_path}/quiet"


def test_default_run_folder(tiny_scenario, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny_scenario), "--duration", "10", "--quiet"]) == 0
    assert main(["run", str(tiny_scenario), "--duration", "10", "--quiet"]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("tiny-3-") for r in runs)
    assert all((r / "kpis.json").is_file() for r in runs)


def test_until_done_when_the_scenario_has_no_duration(write_toml, tmp_path):
    path = write_toml(TINY_SCENARIO.replace("duration = 120\n", ""))
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    k = _kpis(tmp_path / "r")
    assert k["vehicles_running_end"] == 0 and k["vehicles_arrived"] == k["vehicles_inserted"]


def test_broken_scenario_exits_2_naming_the_field(write_toml, tmp_path, capsys):
    path = write_toml(TINY_SCENARIO.replace("vehs_per_hour = 360", "vehs_per_hour = -360"))
    assert main(["run", str(path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: demand.flows[0].vehs_per_hour: must be > 0" in err
    assert "Traceback" not in err and "hint:" in err
    assert not (tmp_path / "x").exists()


def test_scenario_that_does_not_fit_its_network_exits_2(write_toml, capsys):
    path = write_toml(TINY_SCENARIO.replace('vtype = "car"', 'vtype = "truck"'))
    assert main(["run", str(path)]) == 2
    assert "demand.flows[0].vtype: unknown vehicle type 'truck'" in capsys.readouterr().err


def test_unknown_scenario_name_exits_2(capsys):
    assert main(["run", "atlantis"]) == 2
    assert "unknown scenario 'atlantis'" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["run"], ["run", "downtown", "--seed", "-1"],
                                  ["run", "downtown", "--duration", "0"], ["fly"], []])
def test_bad_arguments_exit_2(args, capsys):
    assert main(args) == 2
    assert "usage:" in capsys.readouterr().err


def test_failed_run_exits_1_with_one_line(tiny_scenario, tmp_path, capsys, monkeypatch):
    def fail(self, city, **kwargs):
        raise SimulationError("stepping failed at t=7 s: boom")

    monkeypatch.setattr(Scenario, "run", fail)
    monkeypatch.delenv("CITYTWIN_DEBUG", raising=False)
    assert _run(tiny_scenario, tmp_path / "f") == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "citytwin: error: stepping failed at t=7 s: boom"
    assert "Traceback" not in err
    assert _run(tiny_scenario, tmp_path / "f", "--debug") == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("CITYTWIN_DEBUG", "1")
    assert _run(tiny_scenario, tmp_path / "f") == 1
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_error_exits_1_and_says_it_is_a_bug(tiny_scenario, tmp_path, capsys,
                                                       monkeypatch):
    def fail(self, city, **kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr(Scenario, "run", fail)
    monkeypatch.delenv("CITYTWIN_DEBUG", raising=False)
    assert _run(tiny_scenario, tmp_path / "f") == 1
    err = capsys.readouterr().err
    assert "citytwin: error: RuntimeError: kaput" in err and "bug" in err
    assert "Traceback" not in err


def test_unwritable_run_folder_exits_1(tiny_scenario, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _run(tiny_scenario, blocker / "run") == 1
    assert "--out" in capsys.readouterr().err


def test_list_shows_builtin_scenarios(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("downtown ") and "rush hour" in line
               for line in out.splitlines())


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"citytwin {citytwin.__version__}"
