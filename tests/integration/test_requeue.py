"""Re-enqueueing a waiting message (adapters.aws.SqsRequeuer) on moto: a fresh, delayed copy."""

from __future__ import annotations

import math
import time

import pytest

from visma_webhooks.adapters.aws import MAX_DELAY_SECONDS, SqsRequeuer
from visma_webhooks.domain.queueing import UNKNOWN_GROUP, WAITS_ATTRIBUTE

ATTRIBUTES = {"event": "customer_changed", "tenant_id": "1262489", "notification_id": "n-1"}


def receive(queues) -> list[dict]:
    return (
        queues["sqs"]
        .receive_message(
            QueueUrl=queues["queue_url"],
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        .get("Messages", [])
    )


def strings(message: dict) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}


def sent_delays(sqs) -> list[int]:
    """The DelaySeconds of every SendMessage call the client makes from now on."""
    delays: list[int] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessage", lambda params, **_: delays.append(params["DelaySeconds"])
    )
    return delays


def test_the_copy_waits_out_its_delay_and_starts_again_at_receive_count_1(queues):
    sqs = queues["sqs"]
    sqs.send_message(
        QueueUrl=queues["queue_url"],
        MessageBody='{"n": 1}',
        MessageGroupId="1262489",
        MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in ATTRIBUTES.items()},
    )
    for _ in range(2):  # the original has been received twice: its count is 2
        [original] = receive(queues)
        sqs.change_message_visibility(
            QueueUrl=queues["queue_url"], ReceiptHandle=original["ReceiptHandle"], VisibilityTimeout=0
        )
    assert original["Attributes"]["ApproximateReceiveCount"] == "2"

    assert SqsRequeuer(sqs, queues["queue_url"]).requeue(
        original["Body"], strings(original), delay=1.2, tenant_id="1262489"
    )
    sqs.delete_message(QueueUrl=queues["queue_url"], ReceiptHandle=original["ReceiptHandle"])  # acknowledged
    sent = time.monotonic()

    assert receive(queues) == []  # invisible for its delay (1.2 s rounds up to 2 s)
    while not (copies := receive(queues)):
        assert time.monotonic() - sent < 5
        time.sleep(0.1)
    assert time.monotonic() - sent >= 1.5
    [copy] = copies
    assert copy["Body"] == '{"n": 1}'
    assert strings(copy) == {**ATTRIBUTES, WAITS_ATTRIBUTE: "1"}
    assert copy["Attributes"]["MessageGroupId"] == "1262489"
    assert copy["Attributes"]["ApproximateReceiveCount"] == "1"
    assert copy["MessageId"] != original["MessageId"]


@pytest.mark.parametrize(("before", "after"), [("3", "4"), ("not a number", "1"), ("", "1")])
def test_each_hop_counts_one_more_wait(queues, before, after):
    requeuer = SqsRequeuer(queues["sqs"], queues["queue_url"])

    assert requeuer.requeue("{}", {**ATTRIBUTES, WAITS_ATTRIBUTE: before}, delay=0, tenant_id="1262489")

    [copy] = receive(queues)
    assert strings(copy)[WAITS_ATTRIBUTE] == after


@pytest.mark.parametrize(
    ("delay", "sent"),
    [(0, 0), (0.2, 1), (59.01, 60), (899.5, 900), (3600, MAX_DELAY_SECONDS), (math.inf, 900), (-5, 0)],
)
def test_the_delay_is_rounded_up_and_capped_at_15_minutes(queues, delay, sent):
    delays = sent_delays(queues["sqs"])

    assert SqsRequeuer(queues["sqs"], queues["queue_url"]).requeue("{}", {}, delay=delay, tenant_id="t")

    assert delays == [sent]


def test_a_message_without_a_tenant_waits_in_the_unknown_group(queues):
    assert SqsRequeuer(queues["sqs"], queues["queue_url"]).requeue("{}", {}, delay=0, tenant_id=None)

    [copy] = receive(queues)
    assert copy["Attributes"]["MessageGroupId"] == UNKNOWN_GROUP


def test_a_refused_send_answers_false_so_the_caller_can_fall_back(queues):
    missing = queues["queue_url"].rsplit("/", 1)[0] + "/no-such-queue"

    assert not SqsRequeuer(queues["sqs"], missing).requeue("{}", ATTRIBUTES, delay=5, tenant_id="1262489")


def test_a_copy_whose_attempts_are_used_up_goes_to_the_dlq_at_once_in_its_group(queues):
    sqs = queues["sqs"]
    requeuer = SqsRequeuer(sqs, queues["queue_url"], queues["dlq_url"])

    assert requeuer.dead_letter("body", {**ATTRIBUTES, "failures": "5"}, tenant_id="1262489")

    (moved,) = sqs.receive_message(
        QueueUrl=queues["dlq_url"], AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    assert moved["Body"] == "body"
    assert strings(moved) == {**ATTRIBUTES, "failures": "5"}  # no wait counted
    assert moved["Attributes"]["MessageGroupId"] == "1262489"
    assert receive(queues) == []


def test_without_a_dlq_nothing_is_dead_lettered(queues):
    requeuer = SqsRequeuer(queues["sqs"], queues["queue_url"])

    assert requeuer.dead_letter("body", ATTRIBUTES, tenant_id="1262489") is False
    assert receive(queues) == []
