"""The conflict monitor of a signalised junction: the check every state from outside passes.

Like the malfunction management unit of a real cabinet, it knows which links of the junction
conflict (from the network's foe relations) and which of those may nevertheless be green
together (a permissive turn, ``g``, beside the opposing through movement, ``G``): exactly the
pairs that the junction's own program shows green together, at most as strongly. It also
enforces the timing of every link: green at least ``min_green``, green only ever ends in yellow,
yellow lasts ``yellow``, and a link turns green only ``red_clear`` seconds after every
conflicting link's yellow ended.

Links are classed by letter: green (``G g O o``), yellow (``y``), red (``r``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from citytwin.model.network import Network

_RED, _YELLOW, _GREEN = 0, 1, 2
_CLASS = {"r": _RED, "y": _YELLOW, "G": _GREEN, "g": _GREEN, "O": _GREEN, "o": _GREEN}
#: How strongly two links are green together: 1 one of them yields (g, o), 2 both have priority.
_MAJOR = frozenset("GO")


@dataclass(frozen=True)
class MonitorTiming:
    """Safety timings in seconds; ``tolerance`` forgives lateness of a device's message."""

    min_green: float = 5.0
    yellow: float = 3.0
    red_clear: float = 1.0
    tolerance: float = 0.0


class ConflictMonitor:
    """Checks the state strings shown at one signal controller.

    Args:
        network: The road network.
        tls: Index of the signal controller.
        timing: The timings it enforces.
        state: The state shown when the monitor starts watching (all timers satisfied).
    """

    def __init__(self, network: Network, tls: int, timing: MonitorTiming, state: str) -> None:
        self.tls_id = network.tls_ids[tls]
        self.timing = timing
        program = network.programs[tls]
        n = program.n_links
        self.n_links = n
        conns = np.flatnonzero(network.conn_tls == tls)
        link_of = {int(c): int(network.conn_link[c]) for c in conns}
        foes = np.zeros((n, n), bool)
        for c in conns:
            for q in range(network.conn_foe_ptr[c], network.conn_foe_ptr[c + 1]):
                f = int(network.conn_foe[q])
                if f in link_of and link_of[f] != link_of[int(c)]:
                    foes[link_of[int(c)], link_of[f]] = foes[link_of[f], link_of[int(c)]] = True
        allowed = np.zeros((n, n), np.int8)
        for ph in program.phases:
            allowed = np.maximum(allowed, _together(ph.state))
        #: Per link, the links it must never be green with (foes the program never shows
        #: green together).
        self.conflicts = foes & (allowed == 0)
        self._foes = foes
        self._allowed = allowed
        self._letters = state
        self._cls = np.array([_CLASS.get(ch, _GREEN) for ch in state], np.int8)
        self.last_commit = -np.inf  # sim time of the last state committed
        self._since = np.full(n, -np.inf)  # when each link's current class began
        self._red_since = np.full(n, -np.inf)  # when each link's last yellow ended

    @property
    def state(self) -> str:
        """The state the monitor last accepted or was forced to."""
        return self._letters

    def conflict_lists(self) -> list[list[int]]:
        """Per link, the links that must never be green together with it."""
        return [np.flatnonzero(row).tolist() for row in self.conflicts]

    def check(self, state: str, t: float) -> str | None:
        """Return why showing ``state`` at sim time ``t`` would be unsafe, or None if safe."""
        if len(state) != self.n_links:
            return f"{len(state)} heads for {self.n_links} links"
        bad = set(state) - set(_CLASS)
        if bad:
            return f"unknown head letter(s) {''.join(sorted(bad))!r}; use one of r y G g O o"
        tm, tol = self.timing, self.timing.tolerance + 1e-9
        cls = np.array([_CLASS[ch] for ch in state], np.int8)
        level = _together(state)
        worse = np.argwhere(self._foes & (level > self._allowed))
        if worse.size:
            a, b = (int(x) for x in worse[0])
            return f"links {a} and {b} conflict and may not both be green ({state[a]}{state[b]})"
        for i in np.flatnonzero(cls != self._cls).tolist():
            was, now, held = self._cls[i], cls[i], t - self._since[i]
            if was == _GREEN and now == _RED:
                return f"link {i} went from green to red without yellow"
            if was == _YELLOW and now == _GREEN:
                return f"link {i} went from yellow back to green"
            if was == _GREEN and held < tm.min_green - tol:
                return f"link {i} green for {held:.1f} s < minimum green {tm.min_green:g} s"
            if was == _YELLOW and held < tm.yellow - tol:
                return f"link {i} yellow for {held:.1f} s < yellow time {tm.yellow:g} s"
            if now == _GREEN:
                for f in np.flatnonzero(self.conflicts[i]).tolist():
                    if cls[f] == _YELLOW:
                        return f"link {i} turned green while conflicting link {f} is yellow"
                    if cls[f] != _RED:
                        continue  # both green: reported above
                    red_for = t - self._red_since[f] if self._cls[f] == _RED else 0.0
                    if red_for < tm.red_clear - tol:
                        return (f"link {i} turned green {red_for:.1f} s after conflicting "
                                f"link {f} turned red < red clearance {tm.red_clear:g} s")
        return None

    def commit(self, state: str, t: float, *, greens_served: bool = False) -> None:
        """Record that ``state`` is shown from sim time ``t`` on (after :meth:`check`, or to
        follow a state the simulator itself shows, such as a clearance or flash).

        ``greens_served``: links that turn green now count as green for ``min_green`` already.
        For the first state of a device that takes over a junction: it has been timing those
        greens while the simulator showed the handover clearance.
        """
        cls = np.array([_CLASS.get(ch, _GREEN) for ch in state], np.int8)
        changed = cls != self._cls
        self._red_since[changed & (self._cls == _YELLOW) & (cls == _RED)] = t
        self._red_since[changed & (self._cls == _GREEN) & (cls == _RED)] = t
        self._since[changed] = t
        if greens_served:
            self._since[changed & (cls == _GREEN)] = t - self.timing.min_green
        self._cls = cls
        self._letters = state
        self.last_commit = max(self.last_commit, t)


def _together(state: str) -> np.ndarray:
    """Per pair of links, how strongly both are green in ``state`` (0, 1 or 2)."""
    green = np.array([_CLASS.get(ch, _RED) == _GREEN for ch in state])
    major = np.array([ch in _MAJOR for ch in state])
    both = np.outer(green, green)
    return np.where(both, np.where(np.outer(major, major), 2, 1), 0).astype(np.int8)


def clearance(state: str) -> str:
    """The yellow that ends every green (and yellow) of ``state``: first step of a safe
    transition to all red."""
    return "".join("r" if _CLASS.get(ch, _GREEN) == _RED else "y" for ch in state)
