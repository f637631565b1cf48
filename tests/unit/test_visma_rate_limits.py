"""The Visma client under Visma's rate limits: 429s, Retry-After, X-RateLimit-* and blocked tenants."""

from __future__ import annotations

import email.utils
import time

import pytest

from tests.visma_support import (
    CUSTOMER,
    TENANT,
    FakeClock,
    api_requests,
)
from visma_webhooks.domain.errors import ThrottledError
from visma_webhooks.domain.rate_limits import throttle_wait
from visma_webhooks.domain.services import FINANCIALS

# -- rate limits -------------------------------------------------------------------------


def test_429_with_retry_after_seconds_raises_at_once_and_blocks_the_tenant(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, 429, retry_after=7, tenant=TENANT)
    clock = FakeClock()
    client = make_client(sleep=clock.sleep)
    with pytest.raises(ThrottledError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert caught.value.retry_after == pytest.approx(7, abs=0.01)
    assert caught.value.status == 429
    assert clock.sleeps == []
    assert len(api_requests(sandbox)) == 1
    with pytest.raises(ThrottledError) as again:  # blocked: no request at all
        client.get(TENANT, FINANCIALS, "/v1/customer/10002")
    assert 0 < again.value.retry_after <= 7
    assert len(api_requests(sandbox)) == 1
    assert client.get("another-tenant", FINANCIALS, CUSTOMER)["number"] == "10001"
    assert client.stats["throttled"] == 2


def test_429_with_retry_after_http_date(sandbox, make_client):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    sandbox.add_rule(CUSTOMER, 429, headers={"Retry-After": when})
    with pytest.raises(ThrottledError) as caught:
        make_client().get(TENANT, FINANCIALS, CUSTOMER)
    assert 27 <= caught.value.retry_after <= 31


def test_429_without_retry_after_uses_x_ratelimit_reset(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, 429, headers={"X-RateLimit-Reset": "42"})
    with pytest.raises(ThrottledError) as caught:
        make_client().get(TENANT, FINANCIALS, CUSTOMER)
    assert caught.value.retry_after == pytest.approx(42, abs=0.01)


def test_x_ratelimit_reset_as_unix_time(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, 429, headers={"X-RateLimit-Reset": str(int(time.time()) + 90)})
    with pytest.raises(ThrottledError) as caught:
        make_client().get(TENANT, FINANCIALS, CUSTOMER)
    assert 87 <= caught.value.retry_after <= 91


def test_throttle_wait_defaults_to_a_minute():
    assert throttle_wait({}) == 60.0
    assert throttle_wait({"Retry-After": "not a date"}) == 60.0


def test_remaining_zero_returns_the_result_then_blocks_until_the_reset(sandbox, make_client):
    sandbox.add_rule(CUSTOMER, times=1, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5"})
    clock = FakeClock()
    client = make_client(clock=clock)
    assert client.get(TENANT, FINANCIALS, CUSTOMER)["number"] == "10001"
    assert client.rate_limit[(TENANT, FINANCIALS)].remaining == 0
    assert client.rate_limit[(TENANT, FINANCIALS)].reset == 5
    with pytest.raises(ThrottledError) as caught:
        client.get(TENANT, FINANCIALS, CUSTOMER)
    assert caught.value.retry_after == pytest.approx(5)
    with pytest.raises(ThrottledError):
        client.post_feedback(TENANT, "n-1", source="test", description="x", is_success=True)
    assert len(api_requests(sandbox)) == 1
    clock.now += 4.9
    with pytest.raises(ThrottledError):
        client.get(TENANT, FINANCIALS, CUSTOMER)
    clock.now += 0.2
    assert client.get(TENANT, FINANCIALS, CUSTOMER)["number"] == "10001"
    assert len(api_requests(sandbox)) == 2


def test_the_sandbox_rate_limit_exhausted(sandbox, make_client):
    sandbox.set_faults(rate_limit=3)
    client = make_client()
    for i in range(3):
        client.get(TENANT, FINANCIALS, f"/v1/customer/{i}")
    assert client.rate_limit[(TENANT, FINANCIALS)].remaining == 0
    with pytest.raises(ThrottledError) as caught:
        client.get(TENANT, FINANCIALS, "/v1/customer/3")
    assert 3500 < caught.value.retry_after <= 3600
    assert len(api_requests(sandbox)) == 3


def test_rate_limit_values_are_recorded_per_tenant(sandbox, make_client):
    client = make_client()
    client.get("tenant-a", FINANCIALS, CUSTOMER)
    client.get("tenant-a", FINANCIALS, CUSTOMER)
    client.get("tenant-b", FINANCIALS, CUSTOMER)
    a, b = client.rate_limit[("tenant-a", FINANCIALS)], client.rate_limit[("tenant-b", FINANCIALS)]
    assert (a.limit, a.remaining) == (100_000, 99_998)
    assert (b.limit, b.remaining) == (100_000, 99_999)
    assert 3590 <= a.reset <= 3600


# -- classification ----------------------------------------------------------------------
