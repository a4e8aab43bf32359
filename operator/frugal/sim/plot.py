"""PNG charts of a simulation report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugal.sim.engine import COMPONENTS
from frugal.sim.study import Study
from frugal.sim.tables import PAPER

COLOURS = {
    "input": "#4c72b0",
    "output": "#dd8452",
    "retrieval": "#55a868",
    "infrastructure": "#c44e52",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(report: dict[str, Any], study: Study, out: Path) -> list[Path]:
    """Write every chart into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        cost_chart(report, out / "table1-cost.png"),
        ablation_chart(report, out / "table3-ablation.png"),
        sensitivity_chart(report, out / "sensitivity.png"),
        timeline_chart(study, out / "timeline.png"),
    ]


def cost_chart(report: dict[str, Any], path: Path) -> Path:
    """Stacked monthly cost by Eq. (1) component, with the bound and the paper's headline."""
    plt = _plt()
    rows = [r for r in report["table1"] if r["scenario"] != "lower bound (LP)"]
    labels = [f"{r['fleet']}\n{r['scenario']}" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 5))
    bottom = [0.0] * len(rows)
    for part in COMPONENTS:
        values = [r[part] or 0.0 for r in rows]
        ax.bar(labels, values, bottom=bottom, label=part, color=COLOURS[part])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, r in enumerate(rows):
        ax.text(i, bottom[i], f"${r['total']:,.0f}", ha="center", va="bottom", fontsize=9)
    bounds = {
        r["fleet"]: r["total"] for r in report["table1"] if r["scenario"] == "lower bound (LP)"
    }
    for i, r in enumerate(rows):
        if r["scenario"] == "frugal plan" and r["fleet"] in bounds:
            ax.plot([i - 0.4, i + 0.4], [bounds[r["fleet"]]] * 2, "k--", lw=1.5)
            ax.text(i + 0.42, bounds[r["fleet"]], "LP bound", fontsize=8, va="center")
    ax.axhline(PAPER["baseline"], color="grey", ls=":", lw=1)
    ax.axhline(PAPER["optimised"], color="grey", ls=":", lw=1)
    ax.text(
        len(rows) - 0.5, PAPER["baseline"], "paper baseline", fontsize=8, ha="right", va="bottom"
    )
    ax.text(
        len(rows) - 0.5, PAPER["optimised"], "paper optimised", fontsize=8, ha="right", va="bottom"
    )
    ax.set_ylabel("US$ per month")
    ax.set_title("Table I — monthly cost by Eq. (1) component")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ablation_chart(report: dict[str, Any], path: Path) -> Path:
    """Extra monthly cost when each technique of the plan is switched off."""
    plt = _plt()
    fleets = list(report["plan"])
    fig, axes = plt.subplots(1, len(fleets), figsize=(6 * len(fleets), 5), squeeze=False)
    for ax, fleet in zip(axes[0], fleets, strict=True):
        rows = [r for r in report["table3"] if r["fleet"] == fleet]
        rows.sort(key=lambda r: r["delta"])
        names = [r["technique"] + ("" if r["in_plan"] else " (on)") for r in rows]
        colours = ["#c44e52" if r["in_plan"] else "#999999" for r in rows]
        ax.barh(names, [r["delta"] for r in rows], color=colours)
        ax.set_title(f"{fleet}: switching off costs (US$/month)")
        ax.axvline(0, color="black", lw=0.8)
    fig.suptitle("Table III — ablation (grey: left off by the plan; bar = cost of switching it on)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sensitivity_chart(report: dict[str, Any], path: Path) -> Path:
    """Tornado chart of the plan's saving across each parameter's range."""
    plt = _plt()
    fleets = list(report["plan"])
    fig, axes = plt.subplots(1, len(fleets), figsize=(7 * len(fleets), 6), squeeze=False)
    for ax, fleet in zip(axes[0], fleets, strict=True):
        rows = [r for r in report["sensitivity"] if r["fleet"] == fleet]
        if not rows:
            continue
        saving = next(
            r["saving"]
            for r in report["table1"]
            if r["fleet"] == fleet and r["scenario"] == "frugal plan"
        )
        rows.sort(key=lambda r: abs(r["saving_high"] - r["saving_low"]))
        for i, r in enumerate(rows):
            lo, hi = r["saving_low"] * 100, r["saving_high"] * 100
            ax.barh(i, lo - saving * 100, left=saving * 100, color="#4c72b0")
            ax.barh(i, hi - saving * 100, left=saving * 100, color="#dd8452")
        ax.set_yticks(range(len(rows)), [r["parameter"] for r in rows], fontsize=8)
        ax.axvline(saving * 100, color="black", lw=0.8)
        ax.axvline(PAPER["saving"] * 100, color="grey", ls=":", lw=1)
        ax.set_xlabel("saving vs baseline, % (blue: low end, orange: high end; dotted: paper)")
        ax.set_title(f"{fleet}")
    fig.suptitle("Sensitivity of the saving")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timeline_chart(study: Study, path: Path, days: int = 3) -> Path:
    """The first days in simulated time: cost per step, replicas and routing weights."""
    plt = _plt()
    fleets = list(study.fleets)
    fig, axes = plt.subplots(3, len(fleets), figsize=(7 * len(fleets), 8), squeeze=False)
    for col, fleet in enumerate(fleets):
        fs = study.fleets[fleet]
        n = min(len(fs.plan.step_cost), days * 24 * 60 // study.workload.volume.step_minutes)
        hours = [i * study.workload.volume.step_minutes / 60 for i in range(n)]
        ax = axes[0][col]
        ax.plot(hours, fs.baseline.step_cost[:n], label="baseline")
        ax.plot(hours, fs.plan.step_cost[:n], label="frugal plan")
        ax.set_title(f"{fleet}: US$ per step")
        ax.legend()
        ax = axes[1][col]
        for tier, series in fs.plan.replicas.items():
            ax.step(hours, series[:n], where="post", label=tier)
        ax.set_title("replicas (self-hosted tiers)")
        if fs.plan.replicas:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no GPUs: managed API", ha="center", va="center")
            ax.set_axis_off()
        ax = axes[2][col]
        for tier, series in fs.plan.weights.items():
            ax.plot(hours, series[:n], label=tier)
        ax.set_title("routing weights (auto-reroute)")
        ax.set_xlabel("simulated hours")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
