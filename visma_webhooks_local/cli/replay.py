"""``visma-webhooks replay``: DLQ messages back to the queue, with a progress bar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from visma_webhooks_local.cli.app import Region, StackName, StateFile, app, console, err, target
from visma_webhooks_local.cli.rendering import replay_table

if TYPE_CHECKING:
    from visma_webhooks_local.ops import Target
    from visma_webhooks_local.replaying import ReplayResult


@app.command()
def replay(
    dry_run: Annotated[bool, typer.Option(help="Show what would move; move nothing.")] = False,
    event: Annotated[
        str | None, typer.Option(metavar="GLOB", help="Only events matching this glob (customer_*).")
    ] = None,
    tenant: Annotated[str | None, typer.Option(metavar="ID", help="Only this tenant id.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", help="Move at most this many.")] = None,
    force: Annotated[bool, typer.Option(help="Process even notifications that completed before.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """Move notifications from the DLQ back to the queue (receive → send → delete; bodies unchanged)."""
    from visma_webhooks_local.replaying import replay as do_replay

    found = target(stack_name, region, state_file)
    depth = _dlq_depth(found)
    total = min(depth, limit) if limit else depth
    verb = "Examining" if dry_run else "Replaying"
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(f"{verb} the DLQ", total=max(total, 1), detail="")

        def update(result: ReplayResult) -> None:
            done = result.matched if dry_run else result.moved
            progress.update(
                task,
                completed=done,
                total=max(total, done, 1),
                detail=f"skipped {result.skipped}" + (f", failed {result.failed}" if result.failed else ""),
            )

        result = do_replay(
            found.sqs,
            found.dlq_url,
            found.queue_url,
            event_glob=event,
            tenant=tenant,
            limit=limit,
            dry_run=dry_run,
            force=force,
            progress=update,
        )
        update(result)
    console.print(replay_table(result, found.label, dry_run))
    if force and not dry_run:
        console.print(f"[dim]forced run id {result.run_id}[/]")
    for error in result.errors:
        err.print(f"[yellow]{escape(error)}[/]")
    if result.failed:
        raise typer.Exit(1)


def _dlq_depth(found: Target) -> int:
    attributes = found.sqs.get_queue_attributes(
        QueueUrl=found.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])
