"""A handler module for tests: counts every run, and can be told to fail."""

from __future__ import annotations

import threading
from collections import Counter

from visma_webhooks.notification_handlers import PermanentError, handler

runs: Counter[str] = Counter()
resources: dict[str, object] = {}
permanent_failures: set[str] = set()
transient_failures: Counter[str] = Counter()  # notification id → failures left
_lock = threading.Lock()


@handler("customer_*", name="counter")
def count(notification, resource, context):
    nid = notification.notification_id
    with _lock:
        runs[nid] += 1
        resources[nid] = resource
        if transient_failures[nid] > 0:
            transient_failures[nid] -= 1
            raise ConnectionError(f"downstream unavailable for {nid}")
    if nid in permanent_failures:
        raise PermanentError(f"customer {notification.resource_id} is blocked")
    return f"counted {nid}"


def reset() -> None:
    runs.clear()
    resources.clear()
    permanent_failures.clear()
    transient_failures.clear()
