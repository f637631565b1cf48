"""A multi-item dispatcher delivery quarantined at ingest, the configuration fixed, replayed from the DLQ.

The real ingest and processor handlers on moto, the Visma sandbox over sockets, and the
tooling's replay: every item keeps its own id ``<header id>:<index>`` and is processed once.
"""

from __future__ import annotations

import importlib
import json

import boto3
import pytest

from tests.conftest import REGION, deliver, drain
from tests.processor_support import receive
from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks.domain.queueing import QUARANTINE_KEY
from visma_webhooks.domain.signature import SIGNATURE_HEADER, sign
from visma_webhooks_local.replaying import replay
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext

ERP_HOST = "erp.example.com"  # a Financials host this deployment has not allow-listed yet
HEADER_ID = "b7e2f9d4-1c3a-4e8b-9f60-2a7d5c1e8b33"
TENANT = "5f0c8c1e-2d4b-4f1a-9a59-0c6e7f3b2a10"
CUSTOMERS = ("10001", "10002", "10003")


@pytest.fixture
def sandbox():
    with VismaSandbox(port=0, client_id="replay-test", client_secret="replay-test-secret") as server:
        yield server


def delivery(secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        [
            {"Event": "Customer Changed", "ResourceUri": f"https://{ERP_HOST}/v1/customer/{n}"}
            for n in CUSTOMERS
        ]
    ).encode()
    headers = {
        "content-type": "application/json",
        "x-vwd-tenant-id": TENANT,
        "x-vwd-notification-id": HEADER_ID,
        SIGNATURE_HEADER: sign(body, secret),
    }
    return body, headers


def start_processor(monkeypatch, queues, sandbox, *, fixed: bool = True):
    """The processor, configured with the host that ingest did not know (unless not ``fixed``)."""
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="visma-client",
        SecretString=json.dumps({"client_id": "replay-test", "client_secret": "replay-test-secret"}),
    )["ARN"]
    for name, value in {
        "QUEUE_URL": queues["queue_url"],
        "IDEMPOTENCY_TABLE": "idempotency",
        "VISMA_API_BASE_URL": sandbox.url,
        "VISMA_TOKEN_URL": f"{sandbox.url}/connect/token",
        "VISMA_CLIENT_SECRET_ARN": secret,
        "HANDLER_MODULES": "tests.counting_handlers",
        "ALLOWED_RESOURCE_HOSTS": ERP_HOST if fixed else "",
    }.items():
        monkeypatch.setenv(name, value)
    app = load_function("processor")
    counter = importlib.import_module("tests.counting_handlers")
    counter.reset()
    return app, counter


def quarantine_twice(monkeypatch, queues, webhook_secrets) -> list[str]:
    """The dispatcher delivers and retries once: both copies are quarantined, nothing is queued."""
    sqs, queue_url, dlq_url = queues["sqs"], queues["queue_url"], queues["dlq_url"]
    for name, value in {
        "QUEUE_URL": queue_url,
        "DLQ_URL": dlq_url,
        "WEBHOOK_SECRET_ARN": webhook_secrets["arn"],
    }.items():
        monkeypatch.setenv(name, value)
    ingest = load_function("ingest")
    body, headers = delivery(webhook_secrets["values"][0])
    ids = [f"{HEADER_ID}:{i}" for i in range(len(CUSTOMERS))]
    for _ in range(2):
        status, answer = deliver(ingest, body, headers)
        assert status == 202, answer
        assert answer["accepted"] == 0
        assert [r["notificationId"] for r in answer["rejected"]] == ids
        assert all("not allow-listed" in r["reasons"][0] for r in answer["rejected"])
    assert drain(sqs, queue_url) == []
    kept = drain(sqs, dlq_url)
    places = [json.loads(m["Body"])[QUARANTINE_KEY] for m in kept]
    assert sorted((p["index"], p["count"]) for p in places) == sorted(
        [(i, len(CUSTOMERS)) for i in range(3)] * 2
    )
    for message in kept:  # visible again for the replay
        sqs.change_message_visibility(
            QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return ids


def test_a_replayed_multi_item_delivery_processes_every_item_once_under_its_own_id(
    monkeypatch, queues, webhook_secrets, idempotency_table, sandbox
):
    sqs, queue_url, dlq_url = queues["sqs"], queues["queue_url"], queues["dlq_url"]
    ids = quarantine_twice(monkeypatch, queues, webhook_secrets)

    # The configuration is fixed (the processor allow-lists the host), and the DLQ replayed.
    processor, counter = start_processor(monkeypatch, queues, sandbox)
    result = replay(sqs, dlq_url, queue_url, wait_seconds=0)
    assert (result.moved, result.failed) == (6, 0)
    event = receive(sqs, queue_url, 6)
    assert len(event["Records"]) == 6
    response = processor.handler(event, LambdaContext("processor", 30.0))

    assert response["batchItemFailures"] == []
    assert dict(counter.runs) == dict.fromkeys(ids, 1)
    assert HEADER_ID not in counter.runs
    fetched = sorted(r["path"] for r in sandbox.requests if r["method"] == "GET")
    assert fetched == sorted(f"/v1/customer/{n}" for n in CUSTOMERS)
    assert not any(ERP_HOST in json.dumps(r) for r in sandbox.requests)


def test_a_derived_id_still_invalid_on_replay_fails_without_feedback(
    monkeypatch, queues, webhook_secrets, idempotency_table, sandbox
):
    """Visma never issued ``<header id>:<index>``: the failure is recorded, no feedback is posted for it."""
    sqs, queue_url, dlq_url = queues["sqs"], queues["queue_url"], queues["dlq_url"]
    ids = quarantine_twice(monkeypatch, queues, webhook_secrets)
    processor, counter = start_processor(monkeypatch, queues, sandbox, fixed=False)
    assert replay(sqs, dlq_url, queue_url, wait_seconds=0).moved == 6
    response = processor.handler(receive(sqs, queue_url, 6), LambdaContext("processor", 30.0))

    assert response["batchItemFailures"] == []  # permanent: acknowledged, not retried
    assert dict(counter.runs) == {}
    assert sandbox.feedback == []
    store = DynamoDBOutcomeStore(processor.settings.table_name, processor._dynamodb, 0)
    records = {nid: store.get(nid, TENANT) for nid in ids}
    assert {nid: r.effective_outcome if r else None for nid, r in records.items()} == dict.fromkeys(
        ids, "failed"
    )
