"""An AWS endpoint that accepts connections and never answers: the functions still answer in time."""

from __future__ import annotations

import json
import socket
import threading
import time

import boto3
import pytest

from tests.conftest import deliver
from tests.processor_support import notification, put, receive
from tests.template.cfn import sam_template
from visma_webhooks.domain.signature import SIGNATURE_HEADER, sign
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext


@pytest.fixture
def hung_endpoint():
    """A TCP server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_ingest_answers_503_before_its_timeout_when_sqs_hangs(
    monkeypatch, queues, webhook_secrets, hung_endpoint
):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("DLQ_URL", queues["dlq_url"])
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", webhook_secrets["arn"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", hung_endpoint)  # Secrets Manager stays on moto
    app = load_function("ingest")
    timeout = sam_template()["Resources"]["IngestFunction"]["Properties"]["Timeout"]

    body = json.dumps(
        [
            {
                "notificationId": "00000000-0000-4000-8000-000000000001",
                "contextId": "1262489",
                "event": "customer_changed",
                "resourceUri": "https://api.finance.visma.net/v1/customer/10001",
            }
        ]
    ).encode()
    started = time.monotonic()
    status, answer = deliver(
        app,
        body,
        {"content-type": "application/json", SIGNATURE_HEADER: sign(body, webhook_secrets["values"][0])},
    )
    took = time.monotonic() - started

    assert status == 503, answer
    assert took < timeout - 2, f"answered after {took:.1f} s; the function times out at {timeout} s"


def test_the_processor_reports_its_records_for_retry_well_within_its_timeout_when_dynamodb_hangs(
    monkeypatch, queues, hung_endpoint
):
    secret = boto3.client("secretsmanager").create_secret(
        Name="visma-client", SecretString=json.dumps({"client_id": "id", "client_secret": "secret"})
    )["ARN"]
    for name, value in {
        "QUEUE_URL": queues["queue_url"],
        "IDEMPOTENCY_TABLE": "idempotency",
        "VISMA_API_BASE_URL": "http://127.0.0.1:9",  # never reached: the record stops at the table
        "VISMA_TOKEN_URL": "http://127.0.0.1:9/connect/token",
        "VISMA_CLIENT_SECRET_ARN": secret,
        "AWS_ENDPOINT_URL_DYNAMODB": hung_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    app = load_function("processor")
    timeout = sam_template()["Parameters"]["ProcessorTimeoutSeconds"]["Default"]
    put(queues["sqs"], queues["queue_url"], [notification("stuck-1"), notification("stuck-2")])
    event = receive(queues["sqs"], queues["queue_url"], 2)

    started = time.monotonic()
    response = app.handler(event, LambdaContext("processor", float(timeout)))
    took = time.monotonic() - started

    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {
        r["messageId"] for r in event["Records"]
    }
    assert took < 20, f"the batch took {took:.1f} s against a hung table (timeout {timeout} s)"
