"""Kernel: follow emergency vehicles through a tick and count the red signals they meet.

Called once per tick after vehicles moved. It learns which slot each emergency vehicle runs in
from the tick's insertions and departures, then counts, per vehicle, the signalised links
ahead of it that showed red or yellow while it was close enough to have to react: within its
comfortable stopping distance plus ``reaction`` seconds of driving plus ``margin`` metres of
the stop line (a halted vehicle near the line counts too). Each link counts once per approach.
"""

from __future__ import annotations

from citytwin.agents.kernels._config import njit
from citytwin.agents.roads import MINOR


@njit
def emergency_step(em, veh, types, roads, ls, inserted, n_ins, arrived, n_out):
    """Track the emergency vehicles' slots and count red signals met this tick."""
    if em.ev_slot.shape[0] == 0:
        return
    for q in range(n_ins):
        s = inserted[q]
        e = em.trip_ev[veh.trip[s]]
        if e >= 0:
            em.ev_slot[e] = s
    for q in range(n_out):
        s = arrived[q]
        e = em.trip_ev[veh.trip[s]]
        if e >= 0 and em.ev_slot[e] == s:
            em.ev_slot[e] = -1
    reaction, margin = em.params[2], em.params[3]
    n_normal = roads.n_normal
    for e in range(em.ev_slot.shape[0]):
        i = em.ev_slot[e]
        if i < 0:
            continue
        lane = veh.lane[i]
        if lane >= n_normal:
            continue
        c = veh.next_conn[i]
        if c < 0 or roads.conn_tls[c] < 0 or ls.conn_state[c] >= MINOR:
            continue
        v = veh.speed[i]
        reach = v * v / (2.0 * types.decel[veh.vtype[i]]) + v * reaction + margin
        if roads.lane_length[lane] - veh.pos[i] <= reach and em.last_red[e] != c:
            em.red[e] += 1
            em.last_red[e] = c
