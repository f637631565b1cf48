"""A handler module for tests: counts every run, and can be told to fail.

``counter`` (``customer_*``) fetches; ``notifier`` (``project_*``) needs no resource;
``echo-aware`` (``inventory_*``, ``salesorder_*``) also runs for our own changes and for
unchanged resources; ``writer`` (``employee_*``) writes the resource back to Visma.
"""

from __future__ import annotations

import threading
from collections import Counter

from visma_webhooks.notification_handlers import PermanentError, handler

runs: Counter[str] = Counter()  # (notification id) runs of any handler here
resources: dict[str, object] = {}
deleted: dict[str, bool] = {}  # what each run saw as notification.deleted
permanent_failures: set[str] = set()
transient_failures: Counter[str] = Counter()  # notification id → failures left
_lock = threading.Lock()


def _seen(notification, resource) -> str:
    nid = notification.notification_id
    with _lock:
        runs[nid] += 1
        resources[nid] = resource
        deleted[nid] = notification.deleted
    return nid


@handler("customer_*", name="counter")
def count(notification, resource, context):
    nid = _seen(notification, resource)
    with _lock:
        if transient_failures[nid] > 0:
            transient_failures[nid] -= 1
            raise ConnectionError(f"downstream unavailable for {nid}")
    if nid in permanent_failures:
        raise PermanentError(f"customer {notification.resource_id} is blocked")
    return f"counted {nid}"


@handler("project_*", name="notifier", fetch=False)
def notify(notification, resource, context):
    return f"notified {_seen(notification, resource)}"


@handler("inventory_*", "salesorder_*", name="echo-aware", echoes=True, unchanged=True)
def echo_aware(notification, resource, context):
    return f"saw {_seen(notification, resource)}"


@handler("employee_*", name="writer")
def write_back(notification, resource, context):
    _seen(notification, resource)
    context.request("PUT", notification.resource_path, {"note": {"value": "synced by the shop"}})
    return "written back"


def reset() -> None:
    runs.clear()
    resources.clear()
    deleted.clear()
    permanent_failures.clear()
    transient_failures.clear()
