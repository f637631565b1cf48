"""The ReconcilerFunction of a stack, invoked from the command line: ``reconcile``, ``backfill``, ``status``.

On the local stack the function is loaded in this process under the stack's environment
(its logs go to the functions' log file); on a deployed stack it is invoked through
Lambda by the name in the stack's ``ReconcilerFunctionName`` output, with the user's AWS
credentials. Either way the same code does the work, on the same cursors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.adapters.watermarks import DynamoDBCursorStore
from visma_webhooks.domain.reconciling import Cursor
from visma_webhooks_local.ops import Target
from visma_webhooks_local.stack import reconciler
from visma_webhooks_local.stack.state import StackError, StackState

Invoke = Callable[[Mapping[str, Any]], dict[str, Any]]
OUTPUT = "ReconcilerFunctionName"


def local_invoker(state_file: str | Path | None, log_file: Path | None) -> Invoke:
    """Invokes the local stack's reconciler in this process."""
    state = StackState.load(state_file)
    if not state.alive:
        raise StackError(f"the local stack (pid {state.pid}) is not running any more; start it again")
    stream = open(log_file, "a", encoding="utf-8", buffering=1) if log_file else None  # noqa: SIM115 - for the process
    module = reconciler.load(state, log_stream=stream)
    return lambda event: reconciler.invoke(module, event)


def stack_invoker(stack_name: str, region: str | None) -> Invoke:
    """Invokes a deployed stack's ReconcilerFunction through Lambda."""
    session = boto3.session.Session(region_name=region)
    try:
        stack = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        raise StackError(f"cannot read stack {stack_name}: {exc}") from None
    name = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}.get(OUTPUT)
    if not name:
        raise StackError(
            f"stack {stack_name} has no output {OUTPUT}: deploy the template with the reconciler"
        )
    client = session.client("lambda")

    def invoke(event: Mapping[str, Any]) -> dict[str, Any]:
        answer = client.invoke(FunctionName=name, Payload=json.dumps(dict(event)).encode())
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise StackError(
                f"{name} failed: {payload.get('errorMessage') if isinstance(payload, dict) else payload}"
            )
        return payload if isinstance(payload, dict) else {}

    return invoke


@dataclass(frozen=True)
class CursorRow:
    """One cursor as status shows it."""

    kind: str
    tenant_id: str
    service: str
    entity: str
    cursor: Cursor


def cursors(target: Target) -> list[CursorRow]:
    """Every reconciliation and backfill cursor of the stack (none without a table)."""
    if target.dynamodb is None or not target.table_name:
        return []
    rows = []
    for name, cursor in DynamoDBCursorStore(target.table_name, target.dynamodb).cursors().items():
        kind, rest = name.split("#", 1)
        tenant, service, entity = rest.rsplit("#", 2)
        rows.append(CursorRow(kind, tenant, service, entity, cursor))
    return sorted(rows, key=lambda r: (r.kind, r.tenant_id, r.entity))
