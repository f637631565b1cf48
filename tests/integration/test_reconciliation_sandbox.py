"""Reconciliation against the sandbox's list endpoint, with the real processor on moto.

200 customers change; the webhooks of 40 (20 %) are lost, the other 160 are processed.
One reconciliation run enqueues exactly the 40; processing them, every change has then
reached the handlers exactly once, and the 160 delivered ones are not processed again.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests import counting_handlers
from tests.processor_support import LambdaContext, load_processor, notification, put, run
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.stack.functions import load_function

TENANT = "1262489"
CHANGES, DROPPED_EVERY = 200, 5


@pytest.fixture
def sandbox():
    with VismaSandbox(port=0) as server:
        yield server


def drain(app, queues) -> None:
    sqs, url = queues["sqs"], queues["queue_url"]
    while True:
        depth = int(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        if not depth:
            return
        run(app, sqs, url, min(10, depth))


def test_one_run_finds_the_dropped_changes_and_every_change_is_handled_once(
    monkeypatch, queues, idempotency_table, sandbox
):
    counting_handlers.reset()
    processor = load_processor(monkeypatch, queues, sandbox, HANDLER_MODULES="tests.counting_handlers")
    modified = (datetime.now(UTC) - timedelta(minutes=5)).isoformat(timespec="milliseconds")[:-6]
    paths = [f"/v1/customer/R{i:04d}" for i in range(CHANGES)]
    for path in paths:
        sandbox.set_resource(path, {"number": path.rsplit("/", 1)[-1], "lastModifiedDateTime": modified})
    delivered = {f"webhook-{uuid.uuid4()}": p for i, p in enumerate(paths) if i % DROPPED_EVERY}
    put(
        queues["sqs"],
        queues["queue_url"],
        [notification(n, p, service="financials") for n, p in delivered.items()],
    )
    drain(processor, queues)
    assert sum(counting_handlers.runs.values()) == len(delivered)

    for name, value in {"RECONCILE_ENTITIES": "customer", "RECONCILE_TENANTS": TENANT}.items():
        monkeypatch.setenv(name, value)
    reconciler = load_function("reconciler")
    calls_before = sandbox.calls().get("financials", {}).get("GET", 0)
    result = reconciler.handler({}, LambdaContext("ReconcilerFunction", 300))
    (entity_run,) = result["runs"]
    assert (entity_run["missed"], entity_run["enqueued"]) == (40, 40)
    assert sandbox.calls()["financials"]["GET"] - calls_before == entity_run["calls"] == 1

    drain(processor, queues)
    runs = counting_handlers.runs
    assert sum(runs.values()) == CHANGES
    assert max(runs.values()) == 1
    synthetic = [n for n in runs if n not in delivered]
    assert len(synthetic) == 40
    assert all(n.startswith("reconciled:") for n in synthetic)
    by_path = Counter(counting_handlers.resources[n]["number"] for n in runs)
    assert len(by_path) == CHANGES  # each customer's change reached the handlers once
    assert not [f for f in sandbox.feedback if f["notificationId"] in synthetic]
    assert json.dumps(result)  # the handler's answer is JSON, as Lambda returns it
