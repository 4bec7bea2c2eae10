"""Run measurements: per-interval network summary, per-junction delay and queues, trip records.

The kernels add into plain arrays every tick; :class:`Metrics` closes an interval every
``summary_interval`` seconds and turns the arrays into rows. Tables are ``pyarrow.Table``s
with fixed column order and types, so the same run gives the same bytes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from citytwin.agents.kernels import tick as k
from citytwin.agents.kernels.traffic import STATS

#: Run totals (``Metrics.totals`` keys) and where they live in the accumulator vector.
_TOTALS = {"vehicles_inserted": k.T_INSERTED, "vehicles_arrived": k.T_ARRIVED,
           "teleports": k.T_TELEPORTS, "vehicles_teleported_out": k.T_OUT,
           "emergency_brakes": k.T_EMERGENCY, "junction_blocks": k.T_BLOCKED,
           "lane_changes": k.T_LANE_CHANGES, "vehicle_updates": k.T_UPDATES,
           "ticks": k.T_TICKS}


class Metrics:
    """Accumulators of one run."""

    def __init__(self, n_junctions: int, n_edges: int, junction_ids: list[str],
                 junction_mask: np.ndarray, signalised: np.ndarray | None = None,
                 warmup: float = 0.0) -> None:
        self.junction_ids = junction_ids
        self.junction_rows = np.flatnonzero(junction_mask)  # junctions with connections
        #: Signalised junctions; their totals since ``warmup`` give the signal KPIs.
        self.signal_rows = np.flatnonzero(signalised if signalised is not None
                                          else np.zeros(n_junctions, bool))
        self.warmup = warmup
        self._sig = np.zeros(3)  # wait (veh-s), queue (veh-ticks), passed, since warmup
        self._after = np.zeros(3)  # ticks, arrived, seconds since warmup
        self.arrays = k.MetricArrays(
            junction_wait=np.zeros(n_junctions), junction_queue=np.zeros(n_junctions),
            junction_passed=np.zeros(n_junctions, np.int64),
            queue_prev=np.zeros(n_junctions), queue_max=np.zeros(n_junctions),
            edge_speed_sum=np.zeros(n_edges), edge_count=np.zeros(n_edges, np.int64),
            tick_stats=np.zeros(STATS), acc=np.zeros(k.N_ACC))
        self._begin = 0.0
        self._summary: dict[str, list] = {key: [] for key in (
            "begin", "end", "running", "waiting_to_depart", "inserted", "arrived",
            "mean_speed", "halting", "teleports")}
        self._junctions: dict[str, list] = {key: [] for key in (
            "junction", "begin", "end", "vehicles", "mean_wait_s", "queue_mean", "queue_max")}

    @property
    def totals(self) -> dict[str, int]:
        """Run totals so far (counts)."""
        acc = self.arrays.acc
        return {name: int(acc[i]) for name, i in _TOTALS.items()}

    @property
    def edge_speed_sum(self) -> np.ndarray:
        return self.arrays.edge_speed_sum

    @property
    def edge_count(self) -> np.ndarray:
        return self.arrays.edge_count

    def close_interval(self, end: float, running: int, waiting: int) -> None:
        """Write the rows of the interval ending at ``end`` and start the next one."""
        m, acc = self.arrays, self.arrays.acc
        ticks = max(int(acc[k.I_TICKS]), 1)
        s = self._summary
        s["begin"].append(self._begin)
        s["end"].append(end)
        s["running"].append(running)
        s["waiting_to_depart"].append(waiting)
        s["inserted"].append(int(acc[k.I_INSERTED]))
        s["arrived"].append(int(acc[k.I_ARRIVED]))
        moved = int(acc[k.I_MOVED])
        s["mean_speed"].append(float(acc[k.I_SPEED]) / moved if moved else float("nan"))
        s["halting"].append(int(acc[k.I_HALTING]) / ticks)
        s["teleports"].append(int(acc[k.I_TELEPORTS]))
        j = self._junctions
        rows = self.junction_rows
        passed = m.junction_passed[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            wait = np.where(passed > 0, m.junction_wait[rows] / passed, np.nan)
        j["junction"].extend(self.junction_ids[r] for r in rows)
        j["begin"].extend([self._begin] * rows.size)
        j["end"].extend([end] * rows.size)
        j["vehicles"].extend(passed.tolist())
        j["mean_wait_s"].extend(wait.tolist())
        j["queue_mean"].extend((m.junction_queue[rows] / ticks).tolist())
        j["queue_max"].extend(m.queue_max[rows].astype(np.int64).tolist())
        if self._begin >= self.warmup - 1e-9:
            self._sig += self._open_signal_sums()
            self._after += (acc[k.I_TICKS], acc[k.I_ARRIVED], end - self._begin)
        self._begin = end
        acc[k.I_TICKS:] = 0.0
        for a in (m.junction_wait, m.junction_queue, m.junction_passed, m.queue_prev,
                  m.queue_max):
            a[:] = 0

    def _open_signal_sums(self) -> np.ndarray:
        m, rows = self.arrays, self.signal_rows
        return np.array([m.junction_wait[rows].sum(), m.junction_queue[rows].sum(),
                         m.junction_passed[rows].sum()], np.float64)

    def signal_kpis(self, now: float) -> dict[str, float]:
        """Signal KPIs from ``warmup`` to ``now`` (the open interval included):
        ``mean_intersection_wait_s`` (vehicle-seconds halted on the approaches of
        signalised junctions per vehicle that entered one), ``mean_queue`` (halted vehicles
        on the approaches per signalised junction and tick) and ``throughput_vph``
        (vehicles arrived per hour)."""
        sig, after = self._sig.copy(), self._after.copy()
        acc = self.arrays.acc
        if acc[k.I_TICKS] and self._begin >= self.warmup - 1e-9:
            sig += self._open_signal_sums()
            after += (acc[k.I_TICKS], acc[k.I_ARRIVED], now - self._begin)
        n_sig = self.signal_rows.size
        nan = float("nan")
        return {
            "mean_intersection_wait_s": float(sig[0] / sig[2]) if sig[2] else nan,
            "mean_queue": float(sig[1] / (after[0] * n_sig)) if after[0] and n_sig else nan,
            "throughput_vph": float(after[1] * 3600.0 / after[2]) if after[2] > 0 else nan,
        }

    @property
    def interval_ticks(self) -> int:
        return int(self.arrays.acc[k.I_TICKS])

    def summary_table(self) -> pa.Table:
        s = self._summary
        return pa.table({
            "begin": pa.array(s["begin"], pa.float64()),
            "end": pa.array(s["end"], pa.float64()),
            "running": pa.array(s["running"], pa.int64()),
            "waiting_to_depart": pa.array(s["waiting_to_depart"], pa.int64()),
            "inserted": pa.array(s["inserted"], pa.int64()),
            "arrived": pa.array(s["arrived"], pa.int64()),
            "mean_speed": pa.array(s["mean_speed"], pa.float64()),
            "halting": pa.array(s["halting"], pa.float64()),
            "teleports": pa.array(s["teleports"], pa.int64()),
        })

    def junctions_table(self) -> pa.Table:
        j = self._junctions
        return pa.table({
            "junction": pa.array(j["junction"], pa.string()),
            "begin": pa.array(j["begin"], pa.float64()),
            "end": pa.array(j["end"], pa.float64()),
            "vehicles": pa.array(j["vehicles"], pa.int64()),
            "mean_wait_s": pa.array(j["mean_wait_s"], pa.float64()),
            "queue_mean": pa.array(j["queue_mean"], pa.float64()),
            "queue_max": pa.array(j["queue_max"], pa.int64()),
        })
