"""``replay`` on moto: receive, send, then delete, so that a failed send loses nothing."""

from __future__ import annotations

from tests.conftest import drain
from visma_webhooks_local.replaying import replay


def on_the_dlq(queues, count: int) -> None:
    for i in range(count):
        queues["sqs"].send_message(
            QueueUrl=queues["dlq_url"],
            MessageBody=f'{{"n": {i}}}',
            MessageAttributes={
                "event": {
                    "DataType": "String",
                    "StringValue": "customer_changed" if i % 2 else "supplier_changed",
                },
                "tenant_id": {"DataType": "String", "StringValue": "1262489"},
            },
        )


def test_a_send_that_fails_leaves_every_message_on_the_dlq(queues):
    on_the_dlq(queues, 3)
    missing = queues["queue_url"].rsplit("/", 1)[0] + "/no-such-queue"

    result = replay(queues["sqs"], queues["dlq_url"], missing, wait_seconds=0)

    assert (result.matched, result.moved, result.failed) == (3, 0, 3)
    assert all(
        "no-such-queue" in e or "NonExistentQueue" in e or "does not exist" in e for e in result.errors
    )
    assert len(drain(queues["sqs"], queues["dlq_url"])) == 3  # visible again at once


def test_filters_and_limit_move_only_what_they_name_and_keep_bodies(queues):
    on_the_dlq(queues, 4)

    dry = replay(queues["sqs"], queues["dlq_url"], queues["queue_url"], dry_run=True, wait_seconds=0)
    assert (dry.matched, dry.moved) == (4, 0)
    result = replay(
        queues["sqs"],
        queues["dlq_url"],
        queues["queue_url"],
        event_glob="customer_*",
        limit=1,
        wait_seconds=0,
    )

    assert (result.examined, result.matched, result.moved) == (4, 1, 1)
    [moved] = drain(queues["sqs"], queues["queue_url"])
    assert moved["MessageAttributes"]["event"]["StringValue"] == "customer_changed"
    assert moved["Body"] in {'{"n": 1}', '{"n": 3}'}
    assert len(drain(queues["sqs"], queues["dlq_url"])) == 3
