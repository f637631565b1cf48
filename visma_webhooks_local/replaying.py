"""Replay: DLQ messages back to the queue, bodies unchanged (``visma-webhooks replay``).

Messages are filtered by their ``event`` and ``tenant_id`` attributes, never by parsing
their bodies. Each copy goes back in its tenant's fair-queue group (``MessageGroupId``
from the ``tenant_id`` attribute, else the group it had, else ``unknown``), so that a
replayed backlog of one tenant does not delay the others.
"""

from __future__ import annotations

import fnmatch
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.domain.queueing import (
    FAILURES_ATTRIBUTE,
    FORCE_ATTRIBUTE,
    UNKNOWN_GROUP,
    WAITS_ATTRIBUTE,
    group_id,
)
from visma_webhooks.domain.queueing import message_attribute as attribute
from visma_webhooks_local.ops import MAX_BATCH, release


@dataclass
class ReplayResult:
    run_id: str
    dry_run: bool
    examined: int = 0
    matched: int = 0
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    by_event: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def matches(message: dict[str, Any], event_glob: str | None, tenant: str | None) -> bool:
    """Filter on the ``event`` and ``tenant_id`` attributes (a message without them does not match a filter)."""
    if event_glob is not None:
        event = attribute(message, "event")
        if event is None or not fnmatch.fnmatchcase(event, event_glob):
            return False
    return tenant is None or attribute(message, "tenant_id") == tenant


def replay(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    *,
    event_glob: str | None = None,
    tenant: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    hold_seconds: int = 60,
    wait_seconds: int = 1,
    progress: Callable[[ReplayResult], None] | None = None,
) -> ReplayResult:
    """Move DLQ messages back to the queue: receive → send (body unchanged) → delete.

    A message is deleted from the DLQ only after the queue acknowledged its copy, so a
    stop midway can leave a copy in both (the processor's dedup absorbs it) but never
    loses one. Messages that the filters or the limit skip, and every message of a dry
    run, are held invisible while the DLQ is scanned and made visible again at the end.
    With ``force``, each copy carries the ``force`` attribute (this run's id), so that the
    processor runs it again even if it completed before.
    """
    result = ReplayResult(run_id=str(uuid.uuid4()), dry_run=dry_run)
    held: dict[str, str] = {}  # message id → receipt handle, to make visible again
    seen: set[str] = set()
    try:
        while limit is None or result.matched < limit:
            messages = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=MAX_BATCH,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=hold_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            for m in messages:
                if m["MessageId"] in seen:
                    held[m["MessageId"]] = m["ReceiptHandle"]  # back after its hold ended: hold it again
            if not fresh:
                break
            to_move = []
            for m in fresh:
                seen.add(m["MessageId"])
                result.examined += 1
                if matches(m, event_glob, tenant) and (limit is None or result.matched < limit):
                    result.matched += 1
                    result.by_event[attribute(m, "event") or "(quarantined)"] += 1
                    if dry_run:
                        held[m["MessageId"]] = m["ReceiptHandle"]
                    else:
                        to_move.append(m)
                else:
                    result.skipped += 1
                    held[m["MessageId"]] = m["ReceiptHandle"]
            if to_move:
                _move(sqs, queue_url, dlq_url, to_move, result, force, held)
            if progress is not None:
                progress(result)
    finally:
        release(sqs, dlq_url, list(held.values()))
    return result


def _group(message: dict[str, Any]) -> str:
    """The fair-queue group of a replayed copy: its tenant's (messages sent before groups have none)."""
    tenant = attribute(message, "tenant_id")
    if tenant:
        return group_id(tenant)
    return (message.get("Attributes") or {}).get("MessageGroupId") or UNKNOWN_GROUP


def _move(
    sqs: Any,
    queue_url: str,
    dlq_url: str,
    messages: Sequence[dict[str, Any]],
    result: ReplayResult,
    force: bool,
    held: dict[str, str],
) -> None:
    entries = []
    for i, m in enumerate(messages):
        attributes = {  # a replay is a fresh start: no waits or failures carried
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
            for name, value in (m.get("MessageAttributes") or {}).items()
            if name not in (WAITS_ATTRIBUTE, FAILURES_ATTRIBUTE)
        }
        if force:
            attributes[FORCE_ATTRIBUTE] = {"DataType": "String", "StringValue": result.run_id}
        entries.append(
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                "MessageAttributes": attributes,
                "MessageGroupId": _group(m),
            }
        )
    try:
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed_ids = {f["Id"]: f.get("Message", f.get("Code", "")) for f in response.get("Failed", [])}
    except (BotoCoreError, ClientError) as exc:
        failed_ids = {e["Id"]: str(exc) for e in entries}
    sent = []
    for i, m in enumerate(messages):
        if str(i) in failed_ids:
            result.failed += 1
            result.errors.append(f"{m['MessageId']}: {failed_ids[str(i)]}")
            held[m["MessageId"]] = m["ReceiptHandle"]  # stays on the DLQ, visible again at the end
        else:
            sent.append(m)
    if not sent:
        return
    deletes = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(sent)]
    try:
        response = sqs.delete_message_batch(QueueUrl=dlq_url, Entries=deletes)
        undeleted = {f["Id"] for f in response.get("Failed", [])}
    except (BotoCoreError, ClientError) as exc:
        undeleted = {d["Id"] for d in deletes}
        result.errors.append(f"DeleteMessageBatch: {exc}")
    for i, m in enumerate(sent):
        result.moved += 1
        if str(i) in undeleted:
            result.errors.append(f"{m['MessageId']}: replayed but still on the DLQ (dedup absorbs the copy)")
