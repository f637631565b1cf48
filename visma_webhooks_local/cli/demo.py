"""``visma-webhooks demo``: the whole pipeline end to end on the embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from visma_webhooks_local.cli.app import app, console


@app.command()
def demo(
    keep_logs: Annotated[bool, typer.Option(help="Keep the stack's output and function logs.")] = False,
) -> None:
    """Start the local stack, send every sample signed, and show what happened to each notification."""
    from visma_webhooks_local.demo import run

    wide = console if console.is_terminal else Console(highlight=False, width=max(console.width, 170))
    raise typer.Exit(run(wide, keep_logs=keep_logs))
