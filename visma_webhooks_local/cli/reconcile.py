"""``visma-webhooks reconcile``: one reconciliation pass now, on the local stack or a deployed one."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from visma_webhooks_local.cli.app import Region, StackName, StateFile, app, console, err, fail, log_target
from visma_webhooks_local.stack.state import StackError, state_path

STOP_STYLES = {"done": "green", "budget": "magenta", "time": "yellow", "pages": "yellow", "error": "red"}


def invoker(stack_name: str | None, region: str | None, state_file: Any) -> Any:
    """The stack's reconciler, ready to invoke."""
    from visma_webhooks_local.reconciling import local_invoker, stack_invoker

    try:
        if stack_name:
            return stack_invoker(stack_name, region)
        return local_invoker(state_file, log_target(None, state_path(state_file)))
    except StackError as exc:
        raise fail(str(exc)) from None


def runs_table(runs: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("tenant", "entity", "stopped", "pages", "listed", "enqueued", "missed", "watermark"):
        table.add_column(
            column, justify="right" if column in ("pages", "listed", "enqueued", "missed") else "left"
        )
    for run in runs:
        stop = str(run.get("stop"))
        watermark = (run.get("cursor") or {}).get("watermark") or "-"
        table.add_row(
            escape(str(run["tenant_id"])),
            run["entity"],
            f"[{STOP_STYLES.get(stop, 'white')}]{stop}[/]",
            str(run["pages"]),
            str(run["listed"]),
            str(run["enqueued"]),
            str(run["missed"]),
            watermark,
        )
    return table


@app.command()
def reconcile(
    tenant: Annotated[
        list[str] | None,
        typer.Option(metavar="ID", help="Only this tenant (repeatable).", show_default="all"),
    ] = None,
    entity: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Only this entity (repeatable).", show_default="the configured ones"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """Run the ReconcilerFunction once now: find the changes no webhook delivered and enqueue them."""
    event: dict[str, Any] = {}
    if tenant:
        event["tenants"] = list(tenant)
    if entity:
        event["entities"] = list(entity)
    try:
        result = invoker(stack_name, region, state_file)(event)
    except (StackError, ValueError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(result, default=str))
        return
    runs = result.get("runs", [])
    console.print(runs_table(runs, f"Reconciled {len(result.get('tenants', []))} tenant(s)"))
    missed = sum(r["missed"] for r in runs)
    console.print(
        f"{missed} change(s) no webhook had delivered, {sum(r['enqueued'] for r in runs)} enqueued, "
        f"{sum(r['calls'] for r in runs)} list call(s)"
    )
    for run in runs:
        if run.get("error"):
            err.print(f"[red]{escape(run['tenant_id'])} {run['entity']}:[/] {escape(str(run['error']))}")
    if any(r["stop"] == "error" for r in runs):
        raise typer.Exit(1)
