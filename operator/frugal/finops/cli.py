"""``frugal advise`` and ``frugal report``."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, help="FinOps: advice and live spend.", no_args_is_help=True)


@app.command()
def advise(  # noqa: PLR0917 - typer maps every parameter to an option
    queries_per_day: Annotated[float, typer.Option("--queries-per-day", "-q", min=1)] = 50_000,
    latency_budget: Annotated[
        float, typer.Option("--latency-budget", help="Acceptable p95 latency, seconds.")
    ] = 10.0,
    quality_tolerance: Annotated[
        float,
        typer.Option("--quality-tolerance", help="Quality you may lose vs frontier (0.05 = 5%)."),
    ] = 0.05,
    pattern: Annotated[str, typer.Option(help="steady, diurnal or bursty.")] = "diurnal",
    domains: Annotated[int, typer.Option(min=1, help="Distinct subject domains.")] = 1,
    workload: Annotated[
        Path | None, typer.Option("--workload", help="Base workload YAML (default: case study).")
    ] = None,
    prices: Annotated[Path | None, typer.Option("--prices")] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate/--no-simulate", help="Attach simulated savings.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recommend techniques in the order of the paper's FinOps flowchart, with savings."""
    from frugal.finops.advise import Pattern, Profile, simulate_profile, to_rows
    from frugal.finops.advise import advise as run_advise
    from frugal.sim.prices import load_prices
    from frugal.sim.workload import load_workload

    try:
        kind = Pattern(pattern)
    except ValueError:
        raise typer.BadParameter("pattern must be steady, diurnal or bursty") from None
    profile = Profile(queries_per_day, latency_budget, quality_tolerance, kind, domains)
    sim = None
    if simulate:
        sim = simulate_profile(profile, load_workload(workload), load_prices(prices))
    rows = to_rows(run_advise(profile, sim))
    if as_json:
        typer.echo(
            json.dumps(
                {"profile": vars(profile) | {"pattern": kind.value}, "advice": rows}, indent=2
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="frugal advise — the paper's FinOps flowchart, in order")
    for col in ("step", "technique", "do it", "simulated saving", "why", "frugal fields"):
        table.add_column(col)
    for r in rows:
        saving = r["saving_usd_per_month"]
        table.add_row(
            r["step"],
            r["technique"],
            "yes" if r["recommended"] else "no",
            "—" if saving is None else f"{'-' if saving < 0 else ''}${abs(saving):,.0f}/mo",
            r["why"],
            "\n".join(r["fields"]),
        )
    Console(width=180).print(table)


def _api_client(kubeconfig: Path | None, context: str | None) -> Any:
    import kubernetes
    from kubernetes.client import ApiClient

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=config)
        return ApiClient(config)
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
    return kubernetes.config.new_client_from_config(config_file=path, context=context)


def spend_report(
    api: Any,
    namespace: str | None,
    by: list[str],
    prometheus: str | None = None,
    window: str = "1d",
) -> dict[str, Any]:
    """Read the cluster (and Prometheus) and group the spend; the JSON ``report`` prints."""
    from frugal.finops import collect
    from frugal.finops.spend import aggregate, endpoint_spend, routing_tiers, totals

    endpoints = collect.read_endpoints(api, namespace)
    tiers = routing_tiers(collect.read_routing_policies(api, namespace))
    rows = [endpoint_spend(e, tiers) for e in endpoints]
    gateway = saved = None
    if prometheus:
        gateway = collect.gateway_per_day(
            prometheus, collect.COST_METRIC, by, window=window, namespace=namespace
        )
        saved = collect.gateway_per_day(
            prometheus, collect.SAVED_METRIC, by, window=window, namespace=namespace
        )
    groups = aggregate(rows, by, gateway, saved)
    return {
        "by": by,
        "window": window if prometheus else None,
        "groups": [g.row() for g in groups],
        "totals": totals(groups),
        "endpoints": [vars(r) for r in rows],
    }


@app.command()
def report(  # noqa: PLR0917 - typer maps every parameter to an option
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="One namespace (default: all).")
    ] = None,
    by: Annotated[
        str, typer.Option(help="Group by these, comma-separated.")
    ] = "team,project,environment,tier",
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig")] = None,
    context: Annotated[str | None, typer.Option("--context")] = None,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="Prometheus URL for gateway spend/savings.")
    ] = None,
    window: Annotated[str, typer.Option(help="Prometheus window, e.g. 1d or 6h.")] = "1d",
    as_csv: Annotated[bool, typer.Option("--csv")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG bar chart here.")] = None,
) -> None:
    """Live spend per team/project/environment/tier: $/day, $/1M tokens, cache savings, burn."""
    keys = [k.strip() for k in by.split(",") if k.strip()]
    with _api_client(kubeconfig, context) as api:
        data = spend_report(api, namespace, keys, prometheus, window)
    if plot is not None:
        spend_chart(data, plot)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    elif as_csv:
        typer.echo(to_csv(data["groups"]), nl=False)
    else:
        render_report(data)
    if plot is not None:
        typer.echo(f"wrote {plot}", err=as_json or as_csv)


COLUMNS = (
    "usd_per_day",
    "gpu_usd_per_day",
    "api_usd_per_day",
    "usd_per_1m_tokens",
    "cache_saved_usd_per_day",
    "budget_burn",
)


def to_csv(groups: list[dict[str, Any]]) -> str:
    if not groups:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(groups[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in g.items()} for g in groups)
    return buf.getvalue()


def render_report(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def money(v: float | None) -> str:
        return "—" if v is None else f"${v:,.2f}"

    table = Table(title="frugal report — live spend")
    for col in (*data["by"], "endpoints", *COLUMNS):
        table.add_column(col, justify="left" if col in data["by"] else "right")
    for g in data["groups"]:
        burn = g["budget_burn"]
        table.add_row(
            *(g[k] or "—" for k in data["by"]),
            str(g["endpoints"]),
            *(money(g[c]) for c in COLUMNS[:-1]),
            "—" if burn is None else f"{burn:.0%}",
        )
    Console(width=160, file=sys.stdout).print(table)
    t = data["totals"]
    saved = money(t["cache_saved_usd_per_day"])
    typer.echo(f"total {money(t['usd_per_day'])}/day; cache saved {saved}/day")


def spend_chart(data: dict[str, Any], path: Path) -> Path:
    """Horizontal bars of $/day per group, with cache savings beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = data["groups"]
    labels = ["/".join(g[k] or "—" for k in data["by"]) for g in groups] or ["(none)"]
    spend = [g["usd_per_day"] or 0.0 for g in groups] or [0.0]
    saved = [g["cache_saved_usd_per_day"] or 0.0 for g in groups] or [0.0]
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.5 * len(labels)))
    ys = range(len(labels))
    ax.barh([y + 0.2 for y in ys], spend, height=0.4, label="spend $/day", color="#c44e52")
    ax.barh([y - 0.2 for y in ys], saved, height=0.4, label="cache saved $/day", color="#55a868")
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.set_xlabel("US$ per day")
    ax.set_title("frugal report — spend by " + ", ".join(data["by"]))
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
