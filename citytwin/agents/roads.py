"""The road network as the kernels see it: flat arrays, no Python objects.

:class:`RoadArrays` is built once by :meth:`citytwin.model.network.Network.arrays` and handed
to every fleet. Lanes are numbered with all normal lanes first (each edge's lanes contiguous,
index 0 the rightmost) and then one internal lane per connection, so the internal lane of
connection ``c`` is ``n_normal + c``. Link states use the codes below (SUMO's letters folded
onto what a driver has to do).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Link state codes. SUMO letters: r u -> RED; y Y -> YELLOW; g m o s = w Z -> MINOR (may drive,
#: must yield to foes with priority); G M O -> MAJOR (may drive with priority).
RED, YELLOW, MINOR, MAJOR = 0, 1, 2, 3

_STATE_CODES = {"r": RED, "u": RED, "y": YELLOW, "Y": YELLOW,
                "g": MINOR, "m": MINOR, "o": MINOR, "s": MINOR, "=": MINOR, "w": MINOR,
                "Z": MINOR,
                "G": MAJOR, "M": MAJOR, "O": MAJOR}


def state_code(letter: str) -> int:
    """Return the link state code of one SUMO signal-state letter.

    Raises:
        ValueError: the letter is not a SUMO link state.
    """
    try:
        return _STATE_CODES[letter]
    except KeyError:
        raise ValueError(
            f"unknown signal state letter {letter!r}; expected one of "
            f"{''.join(sorted(_STATE_CODES))}") from None


def state_codes(states: str) -> np.ndarray:
    """Return the codes of a SUMO state string such as ``"GGgrrrGGgrrr"`` as uint8."""
    return np.array([state_code(ch) for ch in states], dtype=np.uint8)


class RoadArrays(NamedTuple):
    """Structure-of-arrays view of a road network, for kernels."""

    n_normal: int                 # number of normal lanes; internal lane of conn c = n_normal + c
    lane_length: np.ndarray       # f8[n_lanes]
    lane_speed: np.ndarray        # f8[n_lanes] speed limit, m/s
    lane_edge: np.ndarray         # i4[n_lanes] edge of a normal lane, -1 for internal lanes
    lane_index: np.ndarray        # i4[n_lanes] index within its edge (0 = rightmost)
    lane_conn: np.ndarray         # i4[n_lanes] connection of an internal lane, -1 for normal
    lane_out_ptr: np.ndarray      # i4[n_lanes+1] CSR: connections leaving a normal lane
    lane_out: np.ndarray          # i4[...]
    edge_first_lane: np.ndarray   # i4[n_edges]
    edge_num_lanes: np.ndarray    # i4[n_edges]
    edge_length: np.ndarray       # f8[n_edges]
    edge_to_junction: np.ndarray  # i4[n_edges]
    conn_from_lane: np.ndarray    # i4[n_conns]
    conn_to_lane: np.ndarray      # i4[n_conns]
    conn_to_edge: np.ndarray      # i4[n_conns]
    conn_junction: np.ndarray     # i4[n_conns]
    conn_tls: np.ndarray          # i4[n_conns] signal controller index, -1 if unsignalised
    conn_link: np.ndarray         # i4[n_conns] link index within its controller, -1 if none
    conn_static: np.ndarray       # u1[n_conns] state code when unsignalised (MAJOR or MINOR)
    tls_conns: np.ndarray         # i4 the connections under a signal controller, ascending
    conn_foe_ptr: np.ndarray      # i4[n_conns+1] CSR: connections that conflict geometrically
    conn_foe: np.ndarray          # i4[...]
    conn_resp_ptr: np.ndarray     # i4[n_conns+1] CSR: foes this connection must yield to
    conn_resp: np.ndarray         # i4[...]
    conn_foe_clear: np.ndarray    # f8[len(conn_foe)] where a foe's vehicle backs clear the
    #                               conflict point (kernels.geometry: MERGE, NO_CONFLICT)
    conn_foe_at: np.ndarray       # f8[len(conn_foe)] where the connection's own fronts reach
    #                               that conflict point (inf: none)
    conn_foe_yields: np.ndarray   # u1[len(conn_foe)] the foe yields to the connection and a
    #                               vehicle standing at the foe's wait point does not block it
    conn_wait: np.ndarray         # f8[n_conns] where a yielding vehicle waits inside the
    #                               junction, -1: at the stop line
