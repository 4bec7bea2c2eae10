"""ctfw_signal: a traffic-signal controller board (compact actuated controller).

Runs unchanged on MicroPython and CPython. It takes the simulator's signal ``config`` (links,
conflicts, timing, ``barriers`` and ``phases``) and answers every detector input (``CALLS``)
with its heads (``HEADS``): one SUMO letter per link.

How it times (a single-sequence simplification of a NEMA dual-ring controller):

- **Stages.** Each barrier group gives one stage per position in its rings: stage j of a group
  runs the j-th phase of every ring together (the rings of a group never conflict). Stages are
  served in order, cyclically, skipping stages without a call.
- **Calls.** A detector actuation on a stage that is not green places a call that stays until
  the stage is served; ``min``/``max`` recall keep a call on a stage whenever it is not green.
  An actuation on the green stage restarts its gap timer.
- **Green** lasts at least ``min_green``. Once another stage is called it ends by gap-out (no
  actuation for ``passage`` s; ``max`` recall disables it) or max-out (``max_green`` s after
  the first conflicting call). With no other call it rests in green.
- **Change**: ``yellow``, then all red for ``red_clear``, then the next called stage.
- **Start**: all red for ``yellow + red_clear`` (as long as the simulator's own clearance at a
  handover takes), then the first called stage (or the first stage).
- **Monitor**: two conflicting links never leave the board lit together; if the plan would do
  it, the board shows all red and counts ``conflicts_prevented``.

Timing comes from the config's ``timing`` (a phase's own ``timing`` overrides it; a stage uses
the longest of its phases). Times are sim seconds from the inputs, never the wall clock.
"""

import json

from ctfw_board import Board

GREEN = 0
YELLOW = 1
RED = 2
_EPS = 1e-6
_KEYS = ("min_green", "max_green", "passage", "yellow", "red_clear")
_DEFAULT = {"min_green": 5.0, "max_green": 40.0, "passage": 3.0, "yellow": 3.0,
            "red_clear": 2.0}
_STRENGTH = {"r": 0, "y": 1, "g": 2, "G": 3}


def _timing(raw, base):
    out = dict(base)
    if isinstance(raw, dict):
        for key in _KEYS:
            value = raw.get(key)
            if isinstance(value, (int, float)) and 0 <= value <= 3600:
                out[key] = float(value)
    return out


class Plan:
    """A junction's stages from its ``config``; raises ValueError if unusable."""

    def __init__(self, data):
        links = data.get("links")
        if not isinstance(links, int) or not 1 <= links <= 512:
            raise ValueError("links")
        self.links = links
        detectors = data.get("detectors", [])
        self.n_detectors = len(detectors) if isinstance(detectors, list) else 0
        self.conflicts = [[] for _ in range(links)]
        for i, row in enumerate(data.get("conflicts") or []):
            if i >= links or not isinstance(row, list):
                raise ValueError("conflicts")
            for j in row:
                if not isinstance(j, int) or not 0 <= j < links:
                    raise ValueError("conflicts")
                if j != i:
                    self.conflicts[i].append(j)
                    self.conflicts[j].append(i)
        base = _timing(data.get("timing"), _DEFAULT)
        phases = data.get("phases")
        barriers = data.get("barriers")
        if not isinstance(phases, dict) or not isinstance(barriers, list) or not barriers:
            raise ValueError("phases/barriers")
        self.stages = []
        for group in barriers:
            rings = group.get("rings") if isinstance(group, dict) else None
            if not isinstance(rings, list):
                raise ValueError("barriers")
            depth = max([len(r) for r in rings if isinstance(r, list)] or [0])
            for j in range(depth):
                ids = [str(r[j]) for r in rings if isinstance(r, list) and j < len(r)]
                self.stages.append(self._stage(ids, phases, base))
        if not self.stages:
            raise ValueError("no stages")
        self.start_red = self.stages[0]["yellow"] + self.stages[0]["red_clear"]

    def _stage(self, ids, phases, base):
        green = {}
        detectors = []
        recall = "none"
        timing = None
        for pid in ids:
            spec = phases.get(pid)
            if not isinstance(spec, dict):
                raise ValueError("phase " + pid)
            for key, letter in (spec.get("green") or {}).items():
                link = int(key)
                if not 0 <= link < self.links or letter not in ("G", "g"):
                    raise ValueError("phase " + pid)
                if _STRENGTH[letter] > _STRENGTH[green.get(link, "r")]:
                    green[link] = letter
            for d in spec.get("detectors") or []:
                if not isinstance(d, int) or not 0 <= d < self.n_detectors:
                    raise ValueError("phase " + pid)
                detectors.append(d)
            r = spec.get("recall", "none")
            if r == "max" or (r == "min" and recall == "none"):
                recall = r
            t = _timing(spec.get("timing"), base)
            timing = t if timing is None else {k: max(timing[k], t[k]) for k in _KEYS}
        stage = {"phases": ids, "green": green, "detectors": detectors, "recall": recall}
        stage.update(timing or base)
        return stage


class Controller:
    """Steps the plan with sim time and detector presence; returns the heads."""

    def __init__(self, plan):
        self.plan = plan
        self.stage = 0
        self.interval = RED
        self.since = None
        self.red_for = plan.start_red
        self.t = None
        self.gap = 0.0
        self.max_from = None
        self.calls = [False] * len(plan.stages)
        self.conflicts_prevented = 0
        self.gap_outs = 0
        self.max_outs = 0
        self.started = False
        self.heads = "r" * plan.links

    def step(self, t, present):
        plan = self.plan
        dt = 0.0 if self.t is None else max(0.0, t - self.t)
        self.t = t
        if self.since is None:
            self.since = t
        green = self.interval == GREEN
        for k, stage in enumerate(plan.stages):
            hit = False
            for d in stage["detectors"]:
                if d < len(present) and present[d]:
                    hit = True
                    break
            if green and k == self.stage:
                self.gap = 0.0 if hit else self.gap + dt
            elif hit or stage["recall"] != "none":
                self.calls[k] = True
        for _ in range(4):
            if not self._advance(t):
                break
        self.heads = self._letters()
        return self.heads

    def _other_call(self):
        return any(called and k != self.stage for k, called in enumerate(self.calls))

    def _advance(self, t):
        stage = self.plan.stages[self.stage]
        held = t - self.since
        if self.interval == GREEN:
            if not self._other_call():
                return False
            if self.max_from is None:
                self.max_from = t
            if held < stage["min_green"] - _EPS:
                return False
            gapped = stage["recall"] != "max" and self.gap >= stage["passage"] - _EPS
            maxed = t - self.max_from >= stage["max_green"] - _EPS
            if not (gapped or maxed):
                return False
            if gapped:
                self.gap_outs += 1
            else:
                self.max_outs += 1
            self.interval, self.since = YELLOW, t
            return True
        if self.interval == YELLOW:
            if held < stage["yellow"] - _EPS:
                return False
            self.interval, self.since = RED, t
            self.red_for = stage["red_clear"]
            return True
        if held < self.red_for - _EPS:
            return False
        self.stage = self._next()
        self.interval, self.since = GREEN, t
        self.gap, self.max_from = 0.0, None
        self.calls[self.stage] = False
        return True

    def _next(self):
        n = len(self.calls)
        first = self.stage + 1 if self.started else self.stage
        self.started = True
        for k in range(n):
            cand = (first + k) % n
            if self.calls[cand]:
                return cand
        return first % n

    def _letters(self):
        letters = ["r"] * self.plan.links
        if self.interval != RED:
            for link, letter in self.plan.stages[self.stage]["green"].items():
                letters[link] = letter if self.interval == GREEN else "y"
        for i, row in enumerate(self.plan.conflicts):
            if letters[i] != "r":
                for j in row:
                    if letters[j] != "r":
                        self.conflicts_prevented += 1
                        return "r" * self.plan.links
        return "".join(letters)


class SignalBoard(Board):
    """A signal controller board."""

    kind = "signal"
    commands = ()

    def __init__(self, device_id, lockstep=False):
        Board.__init__(self, device_id, lockstep)
        self.controller = None
        self._raw_config = None

    def hello(self):
        return {"caps": {"controller": "ctfw-actuated", "letters": "ryGg", "replies": "input",
                         "commands": []}}

    def on_config(self, raw):
        if raw == self._raw_config:
            return  # the retained config again (after a reconnect)
        try:
            plan = Plan(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError):
            self.count("bad_config")
            return
        self._raw_config = raw
        self.controller = Controller(plan)
        self.count("configs")

    def on_link(self, online):
        if online and self.controller is not None:
            self.controller = Controller(self.controller.plan)  # a new session: clear first

    def on_calls(self, tick, t, bits, n):
        self.see_time(t)
        ctl = self.controller
        if ctl is None:
            self.count("input_without_config")
            return
        if ctl.t is not None and t < ctl.t:
            ctl = self.controller = Controller(ctl.plan)  # a new simulator session
        present = [bool(bits[i >> 3] >> (i & 7) & 1) for i in range(n)]
        heads = ctl.step(t, present)
        if self.link is not None:
            self.link.send_heads(tick, heads)
