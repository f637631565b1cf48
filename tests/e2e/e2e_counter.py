"""Handler module for the end-to-end tests: every run appends the notification id to ``$E2E_RUNS_FILE``.

The local stack imports it through ``--handler-modules`` (with ``tests/e2e`` on
``PYTHONPATH``); the tests count the lines to prove that no handler ran twice.
"""

from __future__ import annotations

import os

from visma_webhooks.notification_handlers import handler


@handler("*", name="e2e-counter")
def count(notification, resource, context):
    with open(os.environ["E2E_RUNS_FILE"], "a", encoding="utf-8") as runs:
        runs.write(notification.notification_id + "\n")
    return f"counted {notification.notification_id}"
