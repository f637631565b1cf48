"""``visma-webhooks inspect``: the history of one notification and where it is now."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from visma_webhooks_local.cli.app import Region, StackName, StateFile, app, console, fail, target
from visma_webhooks_local.cli.rendering import found_line, handlers_table, history_table, inspection_panel


@app.command()
def inspect(
    notification_id: Annotated[str, typer.Argument(help="Visma's notification id.")],
    tenant: Annotated[
        str | None, typer.Option(help="The tenant (Visma's ids are unique per tenant); default: any.")
    ] = None,
    peek_queue: Annotated[
        bool, typer.Option(help="Also search the main queue (a receive counts towards maxReceiveCount).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """The history of one notification: received, attempts, handlers, feedback, and where it is now."""
    from visma_webhooks_local.ops import inspect as do_inspect

    result = do_inspect(
        target(stack_name, region, state_file), notification_id, tenant_id=tenant, peek_queue=peek_queue
    )
    if as_json:
        console.print_json(json.dumps(asdict(result), default=str))
    if not result.found:
        raise fail(f"no notification {notification_id!r}: {result.where}")
    if as_json:
        return
    record = result.record
    console.print(inspection_panel(notification_id, record, result.where))
    if record is not None:
        for table in (handlers_table(record), history_table(record)):
            if table is not None:
                console.print(table)
    for found in result.in_dlq + result.in_queue:
        console.print(found_line(found))
    if result.others:
        tenants = ", ".join(sorted(r.tenant_id or "?" for r in result.others))
        console.print(f"[yellow]other tenants have a notification {notification_id!r}: {tenants}[/]")
        console.print("[dim]narrow it with --tenant[/]")
