"""Reconciliation end to end through ``visma-webhooks local``: changes whose webhooks were
dropped are found by ``visma-webhooks reconcile`` (and by the stack's own interval) and
reach the handlers once; the delivered ones are not processed again; status counts them."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import SECRET, TENANT, LocalStackProcess, wait_for
from visma_webhooks.domain.ordering import normalise
from visma_webhooks.domain.reconciling import synthetic_id
from visma_webhooks_local.stack.reconciler import LOCAL_SETTLE_SECONDS

pytestmark = pytest.mark.e2e

CHANGES, DROPPED_EVERY = 20, 5  # the sandbox drops 20 % of the webhooks


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sandbox):
    """``visma-webhooks local``, with the sandbox's webhooks coming to it."""
    running = LocalStackProcess(tmp_path_factory.mktemp("reconcile"), sandbox).start()
    sandbox.configure_webhooks(url=running.url, secrets=[SECRET], delay=0.1)
    yield running
    assert running.stop() == 0, running.log()


def change(sandbox, *, dropped: bool) -> tuple[str, str | None]:
    """An ERP user changes a customer: (its path, the webhook's id, None if the webhook was dropped)."""
    number = f"E2E{uuid.uuid4().hex[:10].upper()}"
    path = f"/v1/customer/{number}"
    if dropped:  # changed in the ERP, its webhook lost
        modified = (datetime.now(UTC) - timedelta(seconds=10)).isoformat(timespec="milliseconds")[:-6]
        sandbox.set_resource(path, {"number": number, "name": "dropped", "lastModifiedDateTime": modified})
        return path, None
    sandbox.set_resource(path, {"number": number, "name": "delivered"})
    record = sandbox.fire(path, tenant=TENANT, changes={"name": "delivered, changed"})
    return path, record["notificationId"]


def synthetic(sandbox, path: str) -> str:
    return synthetic_id(
        TENANT, "financials", path, normalise(sandbox.resource(path)["lastModifiedDateTime"]) or ""
    )


def test_reconcile_finds_the_dropped_changes_once_and_leaves_the_delivered_ones(stack):
    sandbox = stack.sandbox
    sandbox.configure_webhooks(drop_rate=1 / DROPPED_EVERY, seed=12)
    try:
        paths = [change(sandbox, dropped=False)[0] for _ in range(CHANGES)]
    finally:
        sandbox.configure_webhooks(drop_rate=0.0)
    fired = [w for w in sandbox.webhooks if w["path"] in paths]
    delivered = [w["notificationId"] for w in fired if w["state"] != "dropped"]
    dropped = [w["path"] for w in fired if w["state"] == "dropped"]
    assert 0 < len(dropped) < CHANGES
    assert sorted(dropped) == sorted(d["path"] for d in sandbox.dropped_webhooks if d["path"] in paths)
    stack.settled(delivered)
    time.sleep(LOCAL_SETTLE_SECONDS + 1)  # the last changes are older than the settle time
    result = stack.run("reconcile", "--tenant", TENANT, "--entity", "customer", "--json")
    (run,) = json.loads(result.stdout)["runs"]
    assert run["missed"] == len(dropped)
    assert run["enqueued"] == len(dropped)
    synthetic_ids = [synthetic(sandbox, path) for path in dropped]
    stack.settled(synthetic_ids)
    runs = stack.runs()
    assert all(runs[nid] == 1 for nid in delivered + synthetic_ids), runs  # every change once
    for nid in synthetic_ids:  # Visma issued no id: no feedback
        assert stack.feedback(nid) == []

    again = json.loads(stack.run("reconcile", "--tenant", TENANT, "--entity", "customer", "--json").stdout)
    assert again["runs"][0]["enqueued"] == 0  # handlers have them all now

    status = json.loads(stack.run("status", "--json").stdout)
    (cursor,) = [
        c for c in status["reconciliation"] if c["kind"] == "reconcile" and c["entity"] == "customer"
    ]
    assert cursor["cursor"]["missed"] >= len(dropped)


def test_backfill_enqueues_what_handlers_have_not_received_and_a_second_run_nothing(stack):
    sandbox = stack.sandbox
    paths = [change(sandbox, dropped=True)[0] for _ in range(3)]
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    stack.run("backfill", "--tenant", TENANT, "--entity", "customer", "--since", since)
    ids = [synthetic(sandbox, p) for p in paths]
    stack.settled(ids)
    stack.run("backfill", "--tenant", TENANT, "--entity", "customer", "--since", since)
    wait_for(lambda: stack.depth("queue") == 0, what="an empty queue")
    assert [stack.runs()[nid] for nid in ids] == [1, 1, 1]


def test_the_local_stack_reconciles_on_its_interval(tmp_path, sandbox):
    stack = LocalStackProcess(tmp_path, sandbox, "--reconcile-interval", "2").start()
    sandbox.configure_webhooks(url=stack.url, secrets=[SECRET], delay=0.1)
    try:
        _, nid = change(sandbox, dropped=False)  # the tenant is seen: it is reconciled from now on
        stack.settled([nid])
        path, _ = change(sandbox, dropped=True)
        stack.settled([synthetic(sandbox, path)], timeout=30)
    finally:
        assert stack.stop() == 0, stack.log()
