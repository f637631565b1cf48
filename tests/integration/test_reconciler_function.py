"""The ReconcilerFunction through its Lambda handler, on moto's table and queue, with an ERP
whose list endpoint pages as Visma's Financials lists do.

200 changes of which 40 never had their webhook delivered (the processor's watermark of
the other 160 says handlers received them): one run finds exactly the 40 and the metric
says 40; a crash between pages, a budget that runs out mid-run, and a backfill interrupted,
resumed and run twice, each enqueue every change exactly once (by id).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import drain
from visma_webhooks.adapters.resource_store import resource_key
from visma_webhooks.domain.budgets import BudgetWait, Priority
from visma_webhooks.domain.ordering import normalise
from visma_webhooks_local.stack.functions import load_function
from visma_webhooks_local.stack.lambda_events import LambdaContext

TENANT = "1262489"
DROPPED_EVERY = 5  # 20 % of the webhooks


class Erp:
    """Customers with a ``lastModifiedDateTime`` each, listed as Financials lists them."""

    def __init__(self, count: int, minutes_ago: float = 10):
        start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        self.customers = {
            f"{10000 + i}": (start + timedelta(milliseconds=7 * i)).isoformat(timespec="milliseconds")[:-6]
            for i in range(count)
        }
        self.budget: int | None = None  # calls left; None: unlimited
        self.crash_on_page: int | None = None
        self.calls: list[dict] = []
        self.rate_limit: dict = {}
        self.remaining_time = None

    def get(self, tenant_id, service, path, *, params=None, priority=Priority.WEBHOOK):
        assert (service, path, priority) == ("financials", "/v1/customer", Priority.BACKGROUND)
        if self.budget is not None:
            if self.budget <= 0:
                raise BudgetWait("spent", 60.0)
            self.budget -= 1
        page, size = int(params["pageNumber"]), int(params["pageSize"])
        if page == self.crash_on_page:
            raise SystemExit("the invocation died")  # not an error the function handles
        self.calls.append(dict(params))
        since = params.get("lastModifiedDateTime", "")
        rows = [(n, m) for n, m in sorted(self.customers.items()) if m >= since]
        return [{"number": n, "name": f"Customer {n}", "lastModifiedDateTime": m} for n, m in rows][
            (page - 1) * size : page * size
        ]


@pytest.fixture
def reconciler(monkeypatch, queues, idempotency_table):
    monkeypatch.setenv("QUEUE_URL", queues["queue_url"])
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")
    monkeypatch.setenv(
        "VISMA_CLIENT_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:visma"
    )
    monkeypatch.setenv("RECONCILE_ENTITIES", "customer")
    monkeypatch.setenv("RECONCILE_TENANTS", TENANT)
    monkeypatch.setenv("RECONCILE_PAGE_SIZE", "50")
    monkeypatch.setenv("RECONCILE_INTERVAL_MINUTES", "30")
    monkeypatch.setenv("RECONCILE_SETTLE_SECONDS", "1")
    return load_function("reconciler")


def invoke(module, erp, event=None, timeout=300.0):
    module.visma_client = lambda: erp
    return module.handler(event or {}, LambdaContext("ReconcilerFunction", timeout))


def delivered(table, erp):
    """The processor handled the webhooks of every customer but each fifth: its watermarks say so."""
    for i, (number, modified) in enumerate(sorted(erp.customers.items())):
        if i % DROPPED_EVERY:
            table.put_item(
                TableName="idempotency",
                Item={
                    **resource_key(TENANT, "financials", f"/v1/customer/{number}"),
                    "modified": {"S": normalise(modified)},
                    "expiration": {"N": str(int(time.time()) + 3600)},
                },
            )


def queued(queues):
    messages = drain(queues["sqs"], queues["queue_url"])
    return [json.loads(m["Body"]) for m in messages]


def emf(capsys) -> list[dict]:
    lines = capsys.readouterr().out.splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and '"_aws"' in line]


def metrics(capsys, records=None) -> dict[str, float]:
    totals: dict[str, float] = {}
    for record in records if records is not None else emf(capsys):
        for metric in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = record[metric["Name"]]
            totals[metric["Name"]] = totals.get(metric["Name"], 0) + (
                sum(value) if isinstance(value, list) else value
            )
    return totals


def test_one_run_enqueues_exactly_the_changes_whose_webhook_was_dropped(
    reconciler, queues, idempotency_table, capsys
):
    erp = Erp(200)
    delivered(idempotency_table, erp)
    result = invoke(reconciler, erp)
    (run,) = result["runs"]
    assert (run["stop"], run["pages"], run["listed"], run["enqueued"], run["missed"]) == (
        "done",
        5,
        200,
        40,
        40,
    )
    bodies = queued(queues)
    dropped = {f"/v1/customer/{n}" for i, n in enumerate(sorted(erp.customers)) if i % DROPPED_EVERY == 0}
    assert {b["resource_path"] for b in bodies} == dropped
    assert len({b["notification_id"] for b in bodies}) == 40
    assert all(b["source_format"] == "reconciled" and b["derived_id"] for b in bodies)
    records = emf(capsys)
    assert metrics(capsys, records)["MissedWebhooks"] == 40
    assert records[0]["missed_by_tenant_entity"] == {f"{TENANT}/customer": 40}

    again = invoke(reconciler, erp)  # the synthetic ones are not processed yet: the same ids again
    assert again["runs"][0]["missed"] == 0  # ...but not counted twice
    assert {b["notification_id"] for b in queued(queues)} <= {b["notification_id"] for b in bodies}


def test_a_crash_between_pages_repeats_at_most_a_page(reconciler, queues):
    erp = Erp(200)
    erp.crash_on_page = 3
    with pytest.raises(SystemExit):
        invoke(reconciler, erp)
    first = queued(queues)
    assert len(first) == 100
    erp.crash_on_page = None
    (run,) = invoke(reconciler, erp)["runs"]
    assert (run["stop"], run["pages"]) == ("done", 3)  # pages 3, 4, 5: the stored cursor said page 3
    ids = [b["notification_id"] for b in first + queued(queues)]
    assert len(ids) == 200 == len(set(ids))


def test_a_budget_that_runs_out_mid_run_stops_and_the_next_run_goes_on(reconciler, queues, capsys):
    erp = Erp(200)
    erp.budget = 2
    (run,) = invoke(reconciler, erp)["runs"]
    assert (run["stop"], run["pages"], run["retry_after"]) == ("budget", 2, 60.0)
    assert run["cursor"]["watermark"] is None  # not advanced past what was not read
    assert metrics(capsys)["ReconcileBudgetStops"] == 1
    erp.budget = None
    (run,) = invoke(reconciler, erp)["runs"]
    assert (run["stop"], run["pages"]) == ("done", 3)
    ids = [b["notification_id"] for b in queued(queues)]
    assert len(ids) == 200 == len(set(ids))


def test_a_backfill_interrupted_then_resumed_then_run_twice(reconciler, queues, idempotency_table):
    erp = Erp(
        120, minutes_ago=60 * 24 * 30
    )  # old records: a reconciliation pass would not look back this far
    request = {"backfill": {"tenant": TENANT, "entity": "customer", "max_pages": 1}}
    (run,) = invoke(reconciler, erp, request)["runs"]
    assert (run["stop"], run["in_pass"], run["enqueued"]) == ("pages", True, 50)
    (run,) = invoke(reconciler, erp, {"backfill": {"tenant": TENANT, "entity": "customer"}})["runs"]
    assert (run["stop"], run["in_pass"]) == ("done", False)
    bodies = queued(queues)
    assert {b["resource_path"] for b in bodies} == {f"/v1/customer/{n}" for n in erp.customers}
    assert len(bodies) == 170  # resumed one page back: page 1's 50 again, with the same ids
    assert len({b["notification_id"] for b in bodies}) == 120
    assert [c["pageNumber"] for c in erp.calls] == ["1", "1", "2", "3"]
    assert all("lastModifiedDateTime" not in c for c in erp.calls)  # from the beginning

    for body in bodies:  # the processor handled them all
        idempotency_table.put_item(
            TableName="idempotency",
            Item={
                **resource_key(TENANT, "financials", body["resource_path"]),
                "modified": {"S": normalise(body["occurred_at"])},
                "expiration": {"N": str(int(time.time()) + 3600)},
            },
        )
    (run,) = invoke(reconciler, erp, {"backfill": {"tenant": TENANT, "entity": "customer"}})["runs"]
    assert (run["stop"], run["listed"], run["enqueued"]) == ("done", 120, 0)
    assert queued(queues) == []


def test_a_dry_run_backfill_counts_and_enqueues_nothing(reconciler, queues):
    erp = Erp(60)
    result = invoke(reconciler, erp, {"backfill": {"tenant": TENANT, "entity": "customer", "dry_run": True}})
    assert result["dry_run"] is True
    assert result["runs"][0]["enqueued"] == 60
    assert queued(queues) == []
    (run,) = invoke(reconciler, erp, {"backfill": {"tenant": TENANT, "entity": "customer", "max_pages": 1}})[
        "runs"
    ]
    assert run["cursor"]["pages"] == 1  # the dry run stored no progress
