"""``visma-webhooks status``: queue depths, the oldest message, notifications by outcome."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from visma_webhooks_local.cli.app import Region, StackName, StateFile, app, console, target
from visma_webhooks_local.cli.rendering import age, outcomes_table, queues_table


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    stack_name: StackName = None,
    region: Region = None,
    state_file: StateFile = None,
) -> None:
    """Queue and DLQ depths, the age of the oldest message, and notifications by outcome."""
    from visma_webhooks_local.ops import status as do_status

    result = do_status(target(stack_name, region, state_file))
    if as_json:
        console.print_json(json.dumps(asdict(result), default=str))
        return
    console.print(queues_table(result))
    console.print(outcomes_table(result))
    if result.oldest_retrying is not None:
        console.print(
            f"oldest notification still being retried: first seen {age(result.oldest_retrying)} ago"
        )
