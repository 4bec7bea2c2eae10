"""The NEMA dual-ring controller against hand-checked timelines, and safety as a property.

The hand-checked runs use the standard eight-phase junction (``eight_phase_config``): the
letter at index ``p - 1`` is phase ``p``'s link, 1 s ticks, min green 5, passage 3, max 40,
yellow 3, red clearance 2 unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citytwin.hil.emulated.nema import NemaController
from citytwin.hil.emulated.nema_config import NemaConfig
from citytwin.hil.emulated.payload import PayloadError
from tests.hil.emulated.conftest import calls, eight_phase_config

NO_CALLS = calls()


def run(config: dict[str, Any], schedule: Callable[[int], Sequence[int]], ticks: int,
        dt: float = 1.0) -> tuple[list[str], NemaController]:
    """Step a fresh controller ``ticks`` times; ``schedule(k)`` gives the calls of tick k."""
    ctl = NemaController(NemaConfig.from_payload(config))
    return [ctl.step(k * dt, schedule(k)) for k in range(ticks)], ctl


def expect(heads: list[str], timeline: list[tuple[int, int, str]]) -> None:
    """Check ``heads[a:b]`` equals ``letters`` for each ``(a, b, letters)``."""
    for a, b, letters in timeline:
        for k in range(a, b):
            assert heads[k] == letters, f"tick {k}: {heads[k]} != {letters}\n{heads[:b]}"


def test_min_green_then_yellow_red_clear_then_the_other_barrier():
    heads, _ = run(eight_phase_config(), lambda k: calls(2, 6, 4) if k == 0 else NO_CALLS, 30)
    expect(heads, [(0, 5, "rGrrrGrr"), (5, 8, "ryrrryrr"), (8, 10, "rrrrrrrr"),
                   (10, 30, "rrrGrrrr")])


def test_phases_without_a_call_are_skipped():
    heads, ctl = run(eight_phase_config(), lambda k: calls(2, 6, 4) if k == 0 else NO_CALLS,
                     60)
    for letters in heads:
        for p in (1, 3, 5, 7, 8):  # never called, no recall
            assert letters[p - 1] == "r"
    assert ctl.calls == frozenset()


def test_gap_out_after_passage_and_simultaneous_gap_out_at_the_barrier():
    # phase 2 actuated every tick until 9: it gaps out 3 s after the last actuation (tick 12);
    # phase 6 gapped out at min green (tick 5) and rests in green until ring 1 is ready too
    heads, ctl = run(eight_phase_config(),
                     lambda k: calls(2, 6, 4) if k == 0 else calls(2) if k <= 9 else NO_CALLS,
                     20)
    expect(heads, [(0, 12, "rGrrrGrr"), (12, 15, "ryrrryrr"), (15, 17, "rrrrrrrr"),
                   (17, 20, "rrrGrrrr")])
    assert ctl.terminations == {"gap_out": 2}


def test_max_out_under_continuous_calls():
    heads, ctl = run(eight_phase_config(), lambda k: calls(2, 4) if k == 0 else calls(2), 50)
    expect(heads, [(0, 40, "rGrrrrrr"), (40, 43, "ryrrrrrr"), (43, 45, "rrrrrrrr"),
                   (45, 50, "rrrGrrrr")])
    assert ctl.terminations["max_out"] == 1


def test_max_timer_starts_with_the_first_conflicting_call():
    # continuous calls on 2; the conflicting call on 4 only comes at tick 20
    heads, _ = run(eight_phase_config(), lambda k: calls(2, 4) if k == 20 else calls(2), 70)
    expect(heads, [(0, 60, "rGrrrrrr"), (60, 63, "ryrrrrrr"), (63, 65, "rrrrrrrr"),
                   (65, 70, "rrrGrrrr")])


def test_yellow_and_red_clearance_last_exactly_their_durations():
    config = eight_phase_config(yellow=3.5, red_clear=1.0, min_green=2.0, passage=1.0)
    heads, _ = run(config, lambda k: calls(2, 4) if k == 0 else NO_CALLS, 40, dt=0.5)
    link2 = "".join(h[1] for h in heads)
    link4 = "".join(h[3] for h in heads)
    assert link2.startswith("G" * 4 + "y" * 7 + "r" * 2)  # 2 s, 3.5 s, 1 s at 0.5 s ticks
    assert link4.startswith("r" * 13 + "G")


def test_rings_time_independently_and_the_barrier_waits_for_both():
    heads, _ = run(eight_phase_config(), lambda k: calls(1, 2, 5, 4) if k == 0 else NO_CALLS,
                   25)
    expect(heads, [(0, 5, "GrrrGrrr"), (5, 8, "yrrrGrrr"), (8, 10, "rrrrGrrr"),
                   (10, 15, "rGrrGrrr"), (15, 18, "ryrryrrr"), (18, 20, "rrrrrrrr"),
                   (20, 25, "rrrGrrrr")])


def test_min_recall_serves_the_phase_for_min_green_every_cycle():
    heads, _ = run(eight_phase_config(recall={2: "min", 6: "min"}),
                   lambda k: calls(4) if k == 0 else NO_CALLS, 60)
    expect(heads, [(0, 5, "rGrrrGrr"), (5, 8, "ryrrryrr"), (8, 10, "rrrrrrrr"),
                   (10, 15, "rrrGrrrr"), (15, 18, "rrryrrrr"), (18, 20, "rrrrrrrr"),
                   (20, 60, "rGrrrGrr")])  # then rests: nothing else is called


def test_max_recall_holds_to_max_green():
    heads, _ = run(eight_phase_config(recall={2: "max"}),
                   lambda k: calls(4) if k == 0 else NO_CALLS, 60)
    expect(heads, [(0, 40, "rGrrrrrr"), (40, 43, "ryrrrrrr"), (43, 45, "rrrrrrrr"),
                   (45, 50, "rrrGrrrr"), (50, 53, "rrryrrrr"), (53, 55, "rrrrrrrr"),
                   (55, 60, "rGrrrrrr")])


def test_rests_in_green_without_calls():
    heads, _ = run(eight_phase_config(), lambda k: NO_CALLS, 100)
    assert set(heads) == {"GrrrGrrr"}  # start-up: first phase of each ring of group 0
    heads, _ = run(eight_phase_config(), lambda k: calls(4) if k == 0 else NO_CALLS, 100)
    assert set(heads) == {"rrrGrrrr"}  # straight into the called group, then rest


def test_calls_lock_until_served():
    # a single one-tick actuation on phase 3 while 2/6 time is served once, later
    heads, ctl = run(eight_phase_config(),
                     lambda k: calls(2, 6) if k == 0 else calls(3) if k == 2 else NO_CALLS, 30)
    assert "G" in "".join(h[2] for h in heads)
    assert ctl.calls == frozenset()


def test_a_link_green_in_two_rings_shows_the_stronger_letter():
    config = eight_phase_config()
    config["phases"]["2"]["green"] = {"1": "G", "7": "g"}
    config["phases"]["6"]["green"] = {"5": "G", "7": "G"}
    for row in config["conflicts"]:
        row[:] = [j for j in row if j != 7]
    config["conflicts"][7] = []
    heads, _ = run(config, lambda k: calls(2, 6, 4) if k == 0 else NO_CALLS, 6)
    assert heads[0] == "rGrrrGrG"
    assert heads[5] == "ryrrryry"


def test_conflicting_greens_are_never_shown():
    config = eight_phase_config()
    config["conflicts"][1].append(5)  # phases 2 and 6 time together, but now conflict
    parsed = NemaConfig.from_payload(config)
    assert parsed.unsafe_pairs() == [("2", "6")]
    heads, ctl = run(config, lambda k: calls(2, 6, 4) if k == 0 else NO_CALLS, 12)
    expect(heads, [(0, 8, "rrrrrrrr"), (10, 12, "rrrGrrrr")])  # 2/6 and their yellow: red
    assert ctl.conflicts_prevented == 8


def test_same_inputs_same_outputs():
    pattern = [calls(*(p for p in range(1, 9) if (k * 7 + p * 3) % 11 < 2)) for k in range(400)]
    first, _ = run(eight_phase_config(), lambda k: pattern[k], 400)
    again, _ = run(eight_phase_config(), lambda k: pattern[k], 400)
    assert first == again
    assert len(set(first)) > 5


def test_time_going_back_restarts_timing_without_jumps():
    ctl = NemaController(NemaConfig.from_payload(eight_phase_config()))
    ctl.step(100.0, calls(2, 4))
    assert ctl.step(50.0, NO_CALLS) == "rGrrrrrr"  # no time passed: still in min green


@pytest.mark.parametrize("change, words", [
    (lambda c: c.pop("phases"), "phases"),
    (lambda c: c["barriers"][0]["rings"][0].append(9), "phase 9"),
    (lambda c: c["barriers"][1]["rings"].pop(), "same number of rings"),
    (lambda c: c["barriers"][1]["rings"][0].append(1), "twice"),
    (lambda c: c["phases"].update({"9": {"green": {}}}), "in no ring"),
    (lambda c: c["phases"]["1"].update(green={"8": "G"}), "link"),
    (lambda c: c["phases"]["1"].update(green={"0": "y"}), "letter"),
    (lambda c: c["phases"]["1"].update(detectors=[8]), "detectors"),
    (lambda c: c["phases"]["1"].update(recall="always"), "recall"),
    (lambda c: c["conflicts"].pop(), "conflicts"),
    (lambda c: c["conflicts"][0].append(99), r"conflicts\[0\]: 99"),
    (lambda c: c["timing"].update(max_green=1.0), "max_green"),
    (lambda c: c["timing"].update(yellow=0), "yellow"),
    (lambda c: c.update(links=0), "links"),
])
def test_bad_configs_are_refused_with_the_reason(change, words):
    config = eight_phase_config()
    change(config)
    with pytest.raises(PayloadError, match=words):
        NemaConfig.from_payload(config)


def test_calls_must_match_the_detectors():
    ctl = NemaController(NemaConfig.from_payload(eight_phase_config()))
    with pytest.raises(ValueError, match="8 detectors"):
        ctl.step(0.0, [1, 0])


# -- safety and liveness over random junctions and random calls -------------------------------
@st.composite
def junctions(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid dual-ring (1-3 rings, 1-3 groups) junction; each phase has its own links
    and one detector; links conflict unless their phases time together."""
    n_groups, n_rings = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    groups: list[list[list[int]]] = []
    phases: dict[str, Any] = {}
    where: dict[int, tuple[int, int]] = {}
    link_phase: list[int] = []
    for g in range(n_groups):
        rings: list[list[int]] = []
        for r in range(n_rings):
            ring = []
            for _ in range(draw(st.integers(0 if r or rings else 1, 3))):
                pid = len(phases) + 1
                n_links = draw(st.integers(1, 3))
                phases[str(pid)] = {
                    "green": {str(len(link_phase) + i): draw(st.sampled_from("Gg"))
                              for i in range(n_links)},
                    "detectors": [pid - 1],
                    "recall": draw(st.sampled_from(["none", "none", "min", "max"]))}
                link_phase += [pid] * n_links
                where[pid] = (g, r)
                ring.append(pid)
            rings.append(ring)
        groups.append(rings)

    def together(a: int, b: int) -> bool:
        return where[a][0] == where[b][0] and where[a][1] != where[b][1]

    n = len(link_phase)
    min_green = draw(st.integers(1, 8))
    return {
        "v": 1, "junction": "rand", "links": n, "detectors": [f"d{p}" for p in phases],
        "conflicts": [[j for j in range(n) if link_phase[j] != link_phase[i]
                       and not together(link_phase[i], link_phase[j])] for i in range(n)],
        "timing": {"min_green": min_green, "max_green": min_green + draw(st.integers(0, 20)),
                   "passage": draw(st.integers(0, 4)), "yellow": draw(st.integers(1, 4)),
                   "red_clear": draw(st.integers(0, 3))},
        "barriers": [{"rings": rings} for rings in groups],
        "phases": phases,
    }


@settings(max_examples=80, deadline=None)
@given(config=junctions(), data=st.data())
def test_never_conflicting_greens_and_every_call_is_served(config, data):
    n_det = len(config["detectors"])
    steps = data.draw(st.lists(st.sets(st.integers(0, n_det - 1), max_size=2), min_size=50,
                               max_size=300))
    steps += [set()] * 150  # a quiet tail: what was called gets served
    parsed = NemaConfig.from_payload(config)
    ctl, twin = NemaController(parsed), NemaController(parsed)
    tm = config["timing"]
    bound = (len(config["phases"]) + len(config["barriers"]) + 1) * (
        tm["max_green"] + tm["yellow"] + tm["red_clear"] + 1)
    last_lit = [-1e9] * parsed.links
    previous = "r" * parsed.links
    yellow_run = [0] * parsed.links
    waiting: dict[str, int] = {}
    for k, present in enumerate(steps):
        vector = [d in present for d in range(n_det)]
        heads = ctl.step(float(k), vector)
        assert twin.step(float(k), vector) == heads  # deterministic
        lit = [i for i, ch in enumerate(heads) if ch != "r"]
        for i in lit:
            assert not parsed.conflicts[i] & set(lit), f"tick {k}: {heads}"
            if previous[i] == "r":  # turning on: every foe had its full red clearance
                for j in parsed.conflicts[i]:
                    assert k - last_lit[j] - 1 >= tm["red_clear"], f"tick {k}: link {i}"
        for i, (was, now) in enumerate(zip(previous, heads, strict=True)):
            assert not (was in "Gg" and now == "r"), f"tick {k}: link {i} skipped yellow"
            if now == "y":
                yellow_run[i] += 1
            else:
                if was == "y":
                    assert yellow_run[i] == tm["yellow"], f"tick {k}: link {i} yellow"
                yellow_run[i] = 0
        for i in lit:
            last_lit[i] = k
        previous = heads
        for d in present:
            waiting.setdefault(str(d + 1), k)
        for p in ctl.green_phases:
            waiting.pop(p, None)
        for p, since in waiting.items():
            assert k - since <= bound, f"phase {p} waited since tick {since}"
    assert ctl.conflicts_prevented == 0
