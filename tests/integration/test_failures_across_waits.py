"""Genuine failures count across the fresh copies that waits make.

A wait (budget, a 429, a lease) puts a fresh copy on the queue, whose receive count starts
again at 1. Without carrying the failures, a notification whose fetch keeps failing, with
waits between the failures, would never reach ``MaxReceiveCount``: it would be retried for
ever, and never get its "gave up" feedback or reach the DLQ.
"""

from __future__ import annotations

import importlib
import time

import pytest

from tests.processor_support import feedback_for, load_processor, notification, put, run
from visma_webhooks.domain.queueing import FAILURES_ATTRIBUTE, WAITS_ATTRIBUTE
from visma_webhooks_local.replaying import replay
from visma_webhooks_local.sandbox import VismaSandbox

MAX_RECEIVE = 3
DOWN = "/v1/customer/down"


@pytest.fixture
def sandbox():
    with VismaSandbox(port=0, client_id="processor-test", client_secret="processor-test-secret") as server:
        yield server


@pytest.fixture
def processor(monkeypatch, queues, idempotency_table, sandbox):
    app = load_processor(
        monkeypatch, queues, sandbox, MAX_RECEIVE_COUNT=str(MAX_RECEIVE), DLQ_URL=queues["dlq_url"]
    )
    importlib.import_module("tests.counting_handlers").reset()
    return app


def dlq_messages(sqs, dlq_url):
    return sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", [])


def test_a_waiting_copy_carries_the_failures_of_the_copy_it_replaces(processor, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    # the second receive finds Visma's budget spent: a 429 with a short wait
    sandbox.set_faults(rules=[{"path": DOWN, "status": 503, "times": 4}])
    put(sqs, url, [notification("carried", DOWN)])
    event, response = run(processor, sqs, url, 1)  # one failure (503 after the client's retries)
    assert response["batchItemFailures"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=event["Records"][0]["receiptHandle"], VisibilityTimeout=0
    )
    sandbox.set_faults(rules=[{"path": DOWN, "status": 429, "times": 1, "retry_after": 1}])

    event, response = run(processor, sqs, url, 1)  # receive 2: throttled, a fresh copy waits
    assert response["batchItemFailures"] == []
    time.sleep(3.2)
    copy = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"])[
        "Messages"
    ][0]

    assert copy["Attributes"]["ApproximateReceiveCount"] == "1"
    assert copy["MessageAttributes"][WAITS_ATTRIBUTE]["StringValue"] == "1"
    assert copy["MessageAttributes"][FAILURES_ATTRIBUTE]["StringValue"] == "1"


def test_a_copy_whose_attempts_are_used_up_gives_up_and_goes_to_the_dlq(processor, queues, sandbox):
    sqs, url, dlq = queues["sqs"], queues["queue_url"], queues["dlq_url"]
    sandbox.set_faults(rules=[{"path": DOWN, "status": 503}])
    # a copy made by a wait, after two failures: this receive is its third genuine attempt
    put(sqs, url, [notification("used-up", DOWN)], {FAILURES_ATTRIBUTE: "2", WAITS_ATTRIBUTE: "1"})

    event, response = run(processor, sqs, url, 1)

    assert response["batchItemFailures"] == [], "moved to the DLQ by the processor, not left to SQS"
    (posted,) = feedback_for(sandbox.feedback, "used-up")
    assert posted["isSuccess"] is False
    assert "gave up after 3 attempts" in posted["description"]
    (moved,) = dlq_messages(sqs, dlq)
    assert moved["Body"] == event["Records"][0]["body"]
    assert moved["MessageAttributes"][FAILURES_ATTRIBUTE]["StringValue"] == "3"  # the attempts it used
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None

    sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=moved["ReceiptHandle"], VisibilityTimeout=0)
    assert replay(sqs, dlq, url, wait_seconds=0).moved == 1
    (replayed,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert FAILURES_ATTRIBUTE not in replayed["MessageAttributes"], "a replay starts afresh"
    assert WAITS_ATTRIBUTE not in replayed["MessageAttributes"]


def test_without_carried_failures_a_first_receive_is_only_retried(processor, queues, sandbox):
    sqs, url, dlq = queues["sqs"], queues["queue_url"], queues["dlq_url"]
    sandbox.set_faults(rules=[{"path": DOWN, "status": 503}])
    put(sqs, url, [notification("fresh", DOWN)])

    event, response = run(processor, sqs, url, 1)

    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [event["Records"][0]["messageId"]]
    assert feedback_for(sandbox.feedback, "fresh") == []
    assert dlq_messages(sqs, dlq) == []
