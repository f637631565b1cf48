"""The Visma client reaches every API service at its configured base, with its own scopes.

Two embedded sandboxes over loopback stand for two hosts: Financials (and Visma Connect)
on one, SalesOrders V3 on the other, so that a request that went to the wrong host fails.
"""

from __future__ import annotations

import logging

import pytest

from tests.visma_support import CLIENT_ID, CLIENT_SECRET, SCOPE, TENANT, token_requests
from visma_webhooks.adapters.visma_http import VismaClient
from visma_webhooks.domain.errors import ThrottledError
from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS, Endpoint, Endpoints
from visma_webhooks.notification_handlers import HandlerContext
from visma_webhooks_local.sandbox import VismaSandbox

ORDER = "/api/v3/SalesOrders/SO/1286"
ORDER_SCOPE = "salesorder:read salesorder:update"


@pytest.fixture
def orders():
    with VismaSandbox(port=0) as sb:
        sb.add_rule(ORDER, 200, body={"orderType": "SO", "orderNo": "1286"})
        yield sb


@pytest.fixture
def client(sandbox, orders):
    endpoints = Endpoints(
        {
            FINANCIALS: Endpoint(sandbox.url),
            SALESORDERS: Endpoint(orders.url, ORDER_SCOPE),
            JOURNAL_TRANSACTIONS: Endpoint(orders.url + "/journal"),
        }
    )
    c = VismaClient(
        endpoints, sandbox.token_url, CLIENT_ID, CLIENT_SECRET, SCOPE, backoff=0.01, timeout=(1.0, 2.0)
    )
    yield c
    c.close()


def test_each_service_is_reached_at_its_own_base(sandbox, orders, client):
    assert client.get(TENANT, SALESORDERS, ORDER) == {"orderType": "SO", "orderNo": "1286"}
    assert client.get(TENANT, FINANCIALS, "/v1/customer/10001")["number"] == "10001"

    assert [r["path"] for r in orders.requests] == [ORDER]
    assert [r["path"] for r in sandbox.requests if r["path"] != "/connect/token"] == ["/v1/customer/10001"]


def test_financials_serves_v2_paths(sandbox, client):
    sandbox.add_rule("/v2/journaltransaction/42", 200, body={"transactionNumber": "42"})
    assert client.get(TENANT, FINANCIALS, "/v2/journaltransaction/42") == {"transactionNumber": "42"}


def test_a_base_url_with_a_path_keeps_it(orders, client):
    orders.add_rule("/journal/api/v2/journaltransaction/7", 200, body={"id": 7})
    assert client.get(TENANT, JOURNAL_TRANSACTIONS, "/api/v2/journaltransaction/7") == {"id": 7}


def test_tokens_are_cached_per_tenant_and_scope_set(sandbox, client):
    for _ in range(3):
        client.get(TENANT, FINANCIALS, "/v1/customer/10001")
        client.get(TENANT, SALESORDERS, ORDER)
    client.get("another-tenant", SALESORDERS, ORDER)

    scopes = [(r["tenant"], r.get("scope")) for r in token_requests(sandbox)]
    assert sorted(scopes) == sorted([(TENANT, SCOPE), (TENANT, ORDER_SCOPE), ("another-tenant", ORDER_SCOPE)])


def test_a_service_without_a_scope_of_its_own_shares_the_default_token(sandbox, orders):
    endpoints = Endpoints({FINANCIALS: Endpoint(sandbox.url), SALESORDERS: Endpoint(orders.url)})
    client = VismaClient(endpoints, sandbox.token_url, CLIENT_ID, CLIENT_SECRET, SCOPE)
    client.get(TENANT, FINANCIALS, "/v1/customer/10001")
    client.get(TENANT, SALESORDERS, ORDER)
    assert len(token_requests(sandbox)) == 1


@pytest.mark.parametrize(
    ("service", "path"),
    [
        (SALESORDERS, "/v1/salesorder/SO/1286"),  # a Financials path on SalesOrders
        (SALESORDERS, "/api/v2/SalesOrders/SO/1"),
        (SALESORDERS, "/api/v3/../../v1/customer/1"),
        (SALESORDERS, "/api/v3/SalesOrders/%2e%2e/x"),
        (SALESORDERS, "https://evil.example/api/v3/SalesOrders/SO/1"),
        (SALESORDERS, "//evil.example/api/v3/x"),
        (SALESORDERS, "/api/v3/@evil.example/x"),
        (SALESORDERS, "/api/v3/SalesOrders/SO/1 HTTP/1.1\r\nHost: evil"),
        (FINANCIALS, ORDER),
        (FINANCIALS, "/v3/customer/1"),
        (JOURNAL_TRANSACTIONS, "/v1/customer/1"),
        (JOURNAL_TRANSACTIONS, "/api/v1//x"),
        ("evil", "/v1/customer/1"),
    ],
)
def test_a_path_off_its_service_pattern_is_refused_without_a_request(sandbox, orders, client, service, path):
    with pytest.raises(ValueError, match=r"path must be a plain|unknown or unconfigured"):
        client.request(TENANT, "GET", service, path)
    assert sandbox.requests == []
    assert orders.requests == []
    assert client.stats["requests"] == 0


def test_feedback_always_goes_to_financials(sandbox, orders, client):
    client.post_feedback(TENANT, "n-1", source="s", description="d", is_success=True)
    assert [f["notificationId"] for f in sandbox.feedback] == ["n-1"]
    assert orders.requests == []


def test_rate_limits_are_kept_per_service(sandbox, orders, client):
    orders.add_rule("/api/v3/SalesOrders/SO/busy", 429, retry_after=30)
    with pytest.raises(ThrottledError):
        client.get(TENANT, SALESORDERS, "/api/v3/SalesOrders/SO/busy")
    with pytest.raises(ThrottledError):  # blocked without a request
        client.get(TENANT, SALESORDERS, ORDER)
    assert client.get(TENANT, FINANCIALS, "/v1/customer/10001")["number"] == "10001"
    assert [r["path"] for r in orders.requests] == ["/api/v3/SalesOrders/SO/busy"]


def test_a_handler_writes_back_to_its_notifications_service(sandbox, orders, client):
    orders.add_rule(ORDER, 204, method="PATCH")
    context = HandlerContext(logging.getLogger("test"), TENANT, client, "n-1", SALESORDERS)
    context.request("PATCH", ORDER, {"note": "synced"})
    context.request("PUT", "/v1/customer/10001", {"name": {"value": "x"}}, service=FINANCIALS)

    assert [(r["method"], r["path"]) for r in orders.requests if r["method"] == "PATCH"] == [("PATCH", ORDER)]
    assert [(w["method"], w["path"]) for w in sandbox.writes] == [("PUT", "/v1/customer/10001")]


def test_a_single_base_url_serves_every_service(sandbox):
    client = VismaClient(sandbox.url, sandbox.token_url, CLIENT_ID, CLIENT_SECRET)
    sandbox.add_rule(ORDER, 200, body={"orderNo": "1286"})
    assert client.get(TENANT, SALESORDERS, ORDER) == {"orderNo": "1286"}
