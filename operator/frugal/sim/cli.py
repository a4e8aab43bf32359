"""``frugal simulate``: the paper's case study (or any workload) replayed through frugal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False, help="Replay a workload through frugal's cost and policies."
)


@app.command()
def simulate(  # noqa: PLR0917 - typer maps every parameter to an option
    workload: Annotated[
        Path | None, typer.Option("--workload", "-w", help="Workload YAML (default: case study).")
    ] = None,
    prices: Annotated[
        Path | None, typer.Option("--prices", help="Prices YAML (default: shipped list prices).")
    ] = None,
    fleet: Annotated[
        list[str] | None, typer.Option("--fleet", help="api and/or self-hosted (default both).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the workload's seed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write PNG charts here.")] = None,
    sensitivity: Annotated[
        bool, typer.Option("--sensitivity/--no-sensitivity", help="Compute the envelope.")
    ] = True,
    workers: Annotated[
        int | None, typer.Option(help="Processes for independent runs (default: cores, ≤4).")
    ] = None,
) -> None:
    """Tables I-III, the LP lower bound and the sensitivity envelope, from simulated time."""
    from rich.console import Console

    from frugal.sim.fleets import FLEETS
    from frugal.sim.prices import load_prices
    from frugal.sim.render import render
    from frugal.sim.study import run_study
    from frugal.sim.tables import to_json
    from frugal.sim.workload import load_workload

    w = load_workload(workload)
    if seed is not None:
        w = w.model_copy(update={"seed": seed})
    unknown = set(fleet or ()) - set(FLEETS)
    if unknown:
        raise typer.BadParameter(f"unknown fleet(s) {sorted(unknown)}; use {', '.join(FLEETS)}")
    study = run_study(
        w, load_prices(prices), fleet or FLEETS, sensitivity=sensitivity, workers=workers
    )
    report = to_json(study)
    if plot is not None:
        from frugal.sim.plot import plot_all

        report["charts"] = [str(p) for p in plot_all(report, study, plot)]
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=False))
    else:
        render(report, Console(width=160))
        for chart in report.get("charts", []):
            typer.echo(f"wrote {chart}")
