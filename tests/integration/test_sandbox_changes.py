"""Changes as an ERP user makes them: many at once, new resources too, each with its webhook (or dropped)."""

from __future__ import annotations

import json

import pytest

from tests.sandbox_support import TENANT, Receiver, auth, token
from visma_webhooks.domain.ordering import normalise
from visma_webhooks.domain.services import JOURNAL_TRANSACTIONS, SALESORDERS
from visma_webhooks_local.sandbox import VismaSandbox, WebhookConfig

CUSTOMERS = {
    f"/v1/customer/C{i}": {"number": f"C{i}", "lastModifiedDateTime": f"2024-01-0{i}T10:00:00.000"}
    for i in range(1, 4)
}


@pytest.fixture
def sb():
    with VismaSandbox(fixtures=CUSTOMERS, service_fixtures={}, seed=1) as running:
        yield running


def test_an_erp_user_changes_an_entitys_resources_least_recently_changed_first(sb, http):
    before = {p: sb.resource(p) for p in CUSTOMERS}
    answer = http.post(
        sb.url + "/_sandbox/changes", json={"tenant": TENANT, "entity": "customer", "count": 2}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["changed"], result["created"], result["dropped"]) == (2, 0, 0)
    assert [c["path"] for c in result["changes"]] == ["/v1/customer/C1", "/v1/customer/C2"]
    for change in result["changes"]:
        now = sb.resource(change["path"])
        assert now["lastModifiedDateTime"] == change["lastModifiedDateTime"]
        assert normalise(now["lastModifiedDateTime"]) > normalise(
            before[change["path"]]["lastModifiedDateTime"]
        )
        assert {k: v for k, v in now.items() if k not in ("lastModifiedDateTime", "timeStamp")} != before[
            change["path"]
        ]
    webhooks = sb.webhooks
    assert [(w["path"], w["event"], w["apiClientId"], w["tenant"]) for w in webhooks] == [
        ("/v1/customer/C1", "Customer Changed", None, TENANT),
        ("/v1/customer/C2", "Customer Changed", None, TENANT),
    ]
    assert "ApiClientId" not in webhooks[0]["body"]  # a person, not an API client
    assert [w["notificationId"] for w in webhooks] == [c["notificationId"] for c in result["changes"]]


def test_a_count_beyond_the_stored_resources_creates_new_ones_that_are_listed(sb, http):
    result = sb.make_changes(TENANT, entity="customer", count=5, new=1)
    assert (result["changed"], result["created"]) == (3, 3)
    created = [c for c in result["changes"] if c["change"] == "created"]
    assert [c["path"] for c in created] == [
        "/v1/customer/N000001",
        "/v1/customer/N000002",
        "/v1/customer/N000003",
    ]
    assert sb.resource("/v1/customer/N000002")["number"] == "N000002"
    assert [w["event"] for w in sb.webhooks].count("Customer Created") == 3
    headers = auth(token(sb, http))
    listed = http.get(sb.url + "/v1/customer", headers=headers, timeout=5).json()
    assert len(listed) == 6
    assert [i["number"] for i in listed][-3:] == ["N000001", "N000002", "N000003"]  # the latest changes last
    again = sb.make_changes(TENANT, entity="customer", new=1)
    assert [c["path"] for c in again["changes"]] == ["/v1/customer/N000004"]


def test_named_paths_change_or_are_created_in_any_service(sb):
    result = sb.make_changes(
        TENANT, SALESORDERS, paths=["/api/v3/SalesOrders/SO/77"], changes={"status": "Completed"}
    )
    [made] = result["changes"]
    assert made["change"] == "created"
    order = sb.resource("/api/v3/SalesOrders/SO/77", SALESORDERS)
    assert (order["orderNo"], order["status"], order.get("synthetic")) == ("77", "Completed", None)
    assert sb.webhooks[-1]["event"] == "SALESORDER_CREATED"
    assert sb.make_changes(TENANT, SALESORDERS, paths=["/api/v3/SalesOrders/SO/77"])["changed"] == 1
    assert sb.webhooks[-1]["event"] == "SALESORDER_UPDATED"
    journal = sb.make_changes(TENANT, JOURNAL_TRANSACTIONS, count=1)
    assert journal["changes"][0]["path"] == "/api/v1/JournalTransactions/N000001"


def test_changes_fire_webhooks_to_the_receiver_and_the_drop_share_applies():
    with Receiver() as receiver:
        config = WebhookConfig(url=receiver.url, secrets=["s"], delay=0.0, drop_rate=0.2)
        with VismaSandbox(service_fixtures={}, seed=3, webhooks=config) as sb:
            result = sb.make_changes(TENANT, entity="customer", count=50)
            sb.wait_for_webhooks(50)
            dropped = {d["path"] for d in sb.dropped_webhooks}
            assert result["dropped"] == len(dropped) > 0
            delivered = receiver.wait(50 - len(dropped))
            assert {json.loads(raw)["resourceUri"].split(".net", 1)[1] for _, raw in delivered}.isdisjoint(
                dropped
            )
            modified = {d["path"]: d["lastModifiedDateTime"] for d in sb.dropped_webhooks}
            assert all(sb.resource(p)["lastModifiedDateTime"] == m for p, m in modified.items())


@pytest.mark.parametrize(
    "body",
    [
        {"entity": "customer", "count": 1},
        {"tenant": TENANT},
        {"tenant": TENANT, "count": 2},
        {"tenant": TENANT, "entity": "customer", "count": -1},
        {"tenant": TENANT, "paths": ["/v1/customer/missing-1"]},
        {"tenant": TENANT, "paths": "/v1/customer/1"},
        {"tenant": TENANT, "entity": "customer", "count": 1, "delay": "soon"},
        {"tenant": TENANT, "entity": "customer", "count": 1, "bogus": 1},
    ],
)
def test_bad_changes_are_400(sb, http, body):
    response = http.post(sb.url + "/_sandbox/changes", json=body, timeout=5)
    assert response.status_code == 400, response.text
    assert sb.webhooks == []


def test_the_events_endpoint_still_fires_one(sb, http):
    body = {"path": "/v1/customer/C1", "tenant": TENANT, "changes": {"name": "x"}}
    assert http.post(sb.url + "/_sandbox/events", json=body, timeout=5).json()["path"] == "/v1/customer/C1"
    assert sb.webhooks[0]["lastModifiedDateTime"] == sb.resource("/v1/customer/C1")["lastModifiedDateTime"]
