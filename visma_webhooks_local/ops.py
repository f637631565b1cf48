"""Operations on a stack's queues and outcome records: replay, status, inspect.

They work on the local stack (found through its state file) and on a deployed stack
(its CloudFormation outputs, with the user's normal AWS credentials). They filter and
locate messages by their attributes (``event``, ``tenant_id``, ``notification_id``),
never by parsing bodies, and they never rewrite a body.
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.adapters.dynamodb import DynamoDBOutcomeStore
from visma_webhooks.domain.processing import ALREADY_PROCESSED, COMPLETED, FINAL, RETRIED
from visma_webhooks.domain.queueing import FORCE_ATTRIBUTE
from visma_webhooks.domain.queueing import message_attribute as attribute
from visma_webhooks_local.stack import StackError, StackState

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


def local_target(state_file: str | None = None) -> Target:
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


def effective_outcome(record: dict[str, Any]) -> str:
    """The notification's own outcome (the record's ``outcome`` field shows the latest copy's).

    The latest completed step wins over anything a concurrent or later copy appended (a
    ``retrying`` after ``succeeded`` is a sibling that found the notification held). With
    no completed step, a copy absorbed as a duplicate names the outcome it found (a crash
    between the notification's stage and its history write leaves only that), else the
    latest step that is not ``received`` tells where it is.
    """
    history = [e for e in record.get("history") or [] if isinstance(e, dict)]
    for entry in reversed(history):
        if entry.get("step") in COMPLETED:
            return str(entry["step"])
    for entry in reversed(history):
        detail = str(entry.get("detail") or "")
        if entry.get("step") == "duplicate" and detail.startswith(ALREADY_PROCESSED):
            return detail.removeprefix(ALREADY_PROCESSED).split()[0].rstrip(",;.")
    for entry in reversed(history):
        if entry.get("step") not in (None, "received", "duplicate"):
            return str(entry["step"])
    return "in progress" if history else str(record.get("outcome") or "in progress")


def duplicates_absorbed(record: dict[str, Any]) -> int:
    return sum(1 for e in record.get("history") or [] if isinstance(e, dict) and e.get("step") == "duplicate")


# -- replay -------------------------------------------------------------------------------


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
        attributes = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
            for name, value in (m.get("MessageAttributes") or {}).items()
        }
        if force:
            attributes[FORCE_ATTRIBUTE] = {"DataType": "String", "StringValue": result.run_id}
        entries.append({"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": attributes})
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


def queue_status(target: Target, name: str, url: str, *, peek: bool) -> QueueStatus:
    attrs = target.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    age, source = None, "n/a"
    if target.cloudwatch is not None:
        age, source = _cloudwatch_age(target.cloudwatch, url), "CloudWatch"
    elif peek and int(attrs.get("ApproximateNumberOfMessages", 0)):
        age, source = _peek_age(target.sqs, url), "sampled"
    return QueueStatus(
        name,
        url,
        int(attrs.get("ApproximateNumberOfMessages", 0)),
        int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        age,
        source,
    )


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


def status(target: Target) -> Status:
    queue = queue_status(target, "queue", target.queue_url, peek=False)
    dlq = queue_status(target, "DLQ", target.dlq_url, peek=True)
    outcomes: Counter[str] = Counter()
    feedback: Counter[str] = Counter()
    oldest: float | None = None
    duplicates = 0
    store = target.outcomes
    records = store.scan() if store is not None else []
    now = datetime.now(UTC)
    for record in records:
        outcome = effective_outcome(record)
        outcomes[outcome] += 1
        duplicates += duplicates_absorbed(record)
        fb = record.get("feedback")
        if isinstance(fb, dict):
            if fb.get("posted"):
                feedback["posted (success)" if fb.get("is_success") else "posted (failure)"] += 1
            else:
                feedback["not posted"] += 1
        if outcome not in FINAL and record.get("first_seen"):
            with contextlib.suppress(ValueError):
                age = (now - datetime.fromisoformat(str(record["first_seen"]))).total_seconds()
                oldest = age if oldest is None else max(oldest, age)
    return Status(target.label, queue, dlq, dict(outcomes), dict(feedback), duplicates, oldest, len(records))


# -- inspect ------------------------------------------------------------------------------


@dataclass
class Found:
    queue: str
    message_id: str
    receive_count: int
    sent_at: str | None
    attributes: dict[str, str]


def find_messages(
    sqs: Any, url: str, name: str, notification_id: str, *, max_messages: int = 2000, hold_seconds: int = 5
) -> list[Found]:
    """Messages of ``url`` whose ``notification_id`` attribute matches, without consuming them.

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
                if attribute(m, "notification_id") == notification_id:
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
    record: dict[str, Any] | None
    in_dlq: list[Found]
    in_queue: list[Found]
    queue_peeked: bool
    where: str

    @property
    def found(self) -> bool:
        """Whether the stack knows the notification at all (a record or a message)."""
        return self.record is not None or bool(self.in_dlq or self.in_queue)


def inspect(target: Target, notification_id: str, *, peek_queue: bool = False) -> Inspection:
    """The notification's history and where it is now.

    The DLQ is always searched. The main queue only with ``peek_queue``: a receive there
    counts towards the message's ``maxReceiveCount``, so by default its place is inferred
    from the history instead.
    """
    store = target.outcomes
    record = store.get(notification_id) if store is not None else None
    in_dlq = find_messages(target.sqs, target.dlq_url, "DLQ", notification_id)
    in_queue = find_messages(target.sqs, target.queue_url, "queue", notification_id) if peek_queue else []
    outcome = effective_outcome(record) if record else None
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
    return Inspection(notification_id, record, in_dlq, in_queue, peek_queue, where)
