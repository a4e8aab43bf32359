"""``python -m frugal.enginesim``: serve a simulated vLLM engine from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer
from pydantic import ValidationError

from frugal.enginesim.config import SimConfig

app = typer.Typer(
    help="A simulated vLLM OpenAI server for tests and demos (no GPU, no model).",
    add_completion=False,
)

DEFAULT = SimConfig()


def _help(field: str) -> str:
    """The option's help is the config field's docstring, so the two never drift apart."""
    return SimConfig.model_fields[field].description or ""


@app.command()
def serve(
    *,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    model: Annotated[
        str, typer.Option("--model", "--served-model-name", help=_help("model"))
    ] = DEFAULT.model,
    ttft: Annotated[
        float, typer.Option("--ttft-seconds", "--ttft", help=_help("ttft_seconds"))
    ] = DEFAULT.ttft_seconds,
    tokens_per_second: Annotated[
        float, typer.Option(help=_help("tokens_per_second"))
    ] = DEFAULT.tokens_per_second,
    max_num_seqs: Annotated[int, typer.Option(help=_help("max_num_seqs"))] = DEFAULT.max_num_seqs,
    failure_rate: Annotated[float, typer.Option(help=_help("failure_rate"))] = DEFAULT.failure_rate,
    quality: Annotated[float, typer.Option(help=_help("quality"))] = DEFAULT.quality,
    echo: Annotated[bool, typer.Option("--echo/--no-echo", help=_help("echo"))] = DEFAULT.echo,
    answer_tokens: Annotated[
        int, typer.Option(help=_help("answer_tokens"))
    ] = DEFAULT.answer_tokens,
    startup_delay: Annotated[
        float,
        typer.Option(
            "--startup-delay-seconds", "--startup-delay", help=_help("startup_delay_seconds")
        ),
    ] = DEFAULT.startup_delay_seconds,
    seed: Annotated[int, typer.Option(help=_help("seed"))] = DEFAULT.seed,
    embedding_dim: Annotated[
        int, typer.Option(help=_help("embedding_dim"))
    ] = DEFAULT.embedding_dim,
    healthy: Annotated[
        bool, typer.Option("--healthy/--unhealthy", help=_help("healthy"))
    ] = DEFAULT.healthy,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
) -> None:
    """Serve vLLM's OpenAI endpoints, /health, /metrics and /sim/config until interrupted."""
    from frugal.enginesim.server import run

    try:
        config = SimConfig(
            model=model,
            ttft_seconds=ttft,
            tokens_per_second=tokens_per_second,
            max_num_seqs=max_num_seqs,
            failure_rate=failure_rate,
            quality=quality,
            echo=echo,
            answer_tokens=answer_tokens,
            startup_delay_seconds=startup_delay,
            seed=seed,
            embedding_dim=embedding_dim,
            healthy=healthy,
        )
    except ValidationError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(config, host, port))


if __name__ == "__main__":
    app()
