"""Built-in ``log`` handler: logs a one-line summary of every notification."""

from __future__ import annotations

from typing import Any

from visma_webhooks.domain.models import Notification
from visma_webhooks.notification_handlers import HandlerContext, handler


@handler("*", name="log")
def log_notification(notification: Notification, resource: Any, context: HandlerContext) -> str:
    context.logger.info(
        "notification processed",
        extra={
            "notification_id": notification.notification_id,
            "tenant_id": notification.tenant_id,
            "event": notification.event,
            "resource_path": notification.resource_path,
            "resource_keys": sorted(resource)[:20] if isinstance(resource, dict) else None,
        },
    )
    return "logged"
