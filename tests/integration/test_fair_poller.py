"""Fair queues in the emulated event source mapping: pollers sharing a FairShare on moto."""

from __future__ import annotations

import threading
import time
from collections import Counter

from tests.conftest import REGION, drain
from visma_webhooks_local.stack.poller import FairShare, Poller, PollerConfig, join_all

NOISY, QUIET = "1000001", "2000002"


def enqueue(queues, tenant: str, count: int) -> None:
    sqs = queues["sqs"]
    for start in range(0, count, 10):
        entries = [
            {
                "Id": str(i),
                "MessageBody": f"{tenant}-{i}",
                "MessageGroupId": tenant,
                "MessageAttributes": {"tenant_id": {"DataType": "String", "StringValue": tenant}},
            }
            for i in range(start, min(count, start + 10))
        ]
        sqs.send_message_batch(QueueUrl=queues["queue_url"], Entries=entries)


class SlowProcessor:
    """A processor stub: every record succeeds, each batch takes a while; batches are recorded.

    The first batch lasts until the second has begun, so that it is in flight while the
    other poller receives, whatever the machine's speed.
    """

    def __init__(self, seconds: float = 0.3):
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self._lock = threading.Lock()
        self._second = threading.Event()

    def __call__(self, event, context):
        with self._lock:
            self.batches.append([r["body"] for r in event["Records"]])
            first = len(self.batches) == 1
        if first:
            self._second.wait(5)
        self._second.set()
        time.sleep(self.seconds)
        return {"batchItemFailures": []}

    def batch_of(self, body: str) -> int:
        return next(i for i, batch in enumerate(self.batches) if body in batch)


def pollers(queues, invoke, count: int, fair: FairShare | None) -> tuple[list[Poller], threading.Event]:
    sqs, url = queues["sqs"], queues["queue_url"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    config = PollerConfig(url, arn, REGION, "ProcessorFunction", 5.0, wait_seconds=0)
    stop = threading.Event()
    started = [
        Poller(config, sqs, invoke, stop=stop, name=f"poller-{i}", fair=fair).start() for i in range(count)
    ]
    return started, stop


def share(queues, **options) -> FairShare:
    return FairShare(
        queues["sqs"], queues["queue_url"], visibility_timeout=180, invocation_timeout=5, **options
    )


def run_until(processor: SlowProcessor, total: int, started: list[Poller], stop: threading.Event) -> None:
    deadline = time.monotonic() + 30
    while sum(len(b) for b in processor.batches) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert join_all(started, 10)


def test_a_quiet_tenant_is_not_delayed_by_another_tenants_backlog(queues):
    enqueue(queues, NOISY, 100)
    enqueue(queues, QUIET, 3)
    processor = SlowProcessor()
    fair = share(queues)

    started, stop = pollers(queues, processor, 2, fair)
    run_until(processor, 103, started, stop)

    bodies = Counter(body for batch in processor.batches for body in batch)
    assert bodies == Counter([f"{NOISY}-{i}" for i in range(100)] + [f"{QUIET}-{i}" for i in range(3)])
    assert max(bodies.values()) == 1  # each processed exactly once
    assert all(processor.batch_of(f"{QUIET}-{i}") <= 2 for i in range(3)), processor.batches[:3]
    assert len(processor.batches) >= 11  # ... while the backlog took every batch it needed
    assert drain(queues["sqs"], queues["queue_url"]) == []
    assert drain(queues["sqs"], queues["dlq_url"]) == []
    assert (fair.held, fair.in_flight()) == (0, {})


def test_without_the_share_the_backlog_goes_first(queues):
    """What the share prevents: moto (like a queue without fair queues) hands out the oldest first."""
    enqueue(queues, NOISY, 100)
    enqueue(queues, QUIET, 3)
    processor = SlowProcessor()

    started, stop = pollers(queues, processor, 2, None)
    run_until(processor, 103, started, stop)

    assert min(processor.batch_of(f"{QUIET}-{i}") for i in range(3)) >= 9


def test_each_message_is_received_once_for_the_invocation_it_goes_to(queues):
    enqueue(queues, NOISY, 60)
    enqueue(queues, QUIET, 5)
    receive_counts: list[str] = []

    def invoke(event, context):
        receive_counts.extend(r["attributes"]["ApproximateReceiveCount"] for r in event["Records"])
        time.sleep(0.05)
        return {"batchItemFailures": []}

    started, stop = pollers(queues, invoke, 3, share(queues))
    deadline = time.monotonic() + 30
    while len(receive_counts) < 65 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert join_all(started, 10)

    assert receive_counts == ["1"] * 65


def test_held_messages_are_kept_invisible_and_go_back_on_release(queues):
    enqueue(queues, NOISY, 25)
    fair = share(queues, crowd=5)
    fair.visibility_timeout, fair.margin = 2, 1.5  # every check finds them close to the end
    stop = threading.Event()
    fair.fill(5, 0, stop)
    batch = fair.take(5)  # five in flight: the group is crowded, the next fill looks ahead
    fair.fill(5, 0, stop)
    assert (len(batch), fair.held, fair.in_flight()) == (5, 20, {NOISY: 5})

    fair.keep(stop)
    time.sleep(2.5)  # beyond the 2 s they were received for: the keeper extended the held ones
    sqs, url = queues["sqs"], queues["queue_url"]
    returned = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(m["MessageId"] for m in returned) == sorted(m["MessageId"] for m in batch)  # not kept
    stop.set()

    fair.release()
    fair.done(batch)
    back = drain(sqs, url)
    assert (len(back), fair.held, fair.in_flight()) == (20, 0, {})


def test_a_failed_record_is_left_to_return_and_is_not_held(queues):
    enqueue(queues, QUIET, 2)
    fair = share(queues)
    failing = {}

    def invoke(event, context):
        failing["id"] = event["Records"][0]["messageId"]
        return {"batchItemFailures": [{"itemIdentifier": failing["id"]}]}

    sqs, url = queues["sqs"], queues["queue_url"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    poller = Poller(
        PollerConfig(url, arn, REGION, "ProcessorFunction", 5.0, wait_seconds=0),
        sqs,
        invoke,
        fair=fair,
        report=lambda records: None,
    )
    records = poller.process(poller.receive())

    assert [r.retried for r in records].count(True) == 1
    assert (fair.held, fair.in_flight()) == (0, {})
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"  # left to its visibility


def test_a_message_taken_after_a_while_held_gets_a_full_visibility_for_its_invocation(queues):
    enqueue(queues, QUIET, 3)
    fair = FairShare(queues["sqs"], queues["queue_url"], visibility_timeout=4, invocation_timeout=1)
    received = time.monotonic()
    fair.fill(1, 0, threading.Event())
    time.sleep(1.5)  # 2.5 s of its visibility left: more than the keeper's margin, less than a receive's

    taken = fair.take(3)
    time.sleep(max(0.0, received + 4.6 - time.monotonic()))  # past the visibility it was received with

    assert len(taken) == 3
    assert queues["sqs"].receive_message(QueueUrl=queues["queue_url"]).get("Messages", []) == []
