"""VismaClient against the embedded Visma sandbox, over real loopback sockets."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from tests.visma_support import (
    CLIENT_ID,
    CLIENT_SECRET,
    CUSTOMER,
    SCOPE,
    TENANT,
    FakeClock,
    api_requests,
    token_requests,
)
from visma_webhooks.adapters.visma_http import VismaClient
from visma_webhooks.domain.errors import (
    PermanentVismaError,
    ThrottledError,
    TransientVismaError,
    VismaAuthError,
)
from visma_webhooks.domain.services import FINANCIALS
from visma_webhooks_local.sandbox import VismaSandbox

# -- tokens ------------------------------------------------------------------------------


def test_get_returns_the_document_and_sends_client_credentials(sandbox, make_client):
    client = make_client()
    doc = client.get(TENANT, FINANCIALS, CUSTOMER)
    assert doc == sandbox.resources[CUSTOMER]
    [token] = token_requests(sandbox)
    assert token["status"] == 200
    assert (token["tenant"], token["client_id"], token["scope"]) == (TENANT, CLIENT_ID, SCOPE)
    [get] = api_requests(sandbox)
    assert (get["method"], get["tenant"], get["status"]) == ("GET", TENANT, 200)


def test_one_token_per_tenant(sandbox, make_client):
    client = make_client()
    for i in range(10):
        client.get("tenant-a", FINANCIALS, f"/v1/customer/{i}")
    for i in range(5):
        client.get("tenant-b", FINANCIALS, f"/v1/supplier/{i}")
    assert sorted(r["tenant"] for r in token_requests(sandbox)) == ["tenant-a", "tenant-b"]
    assert client.stats["token_requests"] == 2
    assert client.stats["gets"] == 15
    assert {r["tenant"] for r in api_requests(sandbox, "/v1/supplier/3")} == {"tenant-b"}


def test_concurrent_first_calls_for_one_tenant_make_one_token_request(sandbox, make_client):
    sandbox.add_rule("/connect/token", delay=0.3)  # a slow token endpoint widens the race
    client = make_client()
    barrier = threading.Barrier(16)
    results: list[object] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        barrier.wait()
        doc = client.get(TENANT, FINANCIALS, f"/v1/inventory/ITEM-{i}")
        with lock:
            results.append(doc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 16
    assert len(token_requests(sandbox)) == 1
    assert client.stats["token_requests"] == 1
    assert sandbox.connections <= 16  # one pool, sized for the threads


@pytest.mark.parametrize(("ttl", "still_cached_at", "refreshed_at"), [(120, 107, 109), (3600, 3539, 3541)])
def test_token_is_refreshed_shortly_before_it_expires(make_client, ttl, still_cached_at, refreshed_at):
    clock = FakeClock()
    with VismaSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_ttl=ttl) as sb:
        client = make_client(target=sb, clock=clock)
        start = clock.now
        client.get(TENANT, FINANCIALS, CUSTOMER)
        clock.now = start + still_cached_at
        client.get(TENANT, FINANCIALS, CUSTOMER)
        assert len(token_requests(sb)) == 1
        clock.now = start + refreshed_at
        client.get(TENANT, FINANCIALS, CUSTOMER)
        assert len(token_requests(sb)) == 2


def test_401_drops_the_token_and_refreshes_once(sandbox, make_client):
    client = make_client()
    client.get(TENANT, FINANCIALS, CUSTOMER)
    assert sandbox.revoke_tokens(TENANT) == 1
    assert client.get(TENANT, FINANCIALS, CUSTOMER)["number"] == "10001"
    assert [r["status"] for r in api_requests(sandbox)] == [200, 401, 200]
    assert len(token_requests(sandbox)) == 2


def test_a_second_401_is_an_auth_error(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, 401)
    client = make_client()
    with pytest.raises(VismaAuthError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert caught.value.status == 401
    assert isinstance(caught.value, TransientVismaError)  # credentials can be fixed, then replayed
    assert len(api_requests(sandbox)) == 2
    assert len(token_requests(sandbox)) == 2


def test_refused_credentials_are_an_auth_error_without_the_secret(sandbox, make_client):
    wrong = "wrong-secret-Zz93"
    client = make_client(secret=wrong)
    with pytest.raises(VismaAuthError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert caught.value.status == 401
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)
    assert wrong not in repr(client)
    assert api_requests(sandbox) == []


# -- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_status_is_retried_with_backoff_then_succeeds(sandbox, make_client, status):
    sandbox.add_rule(CUSTOMER, status, times=2)
    clock = FakeClock()
    client = make_client(backoff=0.2, sleep=clock.sleep)
    assert client.get(TENANT, FINANCIALS, CUSTOMER)["number"] == "10001"
    assert [r["status"] for r in api_requests(sandbox)] == [status, status, 200]
    assert client.stats["retries"] == 2
    assert len(clock.sleeps) == 2
    for retry, delay in enumerate(clock.sleeps):  # jittered exponential: [b·2^n / 2, b·2^n]
        ceiling = 0.2 * 2**retry
        assert ceiling / 2 <= delay <= ceiling


def test_5xx_exhausted_is_transient(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, 502)
    client = make_client(max_retries=2)
    with pytest.raises(TransientVismaError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert not isinstance(caught.value, PermanentVismaError | ThrottledError)
    assert caught.value.status == 502
    assert len(api_requests(sandbox)) == 3
    assert client.stats["retries"] == 2


def test_read_timeout_is_transient(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, delay=2.0)
    client = make_client(timeout=(1.0, 0.3), max_retries=0)
    started = time.monotonic()
    with pytest.raises(TransientVismaError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert time.monotonic() - started < 1.5
    assert caught.value.status is None
    assert "timed out" in caught.value.reason


def test_timeout_then_success_on_retry(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, delay=2.0, times=1)
    client = make_client(timeout=(1.0, 0.3), max_retries=1)
    assert client.get(TENANT, FINANCIALS, CUSTOMER)["number"] == "10001"
    assert client.stats["retries"] == 1


def test_connection_refused_is_transient():
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = VismaClient(url, url + "/connect/token", CLIENT_ID, CLIENT_SECRET, max_retries=2, backoff=0.01)
    with pytest.raises(TransientVismaError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert "connect" in caught.value.reason
    assert caught.value.status is None
    assert client.stats["token_requests"] == 3
    assert client.stats["retries"] == 2


# -- the Lambda's remaining time ---------------------------------------------------------


def test_no_retry_when_too_little_time_is_left(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, 503)
    clock = FakeClock()
    # 3.0 s left - 1.0 s margin = 2.0 s: the first attempt fits, a retry (sleep + 2 s) does not.
    client = make_client(
        timeout=(1.0, 1.0), backoff=0.2, safety_margin=1.0, remaining_time=lambda: 3.0, sleep=clock.sleep
    )
    with pytest.raises(TransientVismaError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert caught.value.status == 503
    assert len(api_requests(sandbox)) == 1
    assert clock.sleeps == []


def test_retries_stop_before_the_deadline(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, 503)
    clock = FakeClock()
    deadline = clock.now + 12.0
    client = make_client(
        timeout=(1.0, 1.0),
        backoff=1.0,
        max_retries=10,
        safety_margin=1.0,
        clock=clock,
        sleep=clock.sleep,
        remaining_time=lambda: deadline - clock.now,
    )
    with pytest.raises(TransientVismaError):
        client.get(TENANT, FINANCIALS, CUSTOMER)
    retries = client.stats["retries"]
    assert 1 <= retries < 10
    # Every sleep plus a whole attempt (2 s) ended at least the margin before the deadline.
    assert sum(clock.sleeps) + 2.0 <= 12.0 - 1.0
    assert len(api_requests(sandbox)) == retries + 1


def test_no_request_without_time_left(sandbox, make_client):
    client = make_client(safety_margin=1.0, remaining_time=lambda: 0.5)
    with pytest.raises(TransientVismaError, match="no time left"):
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert sandbox.requests == []


def test_first_attempt_read_timeout_is_shortened_to_the_time_left(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, delay=3.0)
    client = make_client(timeout=(1.0, 10.0), safety_margin=1.0, remaining_time=lambda: 1.6, max_retries=0)
    started = time.monotonic()
    with pytest.raises(TransientVismaError, match="timed out"):
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("status", [404, 410, 400, 403, 422])
def test_other_4xx_are_permanent_and_not_retried(sandbox, make_client, status):
    sandbox.add_rule(CUSTOMER, status)
    client = make_client()
    with pytest.raises(PermanentVismaError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert caught.value.status == status
    assert len(api_requests(sandbox)) == 1
    assert client.stats["retries"] == 0


def test_missing_resource_is_404(sandbox, make_client):
    with pytest.raises(PermanentVismaError) as caught:
        make_client().get(TENANT, FINANCIALS, "/v1/salesorder/missing-1")
    assert caught.value.status == 404
    assert caught.value.path == "/v1/salesorder/missing-1"
    assert "not found" in caught.value.reason


# -- feedback and write-backs ------------------------------------------------------------


def test_feedback_body(sandbox, make_client):
    client = make_client()
    client.post_feedback(
        TENANT, "1455fe2a", source="visma-webhooks-prod", description="synced", is_success=False
    )
    [record] = sandbox.feedback
    assert {k: v for k, v in record.items() if k != "received_at"} == {
        "tenant": TENANT,
        "notificationId": "1455fe2a",
        "source": "visma-webhooks-prod",
        "description": "synced",
        "isSuccess": False,
    }
    assert client.stats["posts"] == 1
    [post] = api_requests(sandbox)
    assert (post["method"], post["path"], post["status"]) == ("POST", "/v1/webhooknotificationfeedback", 201)


@pytest.mark.parametrize(("length", "expected"), [(10, 10), (1000, 1000), (1001, 1000), (50_000, 1000)])
def test_feedback_description_is_truncated_with_an_ellipsis(sandbox, make_client, length, expected):
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    make_client().post_feedback(TENANT, "n-1", source="s", description=text, is_success=True)
    sent = sandbox.feedback[0]["description"]
    assert len(sent) == expected
    if length > 1000:
        assert sent == text[:999] + "…"
    else:
        assert sent == text


def test_request_for_write_backs(sandbox, make_client):
    client = make_client()
    assert client.request(TENANT, "PUT", FINANCIALS, CUSTOMER, json={"name": {"value": "New name"}}) is None
    assert (
        client.request(TENANT, "post", FINANCIALS, "/v1/customer", json={"number": {"value": "10003"}})
        is None
    )
    writes = sandbox.writes
    assert [(w["method"], w["path"], w["body"]) for w in writes] == [
        ("PUT", CUSTOMER, {"name": {"value": "New name"}}),
        ("POST", "/v1/customer", {"number": {"value": "10003"}}),
    ]
    assert {w["tenant"] for w in writes} == {TENANT}


@pytest.mark.parametrize(
    "path",
    [
        "v1/customer/1",
        "https://evil.example/v1/customer/1",
        "//evil.example/v1/customer/1",
        "/api/v1/customer/1",
        "/api/v3/SalesOrders/SO/1",
        "/v1/../admin",
        "/v1/customer/..%2F..%2Fadmin",
        "/v1/customer/%2e%2e/x",
        "/v1//customer",
        "/v1/customer/1#frag",
        "/v1/customer/a b",
        "/v1/customer\\1",
        "/v1/@evil.example/x",
        "/v1/customer/1\r\nX-Injected: 1",
    ],
)
def test_paths_outside_financials_are_refused_without_a_request(sandbox, make_client, path):
    client = make_client()
    with pytest.raises(ValueError, match="plain financials API path"):
        client.get(TENANT, FINANCIALS, path)
    assert sandbox.requests == []
    assert client.stats["requests"] == 0


def test_connections_are_reused(sandbox, make_client):
    client = make_client()
    for i in range(20):
        client.get(TENANT, FINANCIALS, f"/v1/customer/{i}")
    client.post_feedback(TENANT, "n-1", source="s", description="d", is_success=True)
    assert sandbox.connections == 1


def test_neither_secret_nor_token_in_logs_or_errors(sandbox, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    client.get(TENANT, FINANCIALS, CUSTOMER)
    token = client.tokens.peek(TENANT).value
    sandbox.add_rule("/v1/customer/1", 503, times=1)
    sandbox.add_rule("/v1/customer/2", 400, body={"message": f"bad request with {token} / {CLIENT_SECRET}"})
    client.get(TENANT, FINANCIALS, "/v1/customer/1")
    with pytest.raises(PermanentVismaError) as caught:
        client.get(TENANT, FINANCIALS, "/v1/customer/2")
    assert "***" in caught.value.reason
    texts = [str(caught.value), repr(caught.value), caplog.text, repr(client)]
    for text in texts:
        assert token not in text
        assert CLIENT_SECRET not in text


@pytest.mark.parametrize(
    "base_url", ["ftp://api.example", "https://api.example/?x=1", "https://api.example/#f", "https://"]
)
def test_a_base_url_that_is_not_a_plain_http_url_is_refused(base_url):
    with pytest.raises(ValueError, match="base URL must be an http"):
        VismaClient(base_url, "https://connect.example/token", CLIENT_ID, CLIENT_SECRET)


def test_a_request_without_a_tenant_is_refused_before_any_call(sandbox, make_client):
    with pytest.raises(ValueError, match="tenant_id is required"):
        make_client().get("", "financials", CUSTOMER)
    assert sandbox.requests == []
