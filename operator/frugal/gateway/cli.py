"""``frugal gateway``: run the data plane from a config file (no cluster needed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="The OpenAI-compatible gateway: tier routing, caching, scale-from-zero, metering.",
    add_completion=False,
    no_args_is_help=True,
)


@app.command()
def serve(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="Gateway config YAML; re-read on change and SIGHUP."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
) -> None:
    """Serve /v1/* , /healthz and /metrics until interrupted."""
    from pydantic import ValidationError

    from frugal.gateway.config import load_config
    from frugal.gateway.server import run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        load_config(config)
    except (OSError, ValueError, ValidationError) as err:
        typer.echo(f"{config}: {err}", err=True)
        raise typer.Exit(2) from err
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(config, host, port))


@app.command()
def check(
    config: Annotated[Path, typer.Option("--config", "-c", help="Gateway config YAML.")],
) -> None:
    """Validate a config file and print the model names it serves."""
    from pydantic import ValidationError

    from frugal.gateway.config import load_config

    try:
        cfg = load_config(config)
    except (OSError, ValueError, ValidationError) as err:
        typer.echo(f"{config}: {err}", err=True)
        raise typer.Exit(2) from err
    for rp in cfg.routing_policies:
        tiers = ", ".join(t.name for t in rp.spec.tiers)
        typer.echo(f"{rp.spec.model_name}: RoutingPolicy {rp.metadata.name} ({tiers})")
    for name, up in cfg.upstreams.items():
        typer.echo(f"{up.served_name}: endpoint {name}")


if __name__ == "__main__":
    app()
