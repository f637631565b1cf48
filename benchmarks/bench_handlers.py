"""The handler module the processor benchmark loads: one cheap handler for every event."""

from __future__ import annotations

from visma_webhooks.notification_handlers import handler


@handler("*", name="bench")
def touch(notification, resource, context) -> str:
    return f"{notification.event} {notification.resource_id}: {len(resource or {})} fields"
