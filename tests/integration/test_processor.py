"""The real processor handler on moto, against a Visma sandbox over real sockets."""

from __future__ import annotations

import importlib
import json
import time

import boto3
import pytest

from tests.conftest import REGION
from tests.processor_support import (
    failures,
    feedback_for,
    gets,
    load_processor,
    notification,
    put,
    receive,
    release,
    run,
)
from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.stack.lambda_events import LambdaContext

MAX_RECEIVE = 3


@pytest.fixture
def sandbox():
    with VismaSandbox(port=0, client_id="processor-test", client_secret="processor-test-secret") as server:
        yield server


@pytest.fixture
def processor(monkeypatch, queues, idempotency_table, sandbox):
    return load_processor(monkeypatch, queues, sandbox, MAX_RECEIVE_COUNT=str(MAX_RECEIVE))


@pytest.fixture
def counter(processor):
    module = importlib.import_module("tests.counting_handlers")
    module.reset()
    return module


def test_batch_of_ten_isolates_each_failure(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    sandbox.set_faults(
        rules=[{"path": "/v1/customer/flaky", "status": 503}, {"path": "/v1/customer/denied", "status": 403}]
    )
    batch = [
        notification("ok-1", "/v1/customer/10001"),
        notification("denied", "/v1/customer/denied"),  # 403: permanent
        notification("gone", "/v1/customer/missing-1"),  # 404: a deletion, handlers told
        notification("flaky", "/v1/customer/flaky"),  # 503 every time: transient
        notification("blocked", "/v1/customer/10003"),  # the handler raises PermanentError
        notification("shared-a", "/v1/customer/20000"),
        notification("shared-b", "/v1/customer/20000"),  # same resource: one GET
        notification("no-resource", None),
        notification("unhandled", "/v1/supplier/20002", event="supplier_changed"),
        notification("ok-1", "/v1/customer/10001"),  # the same notification again
    ]
    counter.permanent_failures.add("blocked")
    put(sqs, url, batch[:9])
    put(sqs, url, batch[9:])

    event, response = run(processor, sqs, url, 10)

    assert failures(response, event) == {"flaky"}
    assert counter.runs["ok-1"] == 1, "a duplicate in the batch ran the handler twice"
    assert len(gets(sandbox, "/v1/customer/20000")) == 1
    # the two records of one resource take turns: one hands its state to the handler, the
    # other finds it unchanged, whichever runs first
    shared = sorted(nid for nid in ("shared-a", "shared-b") if counter.runs[nid])
    assert len(shared) == 1, counter.runs
    assert counter.resources[shared[0]] is not None  # it was handed the one fetched state
    assert counter.resources["no-resource"] is None
    feedback = sandbox.feedback
    assert [f["isSuccess"] for f in feedback_for(feedback, "ok-1")] == [True]
    assert [f["isSuccess"] for f in feedback_for(feedback, "denied")] == [False]
    assert "403" in feedback_for(feedback, "denied")[0]["description"]
    assert [f["isSuccess"] for f in feedback_for(feedback, "gone")] == [True]
    assert (counter.resources["gone"], counter.deleted["gone"]) == (None, True)
    assert [f["isSuccess"] for f in feedback_for(feedback, "blocked")] == [False]
    assert "blocked" in feedback_for(feedback, "blocked")[0]["description"]
    assert feedback_for(feedback, "flaky") == []
    assert feedback_for(feedback, "unhandled") == [], "unhandled events get no feedback"
    assert all(f["source"] == "processor-tests" for f in feedback)
    # the transient failure stays invisible for its backoff instead of coming straight back
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None
    outcomes = DynamoDBOutcomeStore("idempotency", boto3.client("dynamodb", region_name=REGION), 3600)
    assert outcomes.get("denied").outcome == "failed"
    assert outcomes.get("gone").outcome == "succeeded"
    assert outcomes.get("flaky").outcome == "retrying"
    assert outcomes.get("unhandled").outcome == "unhandled"
    assert outcomes.get("ok-1").handlers["counter"]["result"] == "counted ok-1"
    assert sorted(outcomes.get(nid).outcome for nid in ("shared-a", "shared-b")) == ["succeeded", "unchanged"]


def test_transient_failure_recovers_without_rerunning_finished_work(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    counter.transient_failures["retry-me"] = 1
    put(sqs, url, [notification("retry-me")])

    event, response = run(processor, sqs, url, 1)
    assert failures(response, event) == {"retry-me"}
    release(sqs, url, event)
    event, response = run(processor, sqs, url, 1)

    assert response["batchItemFailures"] == []
    assert counter.runs["retry-me"] == 2
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "retry-me")] == [True]


def test_feedback_failure_retries_feedback_only(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    sandbox.set_faults(rules=[{"path": "/v1/webhooknotificationfeedback", "status": 503, "times": 4}])
    put(sqs, url, [notification("fb")])

    event, response = run(processor, sqs, url, 1)
    assert failures(response, event) == {"fb"}
    release(sqs, url, event)
    fetched = len(gets(sandbox, "/v1/customer/10001"))
    event, response = run(processor, sqs, url, 1)

    assert response["batchItemFailures"] == []
    assert counter.runs["fb"] == 1, "the handler ran again although it had succeeded"
    assert len(gets(sandbox, "/v1/customer/10001")) == fetched, "the resource was fetched again"
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "fb")] == [True]


class Crash(BaseException):
    """The process dying: nothing is cleaned up."""


def test_crash_after_handler_before_feedback(processor, counter, queues, sandbox, monkeypatch):
    sqs, url = queues["sqs"], queues["queue_url"]
    client = processor.visma_client()
    real_post = client.post_feedback
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash
        return real_post(*args, **kwargs)

    monkeypatch.setattr(client, "post_feedback", crash_once)
    put(sqs, url, [notification("crash")])
    event = receive(sqs, url, 1)
    with pytest.raises(Crash):
        processor.handler(event, LambdaContext("processor", 3.0))
    time.sleep(3.2)  # the in-progress records expire with the crashed invocation
    release(sqs, url, event)

    event, response = run(processor, sqs, url, 1)

    assert response["batchItemFailures"] == []
    assert counter.runs["crash"] == 1
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "crash")] == [True]


def test_last_receive_posts_failure_feedback(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    sandbox.set_faults(rules=[{"path": "/v1/customer/down", "status": 500}])
    put(sqs, url, [notification("doomed", "/v1/customer/down")])

    for attempt in range(1, MAX_RECEIVE + 1):
        event, response = run(processor, sqs, url, 1)
        assert failures(response, event) == {"doomed"}
        posted = feedback_for(sandbox.feedback, "doomed")
        assert len(posted) == (1 if attempt == MAX_RECEIVE else 0)
        release(sqs, url, event)

    assert posted[0]["isSuccess"] is False
    assert "gave up after 3 attempts" in posted[0]["description"]


def test_throttling_waits_in_a_fresh_copy_without_using_a_receive(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    sandbox.set_faults(rules=[{"path": "/v1/customer/busy", "status": 429, "times": 1, "retry_after": 1}])
    put(sqs, url, [notification("busy", "/v1/customer/busy")])

    event, response = run(processor, sqs, url, 1)

    assert response["batchItemFailures"] == [], "a wait is not a failure: the copy is acknowledged"
    outcomes = DynamoDBOutcomeStore("idempotency", boto3.client("dynamodb", region_name=REGION), 3600)
    assert outcomes.get("busy").outcome == "throttled"
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None
    time.sleep(3.2)  # the sandbox's Retry-After is 1 s, plus up to 2 s of jitter, rounded up
    event, response = run(processor, sqs, url, 1)
    (copy,) = event["Records"]
    assert copy["attributes"]["ApproximateReceiveCount"] == "1"
    assert copy["messageAttributes"]["waits"]["stringValue"] == "1"
    assert response["batchItemFailures"] == []
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "busy")] == [True]


def test_redelivered_notification_is_a_duplicate(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    put(sqs, url, [notification("again")])
    run(processor, sqs, url, 1)
    put(sqs, url, [notification("again")])
    _, response = run(processor, sqs, url, 1)

    assert response["batchItemFailures"] == []
    assert counter.runs["again"] == 1
    assert len(feedback_for(sandbox.feedback, "again")) == 1


def test_a_copy_in_the_same_batch_is_a_duplicate_in_the_history(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    put(sqs, url, [notification("twice"), notification("twice")])
    _, response = run(processor, sqs, url, 2)

    assert response["batchItemFailures"] == []
    assert counter.runs["twice"] == 1
    assert len(feedback_for(sandbox.feedback, "twice")) == 1
    record = DynamoDBOutcomeStore("idempotency", boto3.client("dynamodb", region_name=REGION), 0).get("twice")
    assert [h.step for h in record.history] == ["received", "succeeded", "duplicate"]
    assert record.history[-1].detail == "an earlier copy in the batch was processed"
    assert record.history[-1].found == "succeeded"


def test_force_bypasses_dedup(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    put(sqs, url, [notification("forced")])
    run(processor, sqs, url, 1)
    put(sqs, url, [notification("forced")], attributes={"force": "replay-1"})
    run(processor, sqs, url, 1)

    assert counter.runs["forced"] == 2


def test_garbage_message_is_kept_for_the_dlq(processor, counter, queues):
    sqs, url = queues["sqs"], queues["queue_url"]
    sqs.send_message(QueueUrl=url, MessageBody="not json at all")
    _, response = run(processor, sqs, url, 1)
    assert len(response["batchItemFailures"]) == 1


def test_quarantined_item_is_revalidated(processor, counter, queues, sandbox):
    sqs, url = queues["sqs"], queues["queue_url"]
    item = {
        "notificationId": "q-1",
        "contextId": "1262489",
        "event": "customer_changed",
        "resourceUri": "https://evil.example/v1/customer/1",
    }
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"quarantine": {"reasons": ["x"], "metadata": {}, "item": item}}),
        MessageAttributes={"notification_id": {"DataType": "String", "StringValue": "q-1"}},
    )
    _, response = run(processor, sqs, url, 1)

    assert response["batchItemFailures"] == []
    assert counter.runs["q-1"] == 0
    posted = feedback_for(sandbox.feedback, "q-1")
    assert [f["isSuccess"] for f in posted] == [False]
    assert "not allow-listed" in posted[0]["description"]
    assert not any("evil" in r["path"] for r in sandbox.requests)


@pytest.mark.parametrize("secret", ['["client", "secret"]', '{"client_id": "processor-test"}'])
def test_a_visma_client_secret_of_the_wrong_shape_is_refused_clearly(processor, secret):
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.put_secret_value(SecretId="visma-client", SecretString=secret)
    processor.visma_client.cache_clear()
    with pytest.raises(ConfigurationError, match="a JSON object with client_id and client_secret"):
        processor.visma_client()
