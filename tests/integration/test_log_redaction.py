"""A full run through ingest and processor: no secret, signature or token in any log line."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from tests.conftest import REGION
from tests.processor_support import receive
from visma_webhooks.domain.signature import sign
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext, http_api_event

CLIENT_ID = "redaction-client"
CLIENT_SECRET = "Visma-Client-Secret-9f8e7d"


@pytest.fixture
def stack(monkeypatch, queues, webhook_secrets, idempotency_table):
    visma_secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="visma-client", SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    )["ARN"]
    with VismaSandbox(port=0, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sandbox:
        env = {
            "QUEUE_URL": queues["queue_url"],
            "DLQ_URL": queues["dlq_url"],
            "WEBHOOK_SECRET_ARN": webhook_secrets["arn"],
            "IDEMPOTENCY_TABLE": "idempotency",
            "VISMA_API_BASE_URL": sandbox.url,
            "VISMA_TOKEN_URL": sandbox.token_url,
            "VISMA_CLIENT_SECRET_ARN": visma_secret,
            # the log handler fetches nothing; the counter fetches, so that the 401 below is met
            "HANDLER_MODULES": "visma_webhooks.notification_handlers.log,tests.counting_handlers",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
            # a service name of its own: Powertools sets a logger up once per name, and this
            # test reads the output of the handlers it loads
            "POWERTOOLS_SERVICE_NAME": "visma-webhooks-redaction",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield sandbox


def test_no_secret_in_any_log_line(stack, queues, webhook_secrets, capfd, caplog):
    caplog.set_level(logging.INFO)  # as in Lambda: libraries at INFO, the project's loggers at DEBUG
    caplog.set_level(logging.DEBUG, logger="visma_webhooks")
    sandbox = stack
    # loaded here, so that their log handlers write to the captured output
    ingest, processor = load_function("ingest"), load_function("processor")
    body = json.dumps(
        [
            {
                "notificationId": f"red-{i}",
                "contextId": "1262489",
                "event": "customer_changed",
                "resourceUri": f"https://api.finance.visma.net/v1/customer/{path}",
            }
            for i, path in enumerate(["10001", "missing-1", "10002"])
        ]
    ).encode()
    good = sign(body, webhook_secrets["values"][0])
    forged = sign(body, "an-attacker-guess")
    expected_for_tampered = sign(body + b" ", webhook_secrets["values"][0])
    context = LambdaContext("ingest")
    for signature, payload in ((good, body), (forged, body), (good, body + b" "), ("garbage!", body)):
        ingest.handler(http_api_event(payload, {"x-vwd-signature-v1": signature}), context)
    sandbox.set_faults(
        rules=[{"path": "/v1/customer/10002", "status": 401, "times": 1}]
    )  # forces a token refresh

    event = receive(queues["sqs"], queues["queue_url"], 3)
    response = processor.handler(event, LambdaContext("processor", 30))

    assert response["batchItemFailures"] == []
    assert len(sandbox.feedback) == 3
    tokens = list(sandbox._tokens)
    assert len(tokens) >= 2, "the 401 should have caused a second token"
    output = capfd.readouterr()
    logged = output.out + output.err + caplog.text
    assert all(f"red-{i}" in logged for i in range(3)), "the run was not logged"
    for secret in [*webhook_secrets["values"], CLIENT_SECRET, good, expected_for_tampered, *tokens]:
        assert secret not in logged
