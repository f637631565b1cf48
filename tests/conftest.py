"""Shared fixtures: AWS emulated in-process by moto, the real function modules."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.moto_transactions import install

install()  # moto's transactions, safe for the processor's concurrent records

EVENTS = Path(__file__).resolve().parents[1] / "events"
REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    """Fake credentials and a region, so that nothing can reach a real AWS account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "VismaWebhooks")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "visma-webhooks-test")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws():
    with mock_aws():
        yield


def load_event(name: str):
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def queues(aws):
    """The notifications queue and its DLQ, wired as template.yaml wires them."""
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName="notifications-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName="notifications",
        Attributes={
            "VisibilityTimeout": "180",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    return {"sqs": sqs, "queue_url": queue_url, "dlq_url": dlq_url}


@pytest.fixture
def webhook_secrets(aws):
    """A rotation in progress: two valid secrets."""
    secrets = ["first-secret-Xq2v9", "second-secret-Lm7k3"]
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="visma-webhook-secret", SecretString=json.dumps(secrets))["ARN"]
    return {"arn": arn, "values": secrets}


@pytest.fixture
def idempotency_table(aws):
    """The idempotency table, keyed and expiring as template.yaml declares it."""
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName="idempotency", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )
    return client


@pytest.fixture
def ingest_app(monkeypatch, queues, webhook_secrets):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", webhook_secrets["arn"])
    return load_function("ingest")


def record_batch_calls(function_module) -> list[tuple[str, list[dict]]]:
    """Record every ``SendMessageBatch`` call a loaded function's SQS client makes.

    Each call is kept as ``(queue URL, entries)``, seen through botocore's event hooks, so the
    count is that of real API calls.
    """
    calls: list[tuple[str, list[dict]]] = []

    def record(params, **_):
        calls.append((params["QueueUrl"], list(params["Entries"])))

    function_module._sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", record)
    return calls


@pytest.fixture
def batch_calls(ingest_app):
    """The ``SendMessageBatch`` calls made by the ``ingest_app`` fixture's function."""
    return record_batch_calls(ingest_app)


def drain(sqs, queue_url: str) -> list[dict]:
    """Receive every message on a queue, with its message attributes."""
    received: list[dict] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            return received
        received.extend(batch)


def deliver(function_module, body: bytes, headers: dict, **event_options) -> tuple[int, dict]:
    """POST ``body`` through a loaded ingest function's Lambda handler: (status, JSON body)."""
    from visma_webhooks_local.stack.lambda_events import LambdaContext, http_api_event

    result = function_module.handler(http_api_event(body, headers, **event_options), LambdaContext("ingest"))
    return result["statusCode"], json.loads(result["body"])
