"""Helpers for driving the real processor handler against moto and a local Visma."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from visma_webhooks.adapters.aws import SqsBatchSender
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.queueing import enqueue, notification_message
from visma_webhooks_local.stack.lambda_events import sqs_event

REGION = "eu-west-1"


def notification(
    nid: str, path: str | None = "/v1/customer/10001", event: str = "customer_changed", tenant="1262489"
):
    return Notification(
        notification_id=nid,
        tenant_id=tenant,
        event=event,
        resource_path=path,
        occurred_at=datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        source_format="legacy",
        raw={"notificationId": nid, "contextId": tenant, "event": event},
    )


def put(
    sqs, queue_url: str, notifications: list[Notification], attributes: dict[str, str] | None = None
) -> None:
    messages = [notification_message(i, n) for i, n in enumerate(notifications)]
    if attributes:
        messages = [type(m)(m.id, m.body, {**m.attributes, **attributes}) for m in messages]
    enqueue(SqsBatchSender(sqs, queue_url), messages)


def receive(sqs, queue_url: str, expected: int, *, visibility: int = 30) -> dict:
    """Receive up to ``expected`` messages as one SQS event (as the event source mapping would)."""
    messages: list[dict] = []
    for _ in range(10):
        if len(messages) >= expected:
            break
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, expected - len(messages)),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=visibility,
        ).get("Messages", [])
        messages.extend(batch)
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs_event(messages, arn, REGION)


def failures(response: dict, event: dict) -> set[str]:
    """Notification ids of the records listed in ``batchItemFailures``."""
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    return {
        r["messageAttributes"]["notification_id"]["stringValue"]
        for r in event["Records"]
        if r["messageId"] in failed
    }


def delete_succeeded(sqs, queue_url: str, event: dict, response: dict) -> None:
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])


def release(sqs, queue_url: str, event: dict) -> None:
    """Make every record of ``event`` visible again at once (as if its backoff had passed)."""
    for record in event["Records"]:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )


def feedback_for(feedback: list[dict], nid: str) -> list[dict]:
    return [f for f in feedback if f.get("notificationId") == nid]


def dumps(data) -> str:
    return json.dumps(data)
