"""``visma-webhooks backfill``: the initial sync, through the same path as webhooks, resumable.

It invokes the ReconcilerFunction for one stretch of the backfill at a time (a page on
the local stack, up to 20 on a deployed one) and shows the pages read, the resources
listed (against the list's ``totalCount``, with the time left at this pace) and enqueued,
and what Visma's budget allows: the processor fetches each enqueued
resource once, so the fetches need about ``enqueued / (background calls per window)``
windows. Interrupted (Ctrl-C, a crash), it continues where it stopped when run again;
run again after it finished, it enqueues only what handlers have not received.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from visma_webhooks.domain.budgets import BACKGROUND_HEADROOM, BudgetSettings
from visma_webhooks.domain.ordering import normalise
from visma_webhooks.domain.reconciling import ENTITIES
from visma_webhooks_local.cli.app import Region, StackName, StateFile, app, console, fail
from visma_webhooks_local.cli.reconcile import invoker, runs_table
from visma_webhooks_local.stack.state import StackError

MAX_BUDGET_WAIT = 60.0  # seconds slept at a time while the budget refills (Ctrl-C stops; run again resumes)


def eta(enqueued: int, rate_limit: dict[str, Any] | None) -> str:
    """How long the processor's fetches of ``enqueued`` resources take within the background budget."""
    limit = (rate_limit or {}).get("limit") or BudgetSettings().assumed_limit
    per_window = BudgetSettings().allowed(int(limit)) * (1 - BACKGROUND_HEADROOM)
    hours = enqueued / per_window if per_window else 0.0
    left = (rate_limit or {}).get("remaining")
    budget = f"budget {left}/{limit} left" if left is not None else f"budget ~{limit}/window"
    return f"{budget}; fetches need ~{hours:.1f} window(s)"


@app.command()
def backfill(
    tenant: Annotated[str, typer.Option(metavar="ID", help="The tenant to sync.")],
    entity: Annotated[str, typer.Option(metavar="NAME", help=f"One of: {', '.join(ENTITIES)}.")],
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DATE", help="Only records changed since (ISO 8601).", show_default="the beginning"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="List and count what would be enqueued; enqueue nothing.")
    ] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """Walk an entity's list and enqueue every record handlers have not received (resumable, idempotent)."""
    if entity not in ENTITIES:
        raise fail(f"unknown entity {entity!r}: one of {', '.join(ENTITIES)}")
    start = normalise(since) if since else None
    if since and start is None:
        raise fail(f"--since {since!r} is not an ISO 8601 date or time")
    invoke = invoker(stack_name, region, state_file)
    request: dict[str, Any] = {"tenant": tenant, "entity": entity, "since": start, "dry_run": dry_run}
    request["max_pages"] = 10_000 if dry_run else (20 if stack_name else 1)
    verb = "Counting" if dry_run else "Backfilling"
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=20),
        TimeRemainingColumn(),
        TextColumn(
            "pages {task.fields[pages]}  resources {task.fields[listed]}  enqueued {task.fields[enqueued]}"
        ),
        TextColumn("[dim]{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(
            f"{verb} {entity} of {tenant}", total=None, pages=0, listed=0, enqueued=0, detail=""
        )
        run = _loop(invoke, request, progress, task)
    console.print(runs_table([run], "Dry run: nothing enqueued" if dry_run else "Backfill"))
    if run["stop"] in ("error", "conflict"):
        raise fail(str(run.get("error") or "another backfill of this entity is running"))
    if run["in_pass"]:
        console.print("[yellow]interrupted: run the same command again to resume[/]")
        raise typer.Exit(130)


def _loop(invoke: Any, request: dict[str, Any], progress: Progress, task: Any) -> dict[str, Any]:
    run: dict[str, Any] = {}
    try:
        while True:
            result = invoke({"backfill": request})
            run = result["runs"][0]
            cursor = run["cursor"]
            progress.update(
                task,
                total=run.get("total"),  # Visma's totalCount of the list, where it gives one
                completed=cursor["listed"],
                pages=cursor["pages"],
                listed=cursor["listed"],
                enqueued=cursor["enqueued"],
                detail=eta(cursor["enqueued"], result.get("rate_limit")),
            )
            if not run["in_pass"] or run["stop"] in ("error", "conflict") or request["dry_run"]:
                return run
            if run["stop"] == "budget":
                wait = min(MAX_BUDGET_WAIT, float(run.get("retry_after") or 1.0))
                progress.update(task, detail=f"waiting {wait:.0f} s for Visma's budget")
                time.sleep(wait)
    except KeyboardInterrupt:
        return run or {
            "tenant_id": request["tenant"],
            "entity": request["entity"],
            "stop": "time",
            "pages": 0,
            "listed": 0,
            "enqueued": 0,
            "missed": 0,
            "in_pass": True,
            "cursor": {},
        }
    except StackError as exc:
        raise fail(escape(str(exc))) from None
