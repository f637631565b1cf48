"""The processor as Visma is today, on moto and the embedded sandbox: deletions, echoes of
our own writes, unchanged resources, handlers that need no resource, tenants that share
ids, derived ids, and the SalesOrders service."""

from __future__ import annotations

import importlib

import boto3
import pytest

from tests.conftest import REGION
from tests.processor_support import feedback_for, gets, load_processor, notification, put, run
from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks_local import ops
from visma_webhooks_local.sandbox import VismaSandbox

CUSTOMER = "/v1/customer/10001"
ORDER = "/api/v3/SalesOrders/SO/1286"
OUR_CLIENT = "processor-test"


@pytest.fixture
def sandbox():
    with VismaSandbox(port=0, client_id=OUR_CLIENT, client_secret="processor-test-secret") as server:
        yield server


@pytest.fixture
def processor(monkeypatch, queues, idempotency_table, sandbox):
    return load_processor(
        monkeypatch,
        queues,
        sandbox,
        VISMA_SALESORDERS_BASE_URL=sandbox.url,
        VISMA_SALESORDERS_SCOPE="salesorder:read salesorder:update",
    )


@pytest.fixture
def counter(processor):
    module = importlib.import_module("tests.counting_handlers")
    module.reset()
    return module


@pytest.fixture
def store():
    return DynamoDBOutcomeStore("idempotency", boto3.client("dynamodb", region_name=REGION), 0)


def process(processor, queues, *notifications):
    put(queues["sqs"], queues["queue_url"], list(notifications))
    _, response = run(processor, queues["sqs"], queues["queue_url"], len(notifications))
    assert response["batchItemFailures"] == []


def writes(sandbox, method="PUT"):
    return [r for r in sandbox.requests if r["method"] == method and not r["path"].endswith("feedback")]


# -- deletions ----------------------------------------------------------------------------


def test_a_deletion_is_not_fetched_and_reaches_the_handler(processor, counter, queues, sandbox, store):
    process(processor, queues, notification("del-1", CUSTOMER, "customer_deleted", deleted=True))

    assert gets(sandbox, CUSTOMER) == []
    assert (counter.runs["del-1"], counter.resources["del-1"], counter.deleted["del-1"]) == (1, None, True)
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "del-1")] == [True]
    record = store.get("del-1")
    assert record.effective_outcome == "succeeded"
    assert record.item["deleted"] is True


def test_a_refused_feedback_for_a_deleted_document_is_recorded_not_retried(
    processor, counter, queues, sandbox, store
):
    sandbox.set_faults(rules=[{"path": "/v1/webhooknotificationfeedback", "status": 404}])
    process(processor, queues, notification("del-2", "/v1/customer/missing-2"))  # gone: a deletion
    process(processor, queues, notification("del-2", "/v1/customer/missing-2"))  # a re-delivery

    assert counter.deleted["del-2"] is True
    posts = [r for r in sandbox.requests if r["path"] == "/v1/webhooknotificationfeedback"]
    assert len(posts) == 1
    record = store.get("del-2")
    assert record.feedback == {"posted": False, "is_success": True, "error": "Visma answered 404"}
    assert record.final_steps == ["succeeded", "duplicate"]


# -- fetching -----------------------------------------------------------------------------


def test_a_handler_that_needs_no_resource_causes_no_fetch(processor, counter, queues, sandbox):
    process(processor, queues, notification("p-1", "/v1/project/P1", "project_changed"))

    assert counter.runs["p-1"] == 1
    assert counter.resources["p-1"] is None
    assert [r for r in sandbox.requests if r["method"] == "GET"] == []
    assert [f["isSuccess"] for f in feedback_for(sandbox.feedback, "p-1")] == [True]


def test_a_sales_order_is_fetched_from_the_salesorders_service_with_its_scope(
    processor, counter, queues, sandbox
):
    sandbox.add_rule(ORDER, 200, body={"orderType": "SO", "orderNo": "1286"})
    process(processor, queues, notification("so-1", ORDER, "salesorder_updated", service="salesorders"))

    assert counter.resources["so-1"] == {"orderType": "SO", "orderNo": "1286"}
    scopes = {r.get("scope") for r in sandbox.requests if r["path"] == "/connect/token"}
    assert "salesorder:read salesorder:update" in scopes


# -- echoes -------------------------------------------------------------------------------


def test_our_own_change_is_an_echo(processor, counter, queues, sandbox, store):
    process(processor, queues, notification("echo-1", CUSTOMER, api_client_id=OUR_CLIENT.upper()))

    assert counter.runs["echo-1"] == 0
    assert gets(sandbox, CUSTOMER) == []
    assert feedback_for(sandbox.feedback, "echo-1") == []
    record = store.get("echo-1")
    assert record.effective_outcome == "echo"
    assert record.item["api_client_id"] == OUR_CLIENT.upper()


def test_a_handler_can_opt_in_to_echoes_and_others_changes_are_no_echo(processor, counter, queues, sandbox):
    process(
        processor,
        queues,
        notification("echo-2", "/v1/inventory/BOLT", "inventory_changed", api_client_id=OUR_CLIENT),
        notification("other-1", CUSTOMER, api_client_id="someone-elses-client"),
    )

    assert counter.runs["echo-2"] == 1
    assert counter.runs["other-1"] == 1


# -- unchanged resources and the write-back loop -----------------------------------------


def test_an_unchanged_resource_skips_the_handlers(processor, counter, queues, sandbox, store):
    doc = {"number": "10001", "name": "A", "lastModifiedDateTime": "2026-12-01T10:00:00", "timeStamp": "AA"}
    sandbox.set_resource(CUSTOMER, doc)
    process(processor, queues, notification("u-1", CUSTOMER))
    sandbox.set_resource(CUSTOMER, {**doc, "lastModifiedDateTime": "2026-12-01T10:05:00", "timeStamp": "AB"})
    process(processor, queues, notification("u-2", CUSTOMER))
    sandbox.set_resource(CUSTOMER, {**doc, "name": "B", "lastModifiedDateTime": "2026-12-01T10:06:00"})
    process(processor, queues, notification("u-3", CUSTOMER))

    assert [counter.runs[n] for n in ("u-1", "u-2", "u-3")] == [1, 0, 1]
    assert store.get("u-2").effective_outcome == "unchanged"
    assert store.get("u-2").handlers["counter"] == {"status": "skipped", "reason": "resource unchanged"}
    (posted,) = feedback_for(sandbox.feedback, "u-2")
    assert posted["isSuccess"] is True
    assert posted["description"].startswith("unchanged")


def test_a_handler_can_opt_in_to_unchanged_resources(processor, counter, queues, sandbox):
    process(processor, queues, notification("i-1", "/v1/inventory/NUT", "inventory_changed"))
    process(processor, queues, notification("i-2", "/v1/inventory/NUT", "inventory_changed"))
    assert (counter.runs["i-1"], counter.runs["i-2"]) == (1, 1)


def test_a_write_back_loop_ends_without_api_client_id(processor, counter, queues, sandbox):
    """Visma fires a notification for our own write; without ApiClientId, the fingerprint ends it."""
    path = "/v1/employee/E1"
    state = {"employeeId": "E1", "note": {"value": ""}, "lastModifiedDateTime": "t0"}
    sandbox.set_resource(path, state)
    process(processor, queues, notification("w-1", path, "employee_changed"))  # the real change
    written = {**state, "note": {"value": "synced by the shop"}}
    for round_, nid in enumerate(("w-2", "w-3", "w-4"), start=1):  # what each write-back fires
        sandbox.set_resource(path, {**written, "lastModifiedDateTime": f"t{round_}"})
        process(processor, queues, notification(nid, path, "employee_changed"))

    assert sum(counter.runs.values()) == 2  # the change, and the first echo (the state changed)
    assert len(writes(sandbox)) == 2


def test_a_write_back_loop_ends_at_the_first_echo_with_api_client_id(processor, counter, queues, sandbox):
    path = "/v1/employee/E2"
    process(processor, queues, notification("w-5", path, "employee_changed"))
    process(processor, queues, notification("w-6", path, "employee_changed", api_client_id=OUR_CLIENT))

    assert sum(counter.runs.values()) == 1
    assert len(writes(sandbox)) == 1
    api_calls = [r for r in sandbox.requests if r["path"] != "/connect/token"]
    assert len(api_calls) == 3  # one GET, one PUT, one feedback


# -- ids ----------------------------------------------------------------------------------


def test_the_same_id_from_two_tenants_is_two_notifications(processor, counter, queues, sandbox, store):
    process(
        processor, queues, notification("same", tenant="tenant-a"), notification("same", tenant="tenant-b")
    )

    assert counter.runs["same"] == 2
    assert sorted(f["tenant"] for f in feedback_for(sandbox.feedback, "same")) == ["tenant-a", "tenant-b"]
    assert store.get("same", "tenant-a").effective_outcome == "succeeded"
    assert store.get("same", "tenant-b").effective_outcome == "succeeded"

    target = ops.Target(
        "test",
        queues["sqs"],
        queues["queue_url"],
        queues["dlq_url"],
        boto3.client("dynamodb", region_name=REGION),
        "idempotency",
    )
    narrowed = ops.inspect(target, "same", tenant_id="tenant-b")
    assert (narrowed.record.tenant_id, narrowed.others) == ("tenant-b", [])
    anyone = ops.inspect(target, "same")
    assert {anyone.record.tenant_id, *(r.tenant_id for r in anyone.others)} == {"tenant-a", "tenant-b"}


def test_a_derived_id_gets_no_feedback(processor, counter, queues, sandbox, store):
    process(processor, queues, notification("hdr-1:1", derived_id=True))

    assert counter.runs["hdr-1:1"] == 1
    assert feedback_for(sandbox.feedback, "hdr-1:1") == []
    assert "derived" in store.get("hdr-1:1").feedback["skipped"]


def test_status_counts_the_new_outcomes(processor, counter, queues, sandbox):
    process(
        processor,
        queues,
        notification("s-echo", CUSTOMER, api_client_id=OUR_CLIENT),
        notification("s-del", CUSTOMER, "customer_deleted", deleted=True),
        notification("s-derived", "/v1/customer/10002", derived_id=True),
    )
    sandbox.set_resource("/v1/customer/10002", {"number": "10002"})
    process(processor, queues, notification("s-1", "/v1/customer/10002"))
    process(processor, queues, notification("s-2", "/v1/customer/10002"))
    target = ops.Target(
        "test",
        queues["sqs"],
        queues["queue_url"],
        queues["dlq_url"],
        boto3.client("dynamodb", region_name=REGION),
        "idempotency",
    )

    result = ops.status(target)

    assert result.outcomes == {"echo": 1, "succeeded": 3, "unchanged": 1}
    assert result.deleted == 1
    assert result.feedback["not due (derived id)"] == 1


# -- cost ---------------------------------------------------------------------------------


def test_dynamodb_requests_of_a_notification_on_the_happy_path(processor, counter, queues, sandbox):
    calls: list[str] = []
    processor._dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **kwargs: calls.append(model.name)
    )
    process(processor, queues, notification("cost-1", CUSTOMER))
    calls.clear()  # the first one also took a chunk of the tenant's budget
    process(processor, queues, notification("cost-2", "/v1/customer/10002"))

    # the claim with the resource's lease, the handler's results with the lease given
    # back, and the outcome: the budget's chunk covers this notification's two calls
    assert calls == ["TransactWriteItems", "TransactWriteItems", "UpdateItem"], calls
