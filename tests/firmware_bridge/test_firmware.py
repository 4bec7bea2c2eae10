"""The reference firmware itself (``firmware/``): it stays MicroPython code by structure, and
its boards behave (the signal controller's timing and safety, the meter's register and
commands). Board logic is driven directly, with sim times as numbers."""

from __future__ import annotations

import ast
import itertools
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from citytwin.firmware_bridge.emulator import firmware_dir

#: Modules a MicroPython build has (``u``-prefixed aliases included), and the firmware's own.
MICROPYTHON = {"json", "struct", "ustruct", "math", "select", "uselect", "time", "utime",
               "array", "sys", "machine"}
CPYTHON_ONLY = {"ctfw_port.py": {"os", "tty", "select", "contextlib"},
                "main.py": {"argparse"}}


def sources() -> list[Path]:
    return sorted(firmware_dir().glob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.name)
def test_firmware_is_micropython_code_by_structure(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    allowed = MICROPYTHON | CPYTHON_ONLY.get(path.name, set())
    own = {p.stem for p in sources()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                else [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root in allowed or root in own, f"{path.name}: imports {name}"
        assert not isinstance(node, ast.AnnAssign), f"{path.name}:{node.lineno}: annotation"
        if isinstance(node, ast.FunctionDef):
            args = node.args.args + node.args.kwonlyargs
            assert node.returns is None and all(a.annotation is None for a in args), \
                f"{path.name}:{node.lineno}: annotations"
            assert not node.decorator_list or all(
                isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod",
                                                     "property")
                for d in node.decorator_list), f"{path.name}:{node.lineno}: decorator"
        if isinstance(node, ast.JoinedStr):  # f"{x=}" is CPython only
            parts = node.values
            assert not any(isinstance(a, ast.Constant) and str(a.value).endswith("=")
                           and isinstance(b, ast.FormattedValue)
                           for a, b in itertools.pairwise(parts)), \
                f"{path.name}:{node.lineno}: f-string with ="
        assert not isinstance(node, ast.NamedExpr | ast.Match), f"{path.name}: {node}"


# -- the signal controller --------------------------------------------------------------------
def controller(firmware: dict[str, ModuleType], config: dict[str, Any]) -> Any:
    sig = firmware["ctfw_signal"]
    return sig.Controller(sig.Plan(config))


def test_controller_starts_red_then_times_its_stages(firmware: dict[str, ModuleType],
                                                     eight_phase: dict[str, Any]) -> None:
    ctl = controller(firmware, eight_phase)
    shown = [ctl.step(float(t), [True] * 8) for t in range(60)]
    assert shown[:5] == ["r" * 8] * 5  # yellow + red_clear of all red at the start
    green = [t for t, h in enumerate(shown) if h[0] == "G"]  # phase 1 (link 0) first
    assert green and green[0] == 5
    # demand everywhere: phase 1 holds to max green (40 s), yellow 3 s, all red 2 s
    run = [t for t in green if t < 60]
    assert len(run) == 40 and shown[45] == "y" + shown[45][1:] and shown[45][0] == "y"
    assert all(h[0] == "y" for h in shown[45:48]) and shown[48][0] == "r"


def test_controller_gaps_out_and_rests_without_demand(firmware: dict[str, ModuleType],
                                                      eight_phase: dict[str, Any]) -> None:
    ctl = controller(firmware, eight_phase)
    # phase 1 (stage 1 with phase 5: detectors 0 and 4) is called at first; at t=20 every
    # phase of the other stages calls
    heads = [ctl.step(float(t), [t < 2] + [t == 20] * 3 + [False] + [t == 20] * 3)
             for t in range(40)]
    assert heads[10][0] == "G" and heads[19][0] == "G"  # resting in green: nobody else calls
    gapped = next(t for t in range(20, 40) if heads[t][0] == "y")
    assert gapped == 20  # min green long over, no actuation for 3 s: ends at the call
    assert ctl.max_outs == 0 and ctl.gap_outs >= 1  # the next stages gap out too


@pytest.mark.parametrize("seed", range(3))
def test_controller_never_shows_conflicting_links(firmware: dict[str, ModuleType],
                                                  eight_phase: dict[str, Any],
                                                  seed: int) -> None:
    rng = random.Random(seed)
    ctl = controller(firmware, eight_phase)
    conflicts = eight_phase["conflicts"]
    greens_for: dict[int, float] = {}
    for t in range(600):
        heads = ctl.step(float(t), [rng.random() < 0.3 for _ in range(8)])
        lit = [i for i, c in enumerate(heads) if c != "r"]
        assert not any(j in conflicts[i] for i in lit for j in lit), (t, heads)
        for i, c in enumerate(heads):
            if c == "G":
                greens_for[i] = greens_for.get(i, 0) + 1
    assert len(greens_for) == 8  # every phase got served
    assert ctl.conflicts_prevented == 0


def test_bad_config_is_counted_and_the_board_keeps_its_plan(firmware: dict[str, ModuleType],
                                                            eight_phase: dict[str, Any]
                                                            ) -> None:
    import json

    board = firmware["ctfw_signal"].SignalBoard("c1")
    board.on_config(json.dumps(eight_phase).encode())
    plan = board.controller.plan
    for bad in (b"{", b'{"links": 0}', json.dumps({**eight_phase, "conflicts": [[99]]}).encode(),
                json.dumps({**eight_phase, "phases": {"1": {"green": {"77": "G"}}}}).encode()):
        board.on_config(bad)
    assert board.counters == {"configs": 1, "bad_config": 4}
    assert board.controller.plan is plan


# -- the meter ----------------------------------------------------------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[int, dict[str, Any]]] = []

    def send_message(self, channel: int, data: dict[str, Any], reliable: bool = False) -> None:
        self.sent.append((channel, data))


def meter(firmware: dict[str, ModuleType], **kw: Any) -> tuple[Any, _Recorder]:
    board = firmware["ctfw_meter"].MeterBoard("meter-hall", **kw)
    board.link = rec = _Recorder()
    return board, rec


def test_meter_integrates_power_and_reports_every_period(firmware: dict[str, ModuleType]
                                                          ) -> None:
    board, rec = meter(firmware, period=5.0)
    for t in range(0, 21):
        board.on_clock(t, float(t), 1.0, "fast")
    ticks = [d["tick"] for _, d in rec.sent]
    assert ticks == [0, 5, 10, 15, 20]
    energy = [d["energy_wh"] for _, d in rec.sent]
    assert energy[0] == 0.0 and energy == sorted(energy)
    exact = sum(board.profile.power(t + 0.5) for t in range(20)) / 3600
    assert energy[-1] == pytest.approx(exact, rel=1e-4)
    assert all(2000 <= d["power_w"] <= 8000 for _, d in rec.sent)


def test_meter_commands_curtail_relay_refusals_and_repeats(firmware: dict[str, ModuleType]
                                                            ) -> None:
    board, rec = meter(firmware, lockstep=True)
    board.on_clock(0, 0.0, 1.0, "lockstep")
    base = board.power_at(0.0)
    board.on_cmd({"id": "c1", "name": "curtail", "args": {"limit_w": 1000.0}, "t": 0.0})
    board.on_cmd({"id": "c2", "name": "relay", "args": {"state": "ajar"}, "t": 0.0})
    board.on_cmd({"id": "c3", "name": "explode", "args": {}, "t": 0.0})
    board.on_cmd({"id": "c4", "name": "relay", "args": {"state": "open"}, "t": 5.0,
                  "valid_until": 2.0})
    board.on_cmd({"id": "c1", "name": "curtail", "args": {"limit_w": 1000.0}, "t": 0.0})
    acks = [(d["cmd_id"], d["status"], d.get("reason", "")) for _, d in rec.sent
            if "cmd_id" in d]
    assert acks == [("c1", "accepted", ""), ("c1", "done", ""),
                    ("c2", "rejected", "bad_args: state: open or closed"),
                    ("c3", "rejected", "unknown_command"), ("c4", "rejected", "expired"),
                    ("c1", "done", "")]  # a repeat gets the status it already had
    assert board.power_at(1.0) == min(1000.0, board.profile.power(1.0)) < base
    assert board.relay == "closed" and board.counters["duplicate_commands"] == 1
