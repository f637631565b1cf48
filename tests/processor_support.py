"""Helpers for driving the real processor handler against moto and a local Visma."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3

from visma_webhooks.adapters.aws import SqsBatchSender
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.queueing import enqueue, notification_message
from visma_webhooks_local.ops import queue_counts
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext, sqs_event

REGION = "eu-west-1"


def notification(
    nid: str,
    path: str | None = "/v1/customer/10001",
    event: str = "customer_changed",
    tenant="1262489",
    **fields,
):
    """A notification as ingest makes it; ``fields``: service, deleted, api_client_id, derived_id..."""
    return Notification(
        notification_id=nid,
        tenant_id=tenant,
        event=event,
        resource_path=path,
        occurred_at=datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        source_format="legacy",
        raw={"notificationId": nid, "contextId": tenant, "event": event},
        **fields,
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


def load_processor(monkeypatch, queues, sandbox, **env: str):
    """The processor function module, configured for moto and ``sandbox`` (``env`` on top)."""
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="visma-client",
        SecretString=json.dumps({"client_id": "processor-test", "client_secret": "processor-test-secret"}),
    )["ARN"]
    for name, value in {
        "QUEUE_URL": queues["queue_url"],
        "IDEMPOTENCY_TABLE": "idempotency",
        "VISMA_API_BASE_URL": sandbox.url,
        "VISMA_TOKEN_URL": f"{sandbox.url}/connect/token",
        "VISMA_CLIENT_SECRET_ARN": secret,
        "HANDLER_MODULES": "tests.counting_handlers",
        "RETRY_BASE_SECONDS": "30",
        "FEEDBACK_SOURCE": "processor-tests",
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    return load_function("processor")


def run(app, sqs, queue_url, expected, *, timeout=30.0):
    """Receive ``expected`` messages, hand them to the processor, delete the acknowledged ones."""
    event = receive(sqs, queue_url, expected)
    assert len(event["Records"]) == expected
    response = app.handler(event, LambdaContext("processor", timeout))
    delete_succeeded(sqs, queue_url, event, response)
    return event, response


def gets(sandbox, path):
    return [r for r in sandbox.requests if r["method"] == "GET" and r["path"] == path]


# -- driving the queue until a burst is done (tests of waits and resource order) ------------


def queue_depth(sqs, queue_url: str) -> int:
    """Messages on the queue: visible, in flight and delayed."""
    return sum(queue_counts(sqs, queue_url))


def process_until_empty(
    app, sqs, queue_url: str, *, limit: float = 120.0, timeout: float = 30.0, max_handed: int = 1000
) -> list[dict]:
    """Receive, hand to the processor and delete the acknowledged records, as an event source
    mapping would, until nothing is left on the queue (delayed copies included); the records
    handed over, in order. ``limit`` (seconds) and ``max_handed`` (records) only stop a run
    that would never end."""
    import time

    handed: list[dict] = []
    started = time.monotonic()
    while queue_depth(sqs, queue_url):
        assert time.monotonic() - started < limit, f"still {queue_depth(sqs, queue_url)} messages"
        assert len(handed) < max_handed, f"{len(handed)} records handed over, and the queue is not empty"
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            time.sleep(0.05)  # the rest are delayed copies, waiting for their budget
            continue
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        event = sqs_event(messages, arn["QueueArn"], REGION)
        handed.extend(event["Records"])
        response = app.handler(event, LambdaContext("processor", timeout))
        delete_succeeded(sqs, queue_url, event, response)
    return handed


def waits_of(record: dict) -> int:
    """How often a handed-over record had been put back to wait (its ``waits`` attribute)."""
    value = record["messageAttributes"].get("waits", {}).get("stringValue")
    return int(value) if value else 0
