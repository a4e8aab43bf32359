"""Tables I-III and the sensitivity envelope as rich terminal tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from frugal.sim.engine import COMPONENTS
from frugal.sim.tables import PAPER


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.0f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def render(report: dict[str, Any], console: Console) -> None:
    """Print every table of a ``tables.to_json`` report."""
    for part in (_table1, _table2, _table3, _bound, _sensitivity, _plans):
        part(report, console)


def _table1(report: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]{report['workload']}[/bold] — {report['queries_per_day']:,.0f} queries/day, "
        f"{report['days']} days, seed {report['seed']}, prices as of {report['prices_as_of']}"
    )
    t1 = Table(title="Table I — monthly cost by Eq. (1) component (US$)")
    for col in ("fleet", "scenario", *COMPONENTS, "total", "saving"):
        t1.add_column(col, justify="left" if col in ("fleet", "scenario") else "right")
    for r in report["table1"]:
        t1.add_row(
            r["fleet"],
            r["scenario"],
            *(_usd(r[c]) for c in COMPONENTS),
            _usd(r["total"]),
            _pct(r["saving"]),
        )
    t1.add_row(
        "paper",
        "headline (§V)",
        "",
        "",
        "",
        "",
        f"{_usd(PAPER['baseline'])} → {_usd(PAPER['optimised'])}",
        _pct(PAPER["saving"]),
    )
    console.print(t1)


def _table2(report: dict[str, Any], console: Console) -> None:
    t2 = Table(title="Table II — quality retention (frontier = 1), latency, cache hits")
    for col in (
        "fleet",
        "scenario",
        "quality",
        "vs baseline",
        "p50 s",
        "p95 s",
        "exact hits",
        "semantic hits",
        "false hits",
    ):
        t2.add_column(col, justify="left" if col in ("fleet", "scenario") else "right")
    for r in report["table2"]:
        t2.add_row(
            r["fleet"],
            r["scenario"],
            f"{r['quality']:.3f}",
            _pct(r["retention_vs_baseline"]),
            f"{r['p50_seconds']:.2f}",
            f"{r['p95_seconds']:.2f}",
            _pct(r["exact_hit_rate"]),
            _pct(r["semantic_hit_rate"]),
            f"{r['false_hit_rate']:.2%}",
        )
    console.print(t2)


def _table3(report: dict[str, Any], console: Console) -> None:
    t3 = Table(title="Table III — ablation: each technique switched off in turn (US$/month)")
    for col in (
        "fleet",
        "technique",
        "paper",
        "in plan",
        "monthly",
        "Δ vs plan",
        "quality",
        "p95 s",
    ):
        t3.add_column(
            col, justify="right" if col in ("monthly", "Δ vs plan", "quality", "p95 s") else "left"
        )
    for r in report["table3"]:
        t3.add_row(
            r["fleet"],
            r["technique"],
            r["paper"],
            "yes" if r["in_plan"] else "no (switched on)",
            _usd(r["monthly"]),
            f"{r['delta']:+,.0f}",
            f"{r['quality']:.3f}",
            f"{r['p95_seconds']:.2f}",
        )
    console.print(t3)


def _bound(report: dict[str, Any], console: Console) -> None:
    tb = Table(title="Lower bound — cheapest tier mix per class at the same quality")
    for col in ("fleet", "plan", "LP bound", "plan ÷ bound", "one tier per class", "LP mix"):
        tb.add_column(col)
    for fleet, b in report["bound"].items():
        if b is None:
            continue
        plan = next(
            r["total"]
            for r in report["table1"]
            if r["fleet"] == fleet and r["scenario"] == "frugal plan"
        )
        mix = "; ".join(
            f"{c}: " + ", ".join(f"{t} {s:.0%}" for t, s in m.items()) for c, m in b["mix"].items()
        )
        tb.add_row(
            fleet,
            _usd(plan),
            _usd(b["monthly"]),
            f"{b['plan_over_bound']:.2f}×",
            _usd(b["one_tier_monthly"]),
            mix,
        )
    console.print(tb)


def _sensitivity(report: dict[str, Any], console: Console) -> None:
    if report["sensitivity"]:
        ts = Table(title="Sensitivity — the plan's saving at each parameter's low and high end")
        for col in ("fleet", "parameter", "base", "low → saving", "high → saving"):
            ts.add_column(col)
        for r in report["sensitivity"]:
            ts.add_row(
                r["fleet"],
                r["parameter"],
                f"{r['base']:g}",
                f"{r['low']:g} → {r['saving_low']:.1%}",
                f"{r['high']:g} → {r['saving_high']:.1%}",
            )
        console.print(ts)


def _plans(report: dict[str, Any], console: Console) -> None:
    for fleet, p in report["plan"].items():
        console.print(
            f"[bold]{fleet}[/bold] plan: {', '.join(p['techniques'])}"
            + (f"; left off: {', '.join(p['left_off'])}" if p["left_off"] else "")
            + f"; final weights {p['final_weights']}"
            + (f"; GPUs {p['gpus']}" if p["gpus"] else "")
        )
