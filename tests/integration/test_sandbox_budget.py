"""The sandbox's rate limit as Visma's ``4-fixed-window`` policy: one budget per (tenant, client)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.sandbox_support import TENANT, auth, token
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.sandbox.__main__ import argument_parser, sandbox_from
from visma_webhooks_local.sandbox.budget import POLICY, Budget

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Policy")
CUSTOMER = "/v1/customer/10001"
FEEDBACK = {"notificationId": "n-1", "isSuccess": True}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_answer_carries_the_window_and_a_refused_call_is_not_served(http):
    with VismaSandbox(rate_limit=3, client_id="c1", client_secret="s") as sb:
        headers = auth(token(sb, http, client_id="c1", client_secret="s"))
        responses = [
            http.get(sb.url + CUSTOMER, timeout=5),  # 401: no call used
            http.get(sb.url + CUSTOMER, headers=headers, timeout=5),
            http.get(sb.url + "/v1/customer/missing-1", headers=headers, timeout=5),
            http.post(sb.url + "/v1/webhooknotificationfeedback", json=FEEDBACK, headers=headers, timeout=5),
            http.put(sb.url + CUSTOMER, json={"name": "X"}, headers=headers, timeout=5),
        ]
        assert [r.status_code for r in responses] == [401, 200, 404, 201, 429]
        for response in responses:
            assert all(name in response.headers for name in HEADERS), response.headers
            assert response.headers["X-RateLimit-Policy"] == POLICY
            assert 3599 <= int(response.headers["X-RateLimit-Reset"]) <= 3600
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["3", "2", "1", "0", "0"]
        assert responses[-1].headers["Retry-After"] == responses[-1].headers["X-RateLimit-Reset"]
        assert sb.writes == []  # refused: not served
        assert sb.webhooks == []
        [window] = sb.budget()["windows"]
        assert window == {
            "tenant": TENANT,
            "client_id": "c1",
            "calls": 4,
            "served": 3,
            "refused": 1,
            "resets": 0,
            "remaining": 0,
            "reset_in": window["reset_in"],
        }


def test_each_tenant_and_client_has_a_window_of_its_own(http):
    with VismaSandbox(rate_limit=1) as sb:
        a = auth(token(sb, http, client_id="a"))
        b = auth(token(sb, http, client_id="b"))
        other = auth(token(sb, http, tenant="other", client_id="a"))
        assert http.get(sb.url + CUSTOMER, headers=a, timeout=5).ok
        assert (
            http.get(sb.salesorders_url + "/api/v3/SalesOrders/SO/1", headers=a, timeout=5).status_code == 429
        )
        assert http.get(sb.url + CUSTOMER, headers=b, timeout=5).ok
        assert http.get(sb.journaltx_url + "/api/v1/JournalTransactions/1", headers=other, timeout=5).ok
        usage = {(w["tenant"], w["client_id"]): (w["served"], w["refused"]) for w in sb.budget()["windows"]}
        assert usage == {(TENANT, "a"): (1, 1), (TENANT, "b"): (1, 0), ("other", "a"): (1, 0)}


def test_the_window_resets_and_its_reset_is_whole_seconds_rounded_up(http):
    with VismaSandbox(rate_limit=1, rate_window=0.6) as sb:
        headers = auth(token(sb, http))
        first = http.get(sb.url + CUSTOMER, headers=headers, timeout=5)
        refused = http.get(sb.url + CUSTOMER, headers=headers, timeout=5)
        assert (first.status_code, refused.status_code) == (200, 429)
        assert first.headers["X-RateLimit-Reset"] == refused.headers["Retry-After"] == "1"
        time.sleep(0.65)
        again = http.get(sb.url + CUSTOMER, headers=headers, timeout=5)
        assert again.status_code == 200
        assert again.headers["X-RateLimit-Remaining"] == "0"
        [window] = sb.budget()["windows"]
        assert (window["served"], window["refused"], window["resets"]) == (2, 1, 1)


def test_the_budget_counts_per_caller_and_renews_with_its_clock():
    clock = Clock()
    budget = Budget(threading.RLock(), 2, 10, clock)
    caller = (TENANT, "c")
    assert [budget.take(caller)[0] for _ in range(3)] == [True, True, False]
    served, headers = budget.take(caller)
    assert not served
    assert (headers["Retry-After"], headers["X-RateLimit-Reset"]) == ("10", "10")
    clock.now += 9.2
    assert budget.take(caller)[1]["X-RateLimit-Reset"] == "1"  # 0.8 s, rounded up
    clock.now += 0.8
    served, headers = budget.take(caller)
    assert served
    assert (headers["X-RateLimit-Remaining"], headers["X-RateLimit-Reset"]) == ("1", "10")
    [usage] = budget.usage()
    assert (usage["calls"], usage["served"], usage["refused"], usage["resets"]) == (6, 3, 3, 1)
    assert budget.headers((None, None))["X-RateLimit-Remaining"] == "2"


def test_the_control_api_sets_and_shows_the_budget(sandbox, http):
    url = sandbox.url + "/_sandbox/budget"
    answer = http.post(url, json={"calls_per_window": 2, "window_seconds": 30}, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"calls_per_window": 2, "window_seconds": 30.0, "policy": POLICY, "windows": []}
    headers = auth(token(sandbox, http))
    for _ in range(3):
        http.get(sandbox.url + CUSTOMER, headers=headers, timeout=5)
    [window] = http.get(url, timeout=5).json()["windows"]
    assert (window["calls"], window["refused"]) == (3, 1)
    assert window["refused"] / window["calls"] == pytest.approx(1 / 3)
    response = http.get(sandbox.url + CUSTOMER, headers=headers, timeout=5)
    assert 29 <= int(response.headers["Retry-After"]) <= 30

    assert (
        http.post(sandbox.url + "/_sandbox/faults", json={"rate_limit": 7}, timeout=5).json()["rate_limit"]
        == 7
    )
    assert sandbox.budget()["calls_per_window"] == 7
    http.post(sandbox.url + "/_sandbox/reset", timeout=5)
    assert http.get(url, timeout=5).json() == {
        "calls_per_window": 100_000,
        "window_seconds": 3600.0,
        "policy": POLICY,
        "windows": [],
    }


@pytest.mark.parametrize(
    "body",
    [{"calls_per_window": 0}, {"calls_per_window": 1.5}, {"window_seconds": 0}, {"window": 5}, [1]],
)
def test_bad_budget_settings_are_400(sandbox, http, body):
    response = http.post(sandbox.url + "/_sandbox/budget", json=body, timeout=5)
    assert response.status_code == 400
    assert response.json()["message"]


def test_the_command_line_sets_the_budget():
    args = argument_parser().parse_args(["--calls-per-window", "5", "--window-seconds", "60"])
    sandbox = sandbox_from(args)
    assert sandbox.budget()["calls_per_window"] == 5
    assert sandbox.rate_window == 60.0
    assert sandbox_from(argument_parser().parse_args(["--rate-limit", "9"])).budget()["calls_per_window"] == 9
    with pytest.raises(ValueError, match="calls_per_window"):
        sandbox_from(argument_parser().parse_args(["--calls-per-window", "0"]))
