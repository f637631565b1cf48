"""Built-in ``s3_archive`` handler: one JSON object per notification in ``ARCHIVE_BUCKET``.

Key: ``{tenant}/{event}/{resource id}/{occurred_at}-{notification_id}.json``, with
``occurred_at`` as ``YYYYMMDDTHHMMSSZ`` (``unknown`` when Visma sent no time) and ``_``
for a notification that names no resource. Body: ``{"notification", "resource"}``.

It fetches the resource (the archive keeps each state); a deletion is archived with
``"resource": null`` and ``notification.deleted`` true.
"""

from __future__ import annotations

import json
import os
from typing import Any

from visma_webhooks.domain.models import Notification
from visma_webhooks.notification_handlers import HandlerContext, aws_clients, handler


def archive_key(notification: Notification) -> str:
    occurred = notification.occurred_at.strftime("%Y%m%dT%H%M%SZ") if notification.occurred_at else "unknown"
    resource_id = notification.resource_id or "_"
    return f"{notification.tenant_id}/{notification.event}/{resource_id}/{occurred}-{notification.notification_id}.json"


@handler("*", name="s3_archive")
def archive(notification: Notification, resource: Any, context: HandlerContext) -> str:
    bucket = os.environ["ARCHIVE_BUCKET"]
    key = archive_key(notification)
    body = {"notification": notification.model_dump(mode="json"), "resource": resource}
    aws_clients.s3().put_object(
        Bucket=bucket, Key=key, Body=json.dumps(body).encode(), ContentType="application/json"
    )
    return f"archived to s3://{bucket}/{key}"
