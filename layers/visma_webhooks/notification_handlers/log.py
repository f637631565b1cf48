"""Built-in ``log`` handler: logs a one-line summary of every notification.

It needs no resource (``fetch=False``): alone, it costs no Visma call.
"""

from __future__ import annotations

from typing import Any

from visma_webhooks.domain.models import Notification
from visma_webhooks.notification_handlers import HandlerContext, handler


@handler("*", name="log", fetch=False)
def log_notification(notification: Notification, resource: Any, context: HandlerContext) -> str:
    context.logger.info(
        "notification processed",
        extra={
            "notification_id": notification.notification_id,
            "tenant_id": notification.tenant_id,
            "event": notification.event,
            "service": notification.service,
            "resource_path": notification.resource_path,
            "deleted": notification.deleted,
        },
    )
    return "logged"
