"""``replay`` on moto: receive, send, then delete, so that a failed send loses nothing."""

from __future__ import annotations

from tests.conftest import drain
from visma_webhooks_local.replaying import replay


def on_the_dlq(queues, count: int, tenant: str = "1262489") -> None:
    for i in range(count):
        queues["sqs"].send_message(
            QueueUrl=queues["dlq_url"],
            MessageBody=f'{{"n": {i}}}',
            MessageAttributes={
                "event": {
                    "DataType": "String",
                    "StringValue": "customer_changed" if i % 2 else "supplier_changed",
                },
                "tenant_id": {"DataType": "String", "StringValue": tenant},
            },
        )


def received_groups(queues) -> dict[str, str | None]:
    """Body → ``MessageGroupId`` of every message on the queue."""
    found = {}
    while (
        batch := queues["sqs"]
        .receive_message(
            QueueUrl=queues["queue_url"], MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        )
        .get("Messages", [])
    ):
        found.update({m["Body"]: m["Attributes"].get("MessageGroupId") for m in batch})
    return found


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


def test_replayed_copies_go_back_in_their_tenants_group(queues):
    on_the_dlq(queues, 2, tenant="9000001")
    sqs = queues["sqs"]
    sqs.send_message(QueueUrl=queues["dlq_url"], MessageBody="grouped", MessageGroupId="5551234")
    sqs.send_message(QueueUrl=queues["dlq_url"], MessageBody='{"quarantine": {}}')  # no tenant, no group

    result = replay(sqs, queues["dlq_url"], queues["queue_url"], wait_seconds=0)

    assert result.moved == 4
    assert received_groups(queues) == {
        '{"n": 0}': "9000001",
        '{"n": 1}': "9000001",
        "grouped": "5551234",
        '{"quarantine": {}}': "unknown",
    }
