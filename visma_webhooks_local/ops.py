"""Operations on a stack's queues and outcome records: status and inspect (replay: :mod:`.replaying`).

They work on the local stack (found through its state file) and on a deployed stack
(its CloudFormation outputs, with the user's normal AWS credentials). They filter and
locate messages by their attributes (``event``, ``tenant_id``, ``notification_id``),
never by parsing bodies, and they never rewrite a body.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore, OutcomeRecord
from visma_webhooks.domain.outcomes import FINAL, RETRIED
from visma_webhooks.domain.queueing import message_attribute as attribute
from visma_webhooks_local.stack.state import StackError, StackState

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient

MAX_BATCH = 10


@dataclass
class Target:
    """The queues and table of one stack, with clients allowed to reach them."""

    label: str
    sqs: Any
    queue_url: str
    dlq_url: str
    dynamodb: Any = None
    table_name: str | None = None
    cloudwatch: Any = None  # a deployed stack: queue ages from CloudWatch
    local: bool = False

    @property
    def outcomes(self) -> DynamoDBOutcomeStore | None:
        if self.dynamodb is None or not self.table_name:
            return None
        return DynamoDBOutcomeStore(self.table_name, self.dynamodb, 0)


def local_target(state_file: str | Path | None = None) -> Target:
    """The local stack named by the state file."""
    state = StackState.load(state_file)
    if not state.alive:
        raise StackError(f"the local stack (pid {state.pid}) is not running any more; start it again")
    return Target(
        label=f"local stack at {state.aws_endpoint_url}",
        sqs=state.client("sqs"),
        queue_url=state.queue_url,
        dlq_url=state.dlq_url,
        dynamodb=state.client("dynamodb"),
        table_name=state.table_name,
        local=True,
    )


def stack_target(stack_name: str, region: str | None = None) -> Target:
    """A deployed stack: QueueUrl and DlqUrl from its outputs, the table from its resources."""
    session = boto3.session.Session(region_name=region)
    cfn = session.client("cloudformation")
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        raise StackError(f"cannot read stack {stack_name}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [k for k in ("QueueUrl", "DlqUrl") if k not in outputs]
    if missing:
        raise StackError(f"stack {stack_name} has no output {', '.join(missing)}")
    table = next((v for k, v in outputs.items() if k.endswith("TableName")), None)
    if table is None:
        with contextlib.suppress(BotoCoreError, ClientError):
            for resource in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]:
                if resource["ResourceType"] == "AWS::DynamoDB::Table":
                    table = resource["PhysicalResourceId"]
                    break
    return Target(
        label=f"stack {stack_name} ({session.region_name})",
        sqs=session.client("sqs"),
        queue_url=outputs["QueueUrl"],
        dlq_url=outputs["DlqUrl"],
        dynamodb=session.client("dynamodb"),
        table_name=table,
        cloudwatch=session.client("cloudwatch"),
    )


# -- holding messages -------------------------------------------------------------------


def release(sqs: Any, queue_url: str, receipt_handles: Sequence[str]) -> None:
    """Make held messages visible again at once."""
    for start in range(0, len(receipt_handles), MAX_BATCH):
        chunk = receipt_handles[start : start + MAX_BATCH]
        with contextlib.suppress(BotoCoreError, ClientError):
            sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)
                ],
            )


# -- status -------------------------------------------------------------------------------


@dataclass
class QueueStatus:
    name: str
    url: str
    visible: int
    in_flight: int
    delayed: int
    oldest_age: float | None  # seconds
    age_source: str


def queue_counts(sqs: SQSClient, url: str) -> tuple[int, int, int]:
    """The queue's (visible, in flight, delayed) messages, as SQS estimates them.

    The delayed ones are asked for first, on their own: counted in one request, a message
    whose delay ends between the counts can be in neither (the emulator counts the visible
    ones first), and a queue holding waiting notifications would look empty.
    """
    delayed = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return (
        int(attrs.get("ApproximateNumberOfMessages", 0)),
        int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(delayed["Attributes"].get("ApproximateNumberOfMessagesDelayed", 0)),
    )


def queue_status(target: Target, name: str, url: str, *, peek: bool) -> QueueStatus:
    visible, in_flight, delayed = queue_counts(target.sqs, url)
    age, source = None, "n/a"
    if target.cloudwatch is not None:
        age, source = _cloudwatch_age(target.cloudwatch, url), "CloudWatch"
    elif peek and visible:
        age, source = _peek_age(target.sqs, url), "sampled"
    return QueueStatus(name, url, visible, in_flight, delayed, age, source)


def _cloudwatch_age(cloudwatch: Any, url: str) -> float | None:
    now = datetime.now(UTC)
    try:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": url.rstrip("/").rsplit("/", 1)[-1]}],
            StartTime=datetime.fromtimestamp(now.timestamp() - 900, UTC),
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except (BotoCoreError, ClientError):
        return None
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def _peek_age(sqs: Any, url: str) -> float | None:
    """The oldest ``SentTimestamp`` among up to ten messages, each made visible again at once.

    Used only on the DLQ: receiving counts as a receive, which on the main queue would
    bring messages closer to their redrive.
    """
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=MAX_BATCH, VisibilityTimeout=0, AttributeNames=["SentTimestamp"]
    ).get("Messages", [])
    sent = [
        int(m["Attributes"]["SentTimestamp"]) for m in messages if "SentTimestamp" in m.get("Attributes", {})
    ]
    return time.time() - min(sent) / 1000 if sent else None


@dataclass
class Status:
    target: str
    queue: QueueStatus
    dlq: QueueStatus
    outcomes: dict[str, int]  # by each notification's own outcome (see effective_outcome)
    feedback: dict[str, int]
    duplicates: int  # re-deliveries absorbed by dedup
    oldest_retrying: float | None  # seconds since the first receive of the oldest unfinished notification
    records: int
    deleted: int = 0  # notifications whose handlers were told the resource is gone


def status(target: Target) -> Status:
    queue = queue_status(target, "queue", target.queue_url, peek=False)
    dlq = queue_status(target, "DLQ", target.dlq_url, peek=True)
    outcomes: Counter[str] = Counter()
    feedback: Counter[str] = Counter()
    oldest: float | None = None
    duplicates = deleted = 0
    store = target.outcomes
    records = store.scan() if store is not None else []
    now = datetime.now(UTC)
    for record in records:
        outcome = record.effective_outcome
        outcomes[outcome] += 1
        duplicates += record.duplicates_absorbed
        deleted += bool(record.item.get("deleted"))
        if record.feedback is not None:
            feedback[_feedback_kind(record.feedback)] += 1
        if outcome not in FINAL and record.first_seen:
            with contextlib.suppress(ValueError):
                age = (now - datetime.fromisoformat(record.first_seen)).total_seconds()
                oldest = age if oldest is None else max(oldest, age)
    return Status(
        target.label, queue, dlq, dict(outcomes), dict(feedback), duplicates, oldest, len(records), deleted
    )


def _feedback_kind(feedback: dict[str, Any]) -> str:
    if feedback.get("posted"):
        return "posted (success)" if feedback.get("is_success") else "posted (failure)"
    return "not due (derived id)" if feedback.get("skipped") else "not posted"


# -- inspect ------------------------------------------------------------------------------


@dataclass
class Found:
    queue: str
    message_id: str
    receive_count: int
    sent_at: str | None
    attributes: dict[str, str]


def find_messages(
    sqs: Any,
    url: str,
    name: str,
    notification_id: str,
    *,
    tenant_id: str | None = None,
    max_messages: int = 2000,
    hold_seconds: int = 5,
) -> list[Found]:
    """Messages of ``url`` whose ``notification_id`` (and ``tenant_id``, if given) attributes
    match, without consuming them.

    Visible messages are received with a short visibility, and every one of them is made
    visible again as soon as the scan ends.
    """
    found: list[Found] = []
    held: list[str] = []
    seen: set[str] = set()
    try:
        while len(seen) < max_messages:
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=MAX_BATCH,
                VisibilityTimeout=hold_seconds,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            held.extend(m["ReceiptHandle"] for m in messages)
            if not fresh:
                break
            for m in fresh:
                seen.add(m["MessageId"])
                if attribute(m, "notification_id") == notification_id and tenant_id in (
                    None,
                    attribute(m, "tenant_id"),
                ):
                    sent = m.get("Attributes", {}).get("SentTimestamp")
                    found.append(
                        Found(
                            name,
                            m["MessageId"],
                            int(m.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
                            datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat(timespec="seconds")
                            if sent
                            else None,
                            {
                                k: v.get("StringValue", "")
                                for k, v in (m.get("MessageAttributes") or {}).items()
                                if isinstance(v, dict)
                            },
                        )
                    )
    finally:
        release(sqs, url, held)
    return found


@dataclass
class Inspection:
    notification_id: str
    record: OutcomeRecord | None
    in_dlq: list[Found]
    in_queue: list[Found]
    queue_peeked: bool
    where: str
    others: list[OutcomeRecord] = field(default_factory=list)  # other tenants' notifications with this id

    @property
    def found(self) -> bool:
        """Whether the stack knows the notification at all (a record or a message)."""
        return self.record is not None or bool(self.in_dlq or self.in_queue)


def inspect(
    target: Target, notification_id: str, *, tenant_id: str | None = None, peek_queue: bool = False
) -> Inspection:
    """The notification's history and where it is now.

    Visma's ids are unique per tenant: with ``tenant_id`` only that tenant's notification is
    looked up; without, the latest updated record of the id is shown and the other tenants'
    ones are listed in ``others``. The DLQ is always searched. The main queue only with
    ``peek_queue``: a receive there counts towards the message's ``maxReceiveCount``, so by
    default its place is inferred from the history instead.
    """
    store = target.outcomes
    records: list[OutcomeRecord] = []
    if store is not None and tenant_id:
        records = [r for r in [store.get(notification_id, tenant_id)] if r is not None]
    elif store is not None:
        records = store.find(notification_id)
    record = records[0] if records else None
    in_dlq = find_messages(target.sqs, target.dlq_url, "DLQ", notification_id, tenant_id=tenant_id)
    in_queue = (
        find_messages(target.sqs, target.queue_url, "queue", notification_id, tenant_id=tenant_id)
        if peek_queue
        else []
    )
    outcome = record.effective_outcome if record else None
    if in_dlq:
        reason = in_dlq[0].attributes.get("rejection_reason")
        where = "in the DLQ" + (f" (quarantined at ingest: {reason})" if reason else "")
        where += "; `visma-webhooks replay` moves it back"
    elif in_queue:
        where = "in the queue, waiting to be processed"
    elif outcome in FINAL:
        where = f"done ({outcome})"
    elif outcome in RETRIED:
        where = "in the queue, invisible until its next attempt"
    elif record is not None:
        where = "being processed"
    else:
        where = "unknown: not processed yet (maybe still in the queue), or never received"
    return Inspection(notification_id, record, in_dlq, in_queue, peek_queue, where, records[1:])
