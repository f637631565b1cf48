"""A sample handler module for the local stack (``make demo`` loads it): a stand-in web shop.

It fetches the resource, as a real integration that syncs it somewhere would, so that the
demo shows which Visma service each notification was fetched from; a deletion reaches it
with no resource. Its return value is the feedback the ERP user sees.
"""

from __future__ import annotations

from typing import Any

from visma_webhooks.domain.models import Notification
from visma_webhooks.notification_handlers import HandlerContext, handler


@handler("*", name="sample-shop")
def sync_to_shop(notification: Notification, resource: Any, context: HandlerContext) -> str:
    if notification.resource_path is None:
        return "nothing to sync"
    if resource is None:
        return f"removed {notification.resource_path} from the shop"
    return f"synced {notification.resource_path} from {notification.service} to the shop"
