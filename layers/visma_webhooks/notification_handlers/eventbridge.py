"""Built-in ``eventbridge`` handler: publishes each notification with its resource.

``PutEvents`` to ``EVENT_BUS_NAME`` with source ``visma.net.erp``, detail-type
``<Entity> <Change>`` (``salesorder_changed`` → ``Salesorder Changed``) and detail
``{"notification", "resource"}``. An entry above EventBridge's size limit carries a
claim check instead of the resource: ``{"resource_ref": {"bucket", "key"}}``, the
resource being stored in ``ARCHIVE_BUCKET`` under ``claim-checks/``.

It fetches the resource (consumers get the state, not just the news of a change); a
deletion is published with ``"resource": null`` and ``notification.deleted`` true.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from visma_webhooks.domain.models import Notification
from visma_webhooks.notification_handlers import HandlerContext, aws_clients, handler

if TYPE_CHECKING:
    from types_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SOURCE = "visma.net.erp"
MAX_ENTRY_BYTES = 1_048_576
CLAIM_CHECK_PREFIX = "claim-checks/"


def detail_type(event: str) -> str:
    return " ".join(part.capitalize() for part in event.split("_"))


def entry_size(entry: PutEventsRequestEntryTypeDef) -> int:
    """EventBridge's entry size: source, detail-type, detail and resources, in UTF-8 bytes."""
    size = len(entry["Source"].encode()) + len(entry["DetailType"].encode()) + len(entry["Detail"].encode())
    return size + sum(len(r.encode()) for r in entry.get("Resources", []))


@handler("*", name="eventbridge")
def publish(notification: Notification, resource: Any, context: HandlerContext) -> str:
    bus = os.environ["EVENT_BUS_NAME"]
    summary = notification.model_dump(mode="json")
    entry: PutEventsRequestEntryTypeDef = {
        "Source": SOURCE,
        "DetailType": detail_type(notification.event),
        "Detail": json.dumps({"notification": summary, "resource": resource}),
        "EventBusName": bus,
    }
    claim = None
    if entry_size(entry) > MAX_ENTRY_BYTES:
        bucket = os.environ["ARCHIVE_BUCKET"]
        key = f"{CLAIM_CHECK_PREFIX}{notification.tenant_id}/{notification.notification_id}.json"
        aws_clients.s3().put_object(
            Bucket=bucket, Key=key, Body=json.dumps(resource).encode(), ContentType="application/json"
        )
        claim = {"bucket": bucket, "key": key}
        entry["Detail"] = json.dumps({"notification": summary, "resource_ref": claim})
    response = aws_clients.events().put_events(Entries=[entry])
    if response.get("FailedEntryCount"):
        failure = response["Entries"][0]
        raise RuntimeError(f"PutEvents failed: {failure.get('ErrorCode')} {failure.get('ErrorMessage')}")
    return f"sent to {bus}" + (f" with claim check s3://{claim['bucket']}/{claim['key']}" if claim else "")
