"""``visma-webhooks process``: the processor beside a local stack started with ``--no-processor``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TextIO

import typer

from visma_webhooks_local.cli.app import FunctionLogs, Signals, StateFile, app, console, fail, log_target
from visma_webhooks_local.cli.local import print_records
from visma_webhooks_local.stack.poller import join_all
from visma_webhooks_local.stack.state import StackError, StackState, state_path


@app.command()
def process(
    pollers: Annotated[int, typer.Option(min=1, metavar="N", help="Concurrent processor invocations.")] = 1,
    processor_timeout: Annotated[
        float | None,
        typer.Option(min=1, metavar="SECONDS", help="Processor timeout.", show_default="the local stack's"),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No line per notification.")] = False,
    state_file: StateFile = None,
    function_logs: FunctionLogs = None,
) -> None:
    """Run the processor against a running local stack (started with --no-processor).

    It can be stopped or killed at any point and started again: a batch it did not
    finish returns to the queue after its visibility timeout.
    """
    from visma_webhooks_local.stack.local import attach

    path = state_path(state_file)
    state = _running(path)
    stream = _open_log(log_target(function_logs, path))
    signals = Signals().install()
    running = attach(
        state,
        pollers=pollers,
        stop=signals.stop,
        report=None if quiet else print_records,
        log_stream=stream,
        processor_timeout=processor_timeout,
    )
    console.print(f"processing {state.queue_url} with {len(running)} poller(s); Ctrl-C stops", soft_wrap=True)
    while not signals.stop.wait(1.0):
        if not path.exists() or not state.alive:
            console.print("[yellow]the local stack has stopped[/]")
            signals.stop.set()
            break
    clean = join_all(running, float(state.processor.get("timeout", 30)) + 2, signals.abandon)
    if stream is not None:
        stream.close()
    console.print("[dim]stopped[/]" + ("" if clean else " [yellow](a batch was abandoned)[/]"))


def _running(path: Path) -> StackState:
    try:
        state = StackState.load(path)
    except StackError as exc:
        raise fail(str(exc)) from None
    if not state.alive:
        raise fail(f"the local stack (pid {state.pid}) is not running")
    return state


def _open_log(path: Path | None) -> TextIO | None:
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8", buffering=1)  # closed when processing ends
