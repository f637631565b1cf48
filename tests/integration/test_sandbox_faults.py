"""The embedded Visma sandbox's rate limits and injected faults, over real sockets."""

from __future__ import annotations

import time

import pytest
import requests

from tests.sandbox_support import RATE_HEADERS, TENANT, auth, token
from visma_webhooks_local.sandbox import VismaSandbox

# -- rate limit headers ------------------------------------------------------------------


def test_every_response_carries_rate_limit_headers_and_remaining_counts_down(http):
    with VismaSandbox(rate_limit=3) as sb:
        headers = auth(token(sb, http))
        responses = [
            http.get(sb.url + "/v1/customer/1", timeout=5),  # 401
            http.get(sb.url + "/v1/customer/1", headers=headers, timeout=5),
            http.get(sb.url + "/v1/customer/missing", headers=headers, timeout=5),
            http.post(
                sb.url + "/v1/webhooknotificationfeedback",
                json={"notificationId": "n", "isSuccess": True},
                headers=headers,
                timeout=5,
            ),
            http.get(sb.url + "/v1/customer/2", headers=headers, timeout=5),
        ]
        assert [r.status_code for r in responses] == [401, 200, 404, 201, 429]
        for response in responses:
            assert all(name in response.headers for name in RATE_HEADERS)
            assert response.headers["X-RateLimit-Limit"] == "3"
            assert 3590 <= int(response.headers["X-RateLimit-Reset"]) <= 3600
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["3", "2", "1", "0", "0"]
        assert 3590 <= int(responses[-1].headers["Retry-After"]) <= 3600
        assert sb.requests[-1]["fault"] == "rate_limit"


# -- fault injection ---------------------------------------------------------------------


def test_error_and_throttle_rates(sandbox, http):
    headers = auth(token(sandbox, http))
    url = sandbox.url + "/v1/customer/1"
    sandbox.set_faults(error_rate=1.0)
    response = http.get(url, headers=headers, timeout=5)
    assert response.status_code == 503
    sandbox.set_faults(error_rate=0.0, throttle_rate=1.0)
    response = http.get(url, headers=headers, timeout=5)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert all(name in response.headers for name in RATE_HEADERS)
    assert [r["fault"] for r in sandbox.requests[-2:]] == ["error", "throttle"]


def test_seeded_draws_are_reproducible():
    def statuses(seed: int) -> list[int]:
        with VismaSandbox(error_rate=0.5, seed=seed) as sb, requests.Session() as session:
            headers = auth(token(sb, session))
            return [
                session.get(sb.url + f"/v1/customer/{i}", headers=headers, timeout=5).status_code
                for i in range(30)
            ]

    first = statuses(7)
    assert first == statuses(7)
    assert {200, 503} == set(first)


def test_latency_applies_to_api_calls(http):
    with VismaSandbox(latency=0.2) as sb:
        started = time.monotonic()
        value = token(sb, http)
        assert time.monotonic() - started < 0.15  # not the token endpoint
        started = time.monotonic()
        http.get(sb.url + "/v1/customer/1", headers=auth(value), timeout=5)
        assert time.monotonic() - started >= 0.2


def test_timeout_mode_hangs_longer_than_the_client_waits(sandbox, http):
    headers = auth(token(sandbox, http))
    sandbox.set_faults(timeout_rate=1.0, timeout_seconds=2.0)
    with pytest.raises(requests.ReadTimeout):
        http.get(sandbox.url + "/v1/customer/1", headers=headers, timeout=(1, 0.3))


def test_path_rules_over_http_fail_n_times_then_serve(sandbox, http):
    headers = auth(token(sandbox, http))
    url = sandbox.url + "/v1/customer/42"
    rule = {"path": "/v1/customer/42", "status": 503, "times": 2}
    assert http.post(sandbox.url + "/_sandbox/faults", json=rule, timeout=5).ok
    codes = [http.get(url, headers=headers, timeout=5).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    faults = http.get(sandbox.url + "/_sandbox/faults", timeout=5).json()
    assert faults["rules"][0]["hits"] == 2


def test_permanent_glob_rule_with_method_and_body(sandbox, http):
    headers = auth(token(sandbox, http))
    sandbox.add_rule("/v1/salesorder/*", 410, method="GET", body={"message": "gone"})
    for _ in range(3):
        response = http.get(sandbox.url + "/v1/salesorder/SO/1", headers=headers, timeout=5)
        assert (response.status_code, response.json()) == (410, {"message": "gone"})
    assert http.get(sandbox.url + "/v1/customer/1", headers=headers, timeout=5).status_code == 200
    sandbox.set_faults(rules=[])
    assert http.get(sandbox.url + "/v1/salesorder/SO/1", headers=headers, timeout=5).status_code == 200


def test_rules_apply_to_the_token_endpoint(sandbox, http):
    sandbox.add_rule("/connect/token", 500, times=1)
    data = {"grant_type": "client_credentials", "tenant_id": TENANT}
    assert http.post(sandbox.token_url, data=data, timeout=5).status_code == 500
    assert http.post(sandbox.token_url, data=data, timeout=5).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 1.5},
        {"latency": -1},
        {"throttle_rate": "high"},
        {"bogus": 1},
        {"path": "/v1/x", "times": 0},
    ],
)
def test_invalid_fault_settings_are_400(sandbox, http, body):
    response = http.post(sandbox.url + "/_sandbox/faults", json=body, timeout=5)
    assert response.status_code == 400
    assert response.json()["message"]


def test_reset_restores_the_start(http):
    with VismaSandbox(latency=0.0, error_rate=0.0) as sb:
        headers = auth(token(sb, http))
        http.post(sb.url + "/_sandbox/faults", json={"error_rate": 1.0}, timeout=5)
        http.post(sb.url + "/_sandbox/faults", json={"path": "/v1/customer/1", "status": 404}, timeout=5)
        http.post(
            sb.url + "/v1/webhooknotificationfeedback",
            json={"notificationId": "n", "isSuccess": True},
            headers=headers,
            timeout=5,
        )
        assert http.post(sb.url + "/_sandbox/reset", timeout=5).ok
        assert sb.feedback == []
        assert sb.requests == []
        assert sb.faults()["error_rate"] == 0.0
        assert sb.faults()["rules"] == []
        assert http.get(sb.url + "/v1/customer/1", headers=headers, timeout=5).status_code == 200


def test_request_log(sandbox, http):
    value = token(sandbox, http)
    http.get(sandbox.url + "/v1/customer/10001?expand=contacts", headers=auth(value), timeout=5)
    http.get(sandbox.url + "/_sandbox/feedback", timeout=5)
    log = http.get(sandbox.url + "/_sandbox/requests", timeout=5).json()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/connect/token", 200),
        ("GET", "/v1/customer/10001", 200),
    ]
    assert log[1]["query"] == "expand=contacts"
    assert log[1]["tenant"] == TENANT
    assert abs(log[1]["time"] - time.time()) < 60
