"""The emulated SQS event source mapping on moto: what it deletes after each kind of invocation."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import REGION
from visma_webhooks_local.stack.poller import Poller, PollerConfig


def queued(queues, count: int) -> list[str]:
    sqs, url = queues["sqs"], queues["queue_url"]
    ids = []
    for i in range(count):
        response = sqs.send_message(
            QueueUrl=url,
            MessageBody=f'{{"n": {i}}}',
            MessageAttributes={"notification_id": {"DataType": "String", "StringValue": f"n-{i}"}},
        )
        ids.append(response["MessageId"])
    return ids


def poller(queues, invoke, timeout: float = 5.0) -> Poller:
    sqs = queues["sqs"]
    arn = sqs.get_queue_attributes(QueueUrl=queues["queue_url"], AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    config = PollerConfig(queues["queue_url"], arn, REGION, "ProcessorFunction", timeout, wait_seconds=0)
    return Poller(config, sqs, invoke, report=lambda records: None)


def left_on_the_queue(queues) -> int:
    attributes = queues["sqs"].get_queue_attributes(
        QueueUrl=queues["queue_url"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_only_the_records_not_reported_as_failures_are_deleted(queues):
    ids = queued(queues, 3)
    seen = {}

    def invoke(event, context):
        seen["records"] = [r["messageId"] for r in event["Records"]]
        seen["remaining"] = context.get_remaining_time_in_millis()
        return {"batchItemFailures": [{"itemIdentifier": ids[1]}]}

    p = poller(queues, invoke)
    records = p.process(p.receive())

    assert sorted(seen["records"]) == sorted(ids)
    assert 4000 < seen["remaining"] <= 5000
    assert left_on_the_queue(queues) == 1
    assert [r.retried for r in sorted(records, key=lambda r: ids.index(r.message_id))] == [False, True, False]


def test_a_function_error_leaves_the_whole_batch(queues):
    queued(queues, 2)

    def invoke(event, context):
        raise RuntimeError("handler crashed")

    p = poller(queues, invoke)
    records = p.process(p.receive())

    assert left_on_the_queue(queues) == 2
    assert all(r.retried and r.error == "RuntimeError: handler crashed" for r in records)


@pytest.mark.parametrize("late", [False, True])
def test_an_invocation_past_the_function_timeout_deletes_nothing(queues, late):
    queued(queues, 2)

    def invoke(event, context):
        if late:
            time.sleep(1.2)
        return {"batchItemFailures": []}

    p = poller(queues, invoke, timeout=1.0)
    records = p.process(p.receive())

    if late:  # Lambda would have stopped it at 1 s: every record returns
        assert left_on_the_queue(queues) == 2
        assert all(r.retried and r.error == "Task timed out after 1 s" for r in records)
    else:
        assert left_on_the_queue(queues) == 0
        assert not any(r.retried for r in records)


def test_a_receive_that_fails_within_the_batching_window_keeps_what_was_received(queues):
    ids = queued(queues, 2)
    p = poller(queues, lambda event, context: {"batchItemFailures": []})
    p.config.batch_size, p.config.batching_window = 10, 5.0
    calls = []

    def fail_after_the_first(**kwargs):
        calls.append(kwargs)
        if len(calls) > 1:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "ReceiveMessage")
        return real(**kwargs)

    real, p.sqs.receive_message = p.sqs.receive_message, fail_after_the_first
    try:
        messages = p.receive()
    finally:
        p.sqs.receive_message = real

    assert sorted(m["MessageId"] for m in messages) == sorted(ids)
    assert len(calls) == 2
