"""``visma-webhooks status``: queue depths, the oldest message, notifications by outcome, missed webhooks."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from visma_webhooks_local.cli.app import Region, StackName, StateFile, app, console, target
from visma_webhooks_local.cli.rendering import age, outcomes_table, queues_table

if TYPE_CHECKING:
    from visma_webhooks_local.reconciling import CursorRow


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """Queue and DLQ depths, the age of the oldest message, notifications by outcome, and the
    changes reconciliation found that no webhook delivered (per tenant and entity)."""
    from visma_webhooks_local.ops import status as do_status
    from visma_webhooks_local.reconciling import cursors

    found = target(stack_name, region, state_file)
    result = do_status(found)
    rows = cursors(found)
    if as_json:
        console.print_json(
            json.dumps(asdict(result) | {"reconciliation": [asdict(r) for r in rows]}, default=str)
        )
        return
    console.print(queues_table(result))
    console.print(outcomes_table(result))
    if rows:
        console.print(reconciliation_table(rows))
    if result.oldest_retrying is not None:
        console.print(
            f"oldest notification still being retried: first seen {age(result.oldest_retrying)} ago"
        )


def reconciliation_table(rows: list[CursorRow]) -> Table:
    """Per tenant and entity: missed webhooks found (all time, last pass), the watermark, a pass under way."""
    table = Table(
        title="Reconciliation (missed webhooks: changes found that no webhook delivered)",
        title_justify="left",
    )
    for column in ("kind", "tenant", "entity", "missed", "last pass", "watermark", "under way"):
        table.add_column(column, justify="right" if column in ("missed", "last pass") else "left")
    for row in rows:
        c = row.cursor
        table.add_row(
            row.kind,
            escape(row.tenant_id),
            row.entity,
            str(c.missed) if row.kind == "reconcile" else "-",
            str(c.last_missed) if row.kind == "reconcile" else "-",
            c.watermark or "-",
            f"page {c.page}, {c.enqueued} enqueued" if c.in_pass else "-",
        )
    return table
