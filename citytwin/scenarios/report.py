"""The report of a policy comparison: ``report.md`` with PNG plots (matplotlib, Agg).

- ``boxplots.png``: per metric, one box per policy over the seeds;
- ``junction_delay.png``: mean wait per vehicle at each signalised junction (mean over
  seeds after the warm-up), policies by junctions;
- ``timeseries.png``: halted vehicles and arrivals per summary interval, mean over seeds.

Figures carry no timestamp, so the same comparison gives the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from citytwin.scenarios.compare import METRICS

_PNG: dict[str, Any] = {"metadata": {"Software": None}, "dpi": 100}


def write_report(result: dict[str, Any], out_dir: Path, scenario_name: str,
                 command: str) -> Path:
    """Write ``report.md`` and its PNGs into ``out_dir``; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "citytwin"
    policies, seeds, runs = result["policies"], result["seeds"], result["runs"]
    by = {(r["label"], r["seed"]): r for r in runs}
    shown = [m for m in METRICS
             if any(result["results"][p][m[0]]["mean"] is not None for p in policies)]

    fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(4 * ((len(shown) + 1) // 2), 7),
                             squeeze=False)
    for ax, (key, unit, _) in zip(axes.flat, shown, strict=False):
        data = [[v for v in result["results"][p][key]["per_seed"] if v == v] for p in policies]
        ax.boxplot(data, tick_labels=[p.split(":")[0] for p in policies])
        ax.set_title(key, fontsize=9)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_dir / "boxplots.png", **_PNG)
    plt.close(fig)

    junctions = sorted({j for r in runs for j in r["junction_wait"]})
    grid = np.full((len(policies), len(junctions)), np.nan)
    for a, p in enumerate(policies):
        for b, j in enumerate(junctions):
            vals = [by[p, s]["junction_wait"][j] for s in seeds if j in by[p, s]["junction_wait"]]
            if vals:
                grid[a, b] = float(np.mean(vals))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(junctions) + 2), 1 + 0.5 * len(policies)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(policies)), [p.split(":")[0] for p in policies], fontsize=8)
    ax.set_xticks(range(len(junctions)), junctions, rotation=90, fontsize=7)
    fig.colorbar(im, ax=ax, label="mean wait per vehicle, s")
    ax.set_title("wait per vehicle at each signalised junction (mean over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "junction_delay.png", **_PNG)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for p in policies:
        series = [by[p, s]["series"] for s in seeds]
        n = min(len(x["end"]) for x in series)
        end = np.array(series[0]["end"][:n])
        halting = np.mean([x["halting"][:n] for x in series], axis=0)
        width = np.diff(np.concatenate([[0.0], end]))
        arrived = np.mean([np.array(x["arrived"][:n]) * 3600.0 / width for x in series],
                          axis=0)
        a1.plot(end / 60, halting, label=p)
        a2.plot(end / 60, arrived, label=p)
    a1.set(xlabel="sim time, min", ylabel="halted vehicles (mean per tick)")
    a2.set(xlabel="sim time, min", ylabel="arrivals, veh/h")
    a1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "timeseries.png", **_PNG)
    plt.close(fig)

    lines = [f"# Signal policy comparison: {scenario_name}", "",
             f"    {command}", "",
             f"Seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), same demand per seed for every "
             "policy. Means with 95 % Student-t intervals across seeds; the change against "
             f"`{policies[0]}` is the mean of paired per-seed relative differences, with its "
             "interval.", "",
             "| metric | " + " | ".join(f"`{p}`" for p in policies) + " |",
             "|---|" + "---:|" * len(policies)]
    for key, unit, _ in shown:
        cells = []
        for p in policies:
            m = result["results"][p][key]
            cell = _fmt(m["mean"], m["ci95"])
            ch = m.get("change_vs_first")
            if ch and ch["mean"] is not None:
                cell += f"<br>{_fmt(100 * ch['mean'], _scale(ch['ci95'], 100), '%')}"
            cells.append(cell)
        lines.append(f"| {key} ({unit}) | " + " | ".join(cells) + " |")
    lines += ["", "![box plots](boxplots.png)", "", "![junction delay](junction_delay.png)", "",
              "![time series](timeseries.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _scale(ci: list[float] | None, f: float) -> list[float] | None:
    return None if ci is None else [f * ci[0], f * ci[1]]


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _fmt(mean: float | None, ci: list[float] | None, unit: str = "") -> str:
    if mean is None:
        return "n/a"
    if ci is None:
        return f"{mean:+.1f}{unit}" if unit else _num(mean)
    if unit:
        return f"{mean:+.1f}{unit} [{ci[0]:+.1f}, {ci[1]:+.1f}]"
    return f"{_num(mean)} [{_num(ci[0])}, {_num(ci[1])}]"
