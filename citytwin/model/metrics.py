"""Run measurements: per-interval network summary, per-junction delay and queues, trip records.

The kernels add into plain arrays every tick; :class:`Metrics` closes an interval every
``summary_interval`` seconds and turns the arrays into rows. Tables are ``pyarrow.Table``s
with fixed column order and types, so the same run gives the same bytes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from citytwin.agents.kernels.traffic import (
    S_ARRIVED,
    S_BLOCKED,
    S_EMERGENCY,
    S_HALTING,
    S_MOVED,
    S_OUT,
    S_SPEED,
    S_TELEPORTS,
    STATS,
)


class Metrics:
    """Accumulators of one run."""

    def __init__(self, n_junctions: int, n_edges: int, junction_ids: list[str],
                 junction_mask: np.ndarray) -> None:
        self.junction_ids = junction_ids
        self.junction_rows = np.flatnonzero(junction_mask)  # junctions with connections
        self.junction_wait = np.zeros(n_junctions)
        self.junction_queue = np.zeros(n_junctions)
        self.junction_passed = np.zeros(n_junctions, np.int64)
        self._queue_max = np.zeros(n_junctions)
        self.edge_speed_sum = np.zeros(n_edges)
        self.edge_count = np.zeros(n_edges, np.int64)
        self.tick_stats = np.zeros(STATS)
        self.totals = {"vehicles_inserted": 0, "vehicles_arrived": 0, "teleports": 0,
                       "vehicles_teleported_out": 0, "emergency_brakes": 0,
                       "junction_blocks": 0, "lane_changes": 0, "vehicle_updates": 0,
                       "ticks": 0}
        self._iv: dict[str, float] = {}
        self._reset_interval(0.0)
        self._summary: dict[str, list] = {k: [] for k in (
            "begin", "end", "running", "waiting_to_depart", "inserted", "arrived",
            "mean_speed", "halting", "teleports")}
        self._junctions: dict[str, list] = {k: [] for k in (
            "junction", "begin", "end", "vehicles", "mean_wait_s", "queue_mean", "queue_max")}

    def _reset_interval(self, begin: float) -> None:
        self._iv = {"begin": begin, "ticks": 0, "inserted": 0, "arrived": 0, "speed": 0.0,
                    "moved": 0, "halting": 0, "teleports": 0}
        self.junction_wait[:] = 0.0
        self.junction_queue[:] = 0.0
        self.junction_passed[:] = 0
        self._queue_max[:] = 0.0
        self._queue_prev = np.zeros_like(self.junction_queue)

    @property
    def jstats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.junction_wait, self.junction_queue, self.junction_passed

    @property
    def estats(self) -> tuple[np.ndarray, np.ndarray]:
        return self.edge_speed_sum, self.edge_count

    def after_tick(self, n_on_network: int, n_inserted: int, lane_changes: int) -> None:
        """Fold this tick's kernel stats into the interval and the run totals."""
        s = self.tick_stats
        t = self.totals
        t["vehicles_inserted"] += n_inserted
        t["vehicles_arrived"] += int(s[S_ARRIVED])
        t["teleports"] += int(s[S_TELEPORTS])
        t["vehicles_teleported_out"] += int(s[S_OUT])
        t["emergency_brakes"] += int(s[S_EMERGENCY])
        t["junction_blocks"] += int(s[S_BLOCKED])
        t["lane_changes"] += lane_changes
        t["vehicle_updates"] += n_on_network
        t["ticks"] += 1
        iv = self._iv
        iv["ticks"] += 1
        iv["inserted"] += n_inserted
        iv["arrived"] += int(s[S_ARRIVED])
        iv["speed"] += float(s[S_SPEED])
        iv["moved"] += int(s[S_MOVED])
        iv["halting"] += int(s[S_HALTING])
        iv["teleports"] += int(s[S_TELEPORTS])
        # junction_queue accumulates halting counts; this tick's count is the increase.
        q_now = self.junction_queue - self._queue_prev
        np.maximum(self._queue_max, q_now, out=self._queue_max)
        self._queue_prev = self.junction_queue.copy()

    def close_interval(self, end: float, running: int, waiting: int) -> None:
        """Write the rows of the interval ending at ``end`` and start the next one."""
        iv = self._iv
        ticks = max(iv["ticks"], 1)
        s = self._summary
        s["begin"].append(iv["begin"])
        s["end"].append(end)
        s["running"].append(running)
        s["waiting_to_depart"].append(waiting)
        s["inserted"].append(iv["inserted"])
        s["arrived"].append(iv["arrived"])
        s["mean_speed"].append(iv["speed"] / iv["moved"] if iv["moved"] else float("nan"))
        s["halting"].append(iv["halting"] / ticks)
        s["teleports"].append(iv["teleports"])
        j = self._junctions
        rows = self.junction_rows
        passed = self.junction_passed[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            wait = np.where(passed > 0, self.junction_wait[rows] / passed, np.nan)
        j["junction"].extend(self.junction_ids[r] for r in rows)
        j["begin"].extend([iv["begin"]] * rows.size)
        j["end"].extend([end] * rows.size)
        j["vehicles"].extend(passed.tolist())
        j["mean_wait_s"].extend(wait.tolist())
        j["queue_mean"].extend((self.junction_queue[rows] / ticks).tolist())
        j["queue_max"].extend(self._queue_max[rows].astype(np.int64).tolist())
        self._reset_interval(end)

    @property
    def interval_ticks(self) -> int:
        return int(self._iv["ticks"])

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
