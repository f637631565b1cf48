"""Handler module for the write-back loop test: a customer change is written back to Visma, unchanged.

Every run appends the notification id to ``$E2E_RUNS_FILE``; the write is a PUT of the
fetched document to its own path through the handler's context, as an integration that
stamps a record in the ERP would do. Visma answers such a write with a notification of
its own, which the processor must recognise rather than handle again.
"""

from __future__ import annotations

import os

from visma_webhooks.notification_handlers import handler


@handler("customer_changed", name="e2e-writeback")
def write_back(notification, resource, context):
    with open(os.environ["E2E_RUNS_FILE"], "a", encoding="utf-8") as runs:
        runs.write(notification.notification_id + "\n")
    context.request("PUT", notification.resource_path, json=resource)
    return f"wrote {notification.resource_path} back"
