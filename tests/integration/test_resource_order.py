"""Resource order and held notifications: the real processor handler on moto, against the sandbox.

* The stale-order race: two notifications of one resource in two processor instances at
  once; the first one's GET is slow and returns version 1, the resource is changed to
  version 2 meanwhile and the second one hands version 2 to the handler. A handler must
  never receive version 1 after that.
* A copy that finds its notification held waits at least as long as the holder may hold it.
* A copy on its last receive never posts "gave up" for a notification that completed.
"""

from __future__ import annotations

import importlib
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import REGION, drain
from tests.processor_support import (
    feedback_for,
    gets,
    load_processor,
    notification,
    process_until_empty,
    put,
    receive,
    waits_of,
)
from visma_webhooks.adapters.notification_state import DynamoDBNotificationState
from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks.notification_handlers import registry
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext

TENANT = "1262489"
RESOURCE = "/v1/customer/40001"
V1 = {"number": "40001", "name": "Version one", "lastModifiedDateTime": "2026-11-24T10:00:00.000"}
V2 = {"number": "40001", "name": "Version two", "lastModifiedDateTime": "2026-11-24T10:05:00.000"}
SLOW_GET_SECONDS = 5.0  # the first GET's delay: the second notification is done well within it


@pytest.fixture
def sandbox():
    with VismaSandbox(client_id="processor-test", client_secret="processor-test-secret") as server:
        yield server


@pytest.fixture
def counter():
    module = importlib.import_module("tests.counting_handlers")
    module.reset()
    return module


@pytest.fixture
def processors(monkeypatch, queues, idempotency_table, sandbox, counter):
    """Two processor instances (two cold-started function modules), sharing only AWS."""
    first = load_processor(monkeypatch, queues, sandbox, MAX_RECEIVE_COUNT="5")
    second = load_function("processor")
    return first, second


def outcomes() -> DynamoDBOutcomeStore:
    return DynamoDBOutcomeStore("idempotency", boto3.client("dynamodb", region_name=REGION), 3600)


def received_as_one_event(sqs, url: str, nid: str) -> dict:
    event = receive(sqs, url, 1)
    [record] = event["Records"]
    assert record["messageAttributes"]["notification_id"]["stringValue"] == nid
    return event


def invoke(app, event: dict, sqs, url: str) -> dict:
    from tests.processor_support import delete_succeeded

    response = app.handler(event, LambdaContext("processor", 30.0))
    delete_succeeded(sqs, url, event, response)
    return response


def test_a_slow_fetch_of_an_older_state_never_reaches_the_handler_after_a_newer_one(
    processors, queues, sandbox
):
    first, second = processors
    sqs, url = queues["sqs"], queues["queue_url"]
    seen: list[str] = []  # what the handler received, in order, from either instance
    lock = threading.Lock()

    def record(notification, resource, context):
        with lock:
            seen.append(resource["name"])
        return resource["name"]

    registry.add(("ordertest_*",), record, "order-recorder")
    sandbox.set_resource(RESOURCE, V1)
    # the first GET is slow and answers version 1 (as read before the change)
    slow = sandbox.add_rule(RESOURCE, 200, times=1, method="GET", delay=SLOW_GET_SECONDS, body=V1)

    put(sqs, url, [notification("order-1", RESOURCE, event="ordertest_changed")])
    event_1 = received_as_one_event(sqs, url, "order-1")
    responses: dict[str, dict] = {}
    slow_one = threading.Thread(target=lambda: responses.update(first=invoke(first, event_1, sqs, url)))
    slow_one.start()
    while slow.hits == 0:  # the first instance's GET has reached Visma and hangs there
        assert slow_one.is_alive()
        time.sleep(0.01)

    sandbox.set_resource(RESOURCE, V2)  # an ERP user changes the customer meanwhile
    put(sqs, url, [notification("order-2", RESOURCE, event="ordertest_changed")])
    event_2 = received_as_one_event(sqs, url, "order-2")
    responses["second"] = invoke(second, event_2, sqs, url)
    assert slow_one.is_alive(), "the premise: the second notification finished while the first GET hung"
    slow_one.join()

    process_until_empty(first, sqs, url)  # a copy of the first, if it was put back to wait

    assert seen == ["Version two"], f"the handler received {seen}"
    assert responses["first"]["batchItemFailures"] == []
    assert responses["second"]["batchItemFailures"] == []
    first_outcome = outcomes().get("order-1", TENANT)
    assert first_outcome.outcome in {"superseded", "unchanged"}, first_outcome.history
    assert outcomes().get("order-2", TENANT).outcome == "succeeded"
    for nid in ("order-1", "order-2"):
        assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, nid)] == [True], nid
    assert drain(sqs, queues["dlq_url"]) == []
    assert len(gets(sandbox, RESOURCE)) >= 2


def hold(nid: str, seconds: float) -> None:
    """Another copy claims ``nid`` and holds it for ``seconds`` (its invocation's deadline)."""
    state = DynamoDBNotificationState("idempotency", boto3.client("dynamodb", region_name=REGION), 3600)
    state.claim(
        TENANT,
        nid,
        "main",
        owner="the-other-copy",
        until=time.time() + seconds,
        attempt=1,
        message_id="the-other-message",
        summary={"tenant_id": TENANT, "event": "customer_changed"},
    )


def receive_times(sqs, url: str, times: int) -> dict:
    """Receive the one message ``times`` times (each returned at once): its receive count is ``times``."""
    for _ in range(times - 1):
        event = receive(sqs, url, 1)
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=event["Records"][0]["receiptHandle"], VisibilityTimeout=0
        )
    event = receive(sqs, url, 1)
    assert event["Records"][0]["attributes"]["ApproximateReceiveCount"] == str(times)
    return event


def sent_delays(app) -> list[int]:
    delays: list[int] = []
    app.sqs_client().meta.events.register(
        "provide-client-params.sqs.SendMessage", lambda params, **_: delays.append(params["DelaySeconds"])
    )
    return delays


@pytest.mark.parametrize("receives", [1, 5])
def test_a_copy_finding_its_notification_held_waits_for_the_holders_lease(
    processors, queues, sandbox, counter, receives
):
    app, _ = processors
    sqs, url = queues["sqs"], queues["queue_url"]
    held_for = 300.0  # longer than every backoff, as a processor's timeout of 180 s or more
    hold("held-1", held_for)
    put(sqs, url, [notification("held-1", "/v1/customer/10001")])
    delays = sent_delays(app)
    event = receive_times(sqs, url, receives)  # 5: the last receive before the DLQ

    response = invoke(app, event, sqs, url)

    assert response["batchItemFailures"] == [], "a wait must not use up a receive"
    [delay] = delays
    assert delay >= held_for - 5, f"put back for {delay} s while the holder may hold it {held_for} s"
    assert drain(sqs, url) == [], "the copy is delayed until the lease has ended"
    assert feedback_for(sandbox.feedback, "held-1") == [], "no feedback, and no 'gave up', while held"
    assert counter.runs["held-1"] == 0
    record = outcomes().get("held-1", TENANT)
    assert record.outcome == "waiting"
    assert drain(sqs, queues["dlq_url"]) == []


def test_the_copy_put_back_to_wait_is_a_fresh_message(processors, queues, sandbox, counter):
    app, _ = processors
    sqs, url = queues["sqs"], queues["queue_url"]
    hold("held-2", 1.0)  # a lease about to end
    put(sqs, url, [notification("held-2", "/v1/customer/10001")])
    event = receive_times(sqs, url, 5)

    invoke(app, event, sqs, url)
    handed = process_until_empty(app, sqs, url)

    assert [waits_of(r) for r in handed] == [1]
    assert handed[0]["attributes"]["ApproximateReceiveCount"] == "1"
    assert counter.runs["held-2"] == 1
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "held-2")] == [True]
    assert drain(sqs, queues["dlq_url"]) == []


def test_a_transient_table_error_on_the_last_receive_never_posts_gave_up_for_a_completed_notification(
    processors, queues, sandbox, counter
):
    app, _ = processors
    sqs, url = queues["sqs"], queues["queue_url"]
    put(sqs, url, [notification("done-1", "/v1/customer/10001")])
    process_until_empty(app, sqs, url)
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "done-1")] == [True]

    put(sqs, url, [notification("done-1", "/v1/customer/10001")])  # a copy delivered again
    event = receive_times(sqs, url, 5)  # on its last receive before the DLQ
    failed: list[str] = []

    def throttle_the_claim(params, **_):
        if not failed:
            failed.append(params["Key"]["id"]["S"])
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}},
                "UpdateItem",
            )

    app._dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", throttle_the_claim)
    app._dynamodb.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems", throttle_the_claim
    )

    invoke(app, event, sqs, url)

    assert failed, "the copy's claim met the table's error"
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "done-1")] == [True], (
        "'gave up' posted for a notification that completed"
    )
    assert counter.runs["done-1"] == 1
    assert outcomes().get("done-1", TENANT).effective_outcome == "succeeded"
