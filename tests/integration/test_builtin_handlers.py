"""The built-in handlers against moto: EventBridge (with the S3 claim check) and the S3 archive."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from tests.conftest import REGION
from tests.processor_support import notification
from visma_webhooks.notification_handlers import (
    HandlerContext,
    Registry,
    aws_clients,
    handler,
    load_modules,
    registry,
)
from visma_webhooks.notification_handlers.eventbridge import MAX_ENTRY_BYTES, SOURCE, detail_type
from visma_webhooks.notification_handlers.s3_archive import archive_key

BUCKET = "visma-archive"


@pytest.fixture
def aws_handlers(aws, monkeypatch):
    aws_clients.clear()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    events = boto3.client("events", region_name=REGION)
    events.create_event_bus(Name="erp")
    # capture what reaches the bus: a rule sending every visma.net.erp event to a queue
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="tap", EventBusName="erp", EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="tap", EventBusName="erp", Targets=[{"Id": "q", "Arn": queue_arn}])
    monkeypatch.setenv("EVENT_BUS_NAME", "erp")
    monkeypatch.setenv("ARCHIVE_BUCKET", BUCKET)
    load_modules(
        [
            "visma_webhooks.notification_handlers.eventbridge",
            "visma_webhooks.notification_handlers.s3_archive",
        ]
    )
    yield {"s3": s3, "sqs": sqs, "tap": queue_url}
    aws_clients.clear()
    registry.clear()


def context():
    return HandlerContext(logging.getLogger("test"), "1262489", visma=None, notification_id="n")


def bus_events(sqs, queue_url):
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_eventbridge_publishes_notification_and_resource(aws_handlers):
    n = notification("eb-1", "/v1/salesorder/1286", event="salesorder_changed")
    entry = {h.name: h for h in registry.matching(n.event)}["eventbridge"]

    result = entry.fn(n, {"orderNo": "1286", "status": "Open"}, context())

    assert result == "sent to erp"
    (event,) = bus_events(aws_handlers["sqs"], aws_handlers["tap"])
    assert event["source"] == "visma.net.erp"
    assert event["detail-type"] == "Salesorder Changed"
    assert event["detail"]["notification"]["notification_id"] == "eb-1"
    assert event["detail"]["resource"] == {"orderNo": "1286", "status": "Open"}


def test_eventbridge_sends_a_claim_check_above_the_entry_limit(aws_handlers):
    n = notification("eb-big", "/v1/customer/10001")
    big = {"notes": "x" * MAX_ENTRY_BYTES}
    entry = {h.name: h for h in registry.matching(n.event)}["eventbridge"]

    result = entry.fn(n, big, context())

    key = "claim-checks/1262489/eb-big.json"
    assert result == f"sent to erp with claim check s3://{BUCKET}/{key}"
    (event,) = bus_events(aws_handlers["sqs"], aws_handlers["tap"])
    assert "resource" not in event["detail"]
    assert event["detail"]["resource_ref"] == {"bucket": BUCKET, "key": key}
    stored = aws_handlers["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert json.loads(stored) == big


def test_s3_archive_writes_one_object_per_notification(aws_handlers):
    n = notification("arch-1", "/v1/customer/10001")
    entry = {h.name: h for h in registry.matching(n.event)}["s3_archive"]

    result = entry.fn(n, {"number": "10001"}, context())

    key = "1262489/customer_changed/10001/20261124T100000Z-arch-1.json"
    assert archive_key(n) == key
    assert result == f"archived to s3://{BUCKET}/{key}"
    body = json.loads(aws_handlers["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body == {"notification": n.model_dump(mode="json"), "resource": {"number": "10001"}}


def test_archive_key_without_resource_or_time():
    n = notification("arch-2", None).model_copy(update={"occurred_at": None})
    assert archive_key(n) == "1262489/customer_changed/_/unknown-arch-2.json"


def test_detail_type_from_event():
    assert detail_type("ar_invoice_status_changed") == "Ar Invoice Status Changed"


def test_glob_routing_and_several_handlers_per_event():
    local = Registry()
    local.add(("salesorder_*",), lambda *a: "a", name="orders")
    local.add(("*_deleted", "*_removed"), lambda *a: "b", name="deletions")
    local.add(("*",), lambda *a: "c", name="all")
    assert [h.name for h in local.matching("salesorder_deleted")] == ["orders", "deletions", "all"]
    assert [h.name for h in local.matching("customer_removed")] == ["deletions", "all"]
    assert [h.name for h in local.matching("customer_changed")] == ["all"]


def test_decorator_registers_in_module_order():
    registry.clear()

    @handler("Customer_*", name="upper")
    def upper(notification, resource, context):
        return "x"

    assert [h.name for h in registry.matching("customer_changed")] == ["upper"]
    registry.clear()
