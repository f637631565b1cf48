"""The sandbox's Visma services over real sockets: SalesOrders V3 and Journal Transactions on
their own ports, deletions, write-backs that fire signed webhooks, both publishers' events
and the per-service call counts."""

from __future__ import annotations

import json

import pytest

from tests.sandbox_support import RATE_HEADERS, TENANT, Receiver, auth, token
from visma_webhooks.domain.parsing import parse_delivery
from visma_webhooks.domain.resources import ResourceRules
from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS, SERVICES
from visma_webhooks.domain.signature import verify
from visma_webhooks_local.sandbox import VismaSandbox, WebhookConfig
from visma_webhooks_local.sandbox.fixtures import DEFAULT_SERVICE_FIXTURES
from visma_webhooks_local.sandbox.services import SANDBOX_SERVICES

ORDER = "/api/v3/SalesOrders/SO/1290"
JOURNAL = "/api/v1/JournalTransactions/000311"
CUSTOMER = "/v1/customer/10002"
SECRET = "sandbox-webhook-secret"


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def wired(receiver):
    """A sandbox whose webhooks go to ``receiver``, with no delay to wait out."""
    config = WebhookConfig(url=receiver.url, secrets=[SECRET], delay=0.0)
    with VismaSandbox(client_id="writer", client_secret="s", webhooks=config) as sb:
        yield sb


def writer_token(sb: VismaSandbox, http) -> dict[str, str]:
    return auth(token(sb, http, client_id="writer", client_secret="s"))


def parsed(delivery: tuple[dict[str, str], bytes]):
    headers, raw = delivery
    [notification] = parse_delivery(raw, headers, ResourceRules()).notifications
    return notification


# -- the services ------------------------------------------------------------------------


def test_each_service_has_its_own_port_and_serves_its_own_paths(sandbox, http):
    urls = sandbox.urls
    assert set(urls) == {FINANCIALS, SALESORDERS, JOURNAL_TRANSACTIONS}
    assert len(set(urls.values())) == 3
    assert (urls[SALESORDERS], urls[JOURNAL_TRANSACTIONS]) == (sandbox.salesorders_url, sandbox.journaltx_url)
    fixtures = json.loads(DEFAULT_SERVICE_FIXTURES.read_text())
    headers = auth(token(sandbox, http))  # one Visma Connect token for every service
    order = http.get(sandbox.salesorders_url + ORDER, headers=headers, timeout=5)
    assert order.status_code == 200
    assert order.json() == fixtures[SALESORDERS][ORDER]
    assert {"orderType", "orderNo", "status", "lines", "lastModifiedDateTime", "timeStamp"} <= set(
        order.json()
    )
    journal = http.get(sandbox.journaltx_url + JOURNAL, headers=headers, timeout=5)
    assert journal.json() == fixtures[JOURNAL_TRANSACTIONS][JOURNAL]
    # a service's paths are not served by another's host
    assert http.get(sandbox.url + ORDER, headers=headers, timeout=5).status_code == 404
    assert http.get(sandbox.salesorders_url + CUSTOMER, headers=headers, timeout=5).status_code == 404
    assert http.get(sandbox.salesorders_url + "/connect/token", timeout=5).status_code == 404
    assert http.get(sandbox.salesorders_url + ORDER, timeout=5).status_code == 401


def test_other_ids_are_synthesised_in_the_services_shape_and_missing_ids_are_404(sandbox, http):
    headers = auth(token(sandbox, http))
    order = http.get(sandbox.salesorders_url + "/api/v3/SalesOrders/IN/77", headers=headers, timeout=5).json()
    assert (order["orderType"], order["orderNo"], order["synthetic"]) == ("IN", "77", True)
    assert all(order[name] for name in ("lines", "lastModifiedDateTime", "timeStamp"))
    journal = http.get(sandbox.journaltx_url + "/api/v1/JournalTransactions/9", headers=headers, timeout=5)
    assert journal.json()["batchNumber"] == "9"
    for url, path in (
        (sandbox.salesorders_url, "/api/v3/SalesOrders/SO/missing-1"),
        (sandbox.journaltx_url, "/api/v1/JournalTransactions/missing"),
    ):
        assert http.get(url + path, headers=headers, timeout=5).status_code == 404, path


def test_every_service_uses_one_budget_per_tenant_and_client(http):
    with VismaSandbox(rate_limit=2) as sb:
        headers = auth(token(sb, http))
        assert http.get(sb.url + CUSTOMER, headers=headers, timeout=5).ok
        order = http.get(sb.salesorders_url + ORDER, headers=headers, timeout=5)
        assert order.ok
        assert all(name in order.headers for name in RATE_HEADERS)
        assert order.headers["X-RateLimit-Remaining"] == "0"
        journal = http.get(sb.journaltx_url + JOURNAL, headers=headers, timeout=5)
        assert journal.status_code == 429


def test_calls_are_counted_per_service_and_kind(sandbox, http):
    headers = auth(token(sandbox, http))
    http.get(sandbox.url + CUSTOMER, headers=headers, timeout=5)
    http.put(sandbox.url + CUSTOMER, json={"name": "X"}, headers=headers, timeout=5)
    feedback = {"notificationId": "n-1", "isSuccess": True}
    http.post(sandbox.url + "/v1/webhooknotificationfeedback", json=feedback, headers=headers, timeout=5)
    http.get(sandbox.salesorders_url + ORDER, headers=headers, timeout=5)
    assert sandbox.calls() == {
        "connect": {"token": 1, "total": 1},
        FINANCIALS: {"GET": 1, "PUT": 1, "feedback": 1, "total": 3},
        SALESORDERS: {"GET": 1, "total": 1},
    }
    assert http.get(sandbox.url + "/_sandbox/calls", timeout=5).json() == sandbox.calls()


# -- deletions ---------------------------------------------------------------------------


def test_a_deleted_resource_is_404_from_then_on(sandbox, http):
    headers = auth(token(sandbox, http))
    url = sandbox.salesorders_url + ORDER
    assert http.delete(url, headers=headers, timeout=5).status_code == 204
    assert http.get(url, headers=headers, timeout=5).status_code == 404
    assert http.delete(url, headers=headers, timeout=5).status_code == 404
    assert sandbox.resource(ORDER, SALESORDERS) is None
    # through the control API, and a synthesised id too
    deleted = http.post(sandbox.url + "/_sandbox/delete", json={"path": "/v1/customer/555"}, timeout=5)
    assert deleted.json() == {"deleted": True, "webhook": None}
    assert http.get(sandbox.url + "/v1/customer/555", headers=headers, timeout=5).status_code == 404
    assert (
        http.post(sandbox.url + "/_sandbox/delete", json={"path": "/v1/customer/555"}, timeout=5).status_code
        == 400
    )
    sandbox.reset()
    assert http.get(url, headers=headers, timeout=5).status_code == 200


def test_a_deletion_fires_its_webhook(wired, receiver, http):
    assert http.delete(wired.salesorders_url + ORDER, headers=writer_token(wired, http), timeout=5).ok
    body = {"path": "/v1/shipment/000123", "notify": True, "tenant": TENANT}
    assert http.post(wired.url + "/_sandbox/delete", json=body, timeout=5).ok
    first, second = (parsed(d) for d in receiver.wait(2))
    assert (first.event, first.service, first.resource_path) == ("salesorder_deleted", SALESORDERS, ORDER)
    assert first.api_client_id == "writer"
    assert json.loads(receiver.deliveries[0][1])["eventType"] == "SALESORDER_DELETED"
    assert (second.event, second.resource_path, second.api_client_id) == (
        "shipment_deleted",
        "/v1/shipment/000123",
        None,
    )


# -- write-backs and their webhooks -----------------------------------------------------


def test_a_write_updates_the_document_and_fires_a_signed_webhook_naming_the_writer(wired, receiver, http):
    headers = writer_token(wired, http)
    before = http.get(wired.url + CUSTOMER, headers=headers, timeout=5).json()
    assert http.put(wired.url + CUSTOMER, json={"name": {"value": "Ny AS"}}, headers=headers, timeout=5).ok
    after = http.get(wired.url + CUSTOMER, headers=headers, timeout=5).json()
    assert after["name"] == "Ny AS"
    assert after["lastModifiedDateTime"] != before["lastModifiedDateTime"]
    assert after["timeStamp"] != before.get("timeStamp")
    assert {k: v for k, v in after.items() if k not in ("name", "lastModifiedDateTime", "timeStamp")} == {
        k: v for k, v in before.items() if k not in ("name", "lastModifiedDateTime")
    }
    [(sent, raw)] = receiver.wait(1)
    assert verify(raw, sent["x-vwd-signature-v1"], [SECRET])
    body = json.loads(raw)
    assert body["event"] == "Customer Changed"
    assert body["publisher"] == "Visma Net Financial"
    assert body["resourceUri"] == "https://api.finance.visma.net/v1/customer/10002"
    assert body["ApiClientId"] == "writer"
    assert sent["x-vwd-tenant-id"] == body["tenantId"] == TENANT
    assert sent["x-vwd-notification-id"] == body["notificationId"]
    assert int(sent["x-vwd-webhook-timestamp"]) >= int(sent["x-vwd-notification-timestamp"])
    for name in ("x-vwd-event-id", "x-vwd-subscription-id", "x-vwd-group-id", "x-vwd-application-id"):
        assert sent[name]
    notification = parsed((sent, raw))
    assert (notification.service, notification.resource_path) == (FINANCIALS, CUSTOMER)
    assert (notification.event, notification.api_client_id) == ("customer_changed", "writer")
    [record] = wired.wait_for_webhooks(1)  # its delivery recorded once the answer came back
    assert (record["state"], record["status"], record["attempts"]) == ("delivered", 202, 1)


def test_a_v3_write_fires_the_salesorderservice_event(wired, receiver, http):
    headers = writer_token(wired, http)
    response = http.patch(wired.salesorders_url + ORDER, json={"status": "Hold"}, headers=headers, timeout=5)
    assert response.status_code == 204
    assert http.get(wired.salesorders_url + ORDER, headers=headers, timeout=5).json()["status"] == "Hold"
    [delivery] = receiver.wait(1)
    body = json.loads(delivery[1])
    assert (body["eventType"], body["publisher"]) == ("SALESORDER_UPDATED", "visma.net.erp.salesorderservice")
    assert body["resourceUri"] == "https://salesorder.visma.net" + ORDER
    assert (body["orderType"], body["orderNo"]) == ("SO", "1290")
    notification = parsed(delivery)
    assert (notification.service, notification.resource_path) == (SALESORDERS, ORDER)
    assert notification.publisher == "visma.net.erp.salesorderservice"


def test_without_api_client_id_the_webhook_names_no_writer(wired, receiver, http):
    assert http.post(wired.url + "/_sandbox/webhook-settings", json={"api_client_id": False}, timeout=5).ok
    assert http.put(wired.url + CUSTOMER, json={}, headers=writer_token(wired, http), timeout=5).ok
    [(_, raw)] = receiver.wait(1)
    assert "ApiClientId" not in json.loads(raw)
    assert wired.webhook_settings()["secrets"] == 1  # counted, never shown


def test_the_control_api_fires_both_publishers_events(wired, receiver, http):
    events = [
        {"path": ORDER, "service": SALESORDERS, "tenant": TENANT, "change": "created"},
        {
            "path": "/v1/customer/10001",
            "tenant": TENANT,
            "changes": {"creditLimit": 1.0},
            "apiClientId": "ui",
        },
        {"path": JOURNAL, "service": JOURNAL_TRANSACTIONS, "tenant": TENANT},
    ]
    fired = [http.post(wired.url + "/_sandbox/events", json=e, timeout=5).json() for e in events]
    assert [f["event"] for f in fired] == [
        "SALESORDER_CREATED",
        "Customer Changed",
        "Journal Transaction Changed",
    ]
    notifications = [parsed(d) for d in receiver.wait(3)]
    assert [n.notification_id for n in notifications] == [f["notificationId"] for f in fired]
    assert [(n.service, n.resource_path) for n in notifications] == [
        (SALESORDERS, ORDER),
        (FINANCIALS, "/v1/customer/10001"),
        (JOURNAL_TRANSACTIONS, JOURNAL),
    ]
    assert notifications[1].api_client_id == "ui"
    assert wired.resource("/v1/customer/10001")["creditLimit"] == 1.0
    bad = http.post(
        wired.url + "/_sandbox/events", json={"path": ORDER, "service": "nope", "tenant": "t"}, timeout=5
    )
    assert bad.status_code == 400


def test_a_refused_webhook_is_retried_then_recorded_as_failed(http):
    with Receiver(status=500) as refusing:
        config = WebhookConfig(url=refusing.url, secrets=[SECRET], delay=0.0, attempts=2, backoff=0.01)
        with VismaSandbox(webhooks=config) as sb:
            sb.fire(CUSTOMER, tenant=TENANT)
            [record] = sb.wait_for_webhooks(1)
        assert (record["state"], record["status"], record["attempts"]) == ("failed", 500, 2)
        assert len(refusing.deliveries) == 2
        first, second = refusing.deliveries
        assert first[0]["x-vwd-notification-id"] == second[0]["x-vwd-notification-id"]


def test_without_a_webhook_url_changes_are_recorded_not_sent(sandbox, http):
    assert http.put(sandbox.url + CUSTOMER, json={}, headers=auth(token(sandbox, http)), timeout=5).ok
    [record] = http.get(sandbox.url + "/_sandbox/webhooks", timeout=5).json()
    assert record["state"] == "not sent (no webhook URL)"
    assert record["apiClientId"] == "id"


# -- the services' paths are the client's ------------------------------------------------


@pytest.mark.parametrize("name", [FINANCIALS, SALESORDERS, JOURNAL_TRANSACTIONS])
def test_each_service_serves_the_prefixes_the_client_sends_to_it(name):
    assert SANDBOX_SERVICES[name].api is SERVICES[name].prefixes


@pytest.mark.parametrize(
    ("port", "path"),
    [
        ("url", "/V1/customer/1"),
        ("journaltx_url", "/api/v2/JournalTransactions/1"),
        ("salesorders_url", "/API/V3/x"),
    ],
)
def test_a_path_of_a_services_prefixes_is_its_api(sandbox, http, port, path):
    """Any path the client may send to a service is an API call there: it needs a token (401, not 404)."""
    assert http.get(getattr(sandbox, port) + path, timeout=5).status_code == 401
