"""Waiting for the tenant's Visma budget is not failing: the real processor handler on moto,
against the sandbox enforcing a small fixed-window budget over real sockets.

A notification costs two calls (the fetch and the feedback post), both taken from the
tenant's shared budget before its handler runs. With 6 calls per 2-second window, a
burst of 12 notifications needs at least four windows: every notification that finds no
budget is put back as a fresh, delayed copy (attribute ``waits``), never as a receive
that counts toward the DLQ.
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter

import boto3
import pytest

from tests.conftest import REGION, drain
from tests.processor_support import (
    feedback_for,
    gets,
    load_processor,
    notification,
    process_until_empty,
    put,
    waits_of,
)
from visma_webhooks.adapters.budget_store import SharedBudget
from visma_webhooks.adapters.outcome_store import DynamoDBOutcomeStore
from visma_webhooks.domain.budgets import BudgetSettings, BudgetWait
from visma_webhooks.notification_handlers import registry
from visma_webhooks_local.sandbox import VismaSandbox

CLIENT_ID = "processor-test"
TENANT = "1262489"
FEEDBACK = "/v1/webhooknotificationfeedback"


def budget_env(calls: int, window: float) -> dict[str, str]:
    return {
        "VISMA_BUDGET_WINDOW_SECONDS": str(window),
        "VISMA_BUDGET_ASSUMED_LIMIT": str(calls),
        "VISMA_BUDGET_RESERVE_PERCENT": "0",
        "MAX_RECEIVE_COUNT": "5",
    }


@pytest.fixture
def counter():
    module = importlib.import_module("tests.counting_handlers")
    module.reset()
    return module


def outcomes() -> DynamoDBOutcomeStore:
    return DynamoDBOutcomeStore("idempotency", boto3.client("dynamodb", region_name=REGION), 3600)


def refused(sandbox: VismaSandbox) -> int:
    return sum(w["refused"] for w in sandbox.budget()["windows"])


def assert_no_dlq(queues) -> None:
    assert drain(queues["sqs"], queues["dlq_url"]) == [], "a waiting notification was dead-lettered"


def burst(monkeypatch, queues, calls: int, window: float, *, max_handed: int = 1000):
    """12 notifications through the processor against ``calls`` per ``window`` seconds."""
    sqs, url = queues["sqs"], queues["queue_url"]
    secret = "processor-test-secret"
    with VismaSandbox(client_id=CLIENT_ID, client_secret=secret, rate_limit=calls, rate_window=window) as sb:
        app = load_processor(monkeypatch, queues, sb, **budget_env(calls, window))
        ids = [f"burst-{i:02d}" for i in range(12)]
        put(sqs, url, [notification(nid, f"/v1/customer/{30000 + i}") for i, nid in enumerate(ids)])
        handed = process_until_empty(app, sqs, url, max_handed=max_handed)
        return ids, handed, sb.feedback, sb.budget()["windows"]


def test_a_burst_needing_several_windows_finishes_without_the_dlq(
    monkeypatch, queues, idempotency_table, counter
):
    ids, handed, feedback, usage = burst(monkeypatch, queues, 8, 2.0)

    assert_no_dlq(queues)
    for nid in ids:
        assert [f["isSuccess"] for f in feedback_for(feedback, nid)] == [True], nid
        assert counter.runs[nid] == 1, f"{nid}'s handler ran {counter.runs[nid]} times"
        assert outcomes().get(nid, TENANT).outcome == "succeeded"
    assert not [f for f in feedback if "gave up" in f["description"]]
    assert len(feedback) == 12
    # the burst needed several of Visma's windows, and the calls were paced into them
    [window] = usage
    assert window["served"] == 24
    assert window["resets"] >= 2
    assert window["refused"] <= 2, f"{window['refused']} calls refused with 429: the budget did not pace them"
    # every wait was a fresh copy, received once: no receive was used up by waiting
    waited = [r for r in handed if waits_of(r)]
    assert len(waited) >= 6, "12 notifications at 8 calls a window must wait"
    assert Counter(r["attributes"]["ApproximateReceiveCount"] for r in handed) == {"1": len(handed)}
    assert len(handed) == 12 + len(waited)


def test_a_budget_smaller_than_a_notifications_calls_at_once_still_serves_it(
    monkeypatch, queues, idempotency_table, counter
):
    """6 calls a window: its burst (a quarter, 1.5) is less than a notification's 2 calls, so
    each must wait for the pace to grow a little into the window, then be served."""
    ids, handed, feedback, _ = burst(monkeypatch, queues, 6, 2.0, max_handed=12 * 8)

    assert_no_dlq(queues)
    assert all(feedback_for(feedback, nid) for nid in ids)
    assert len(handed) < 12 * 8


def spender(budget: SharedBudget, spent: threading.Event):
    """A handler that, while it runs, lets another instance spend the rest of the budget."""

    def spend(notification, resource, context):
        n = 0
        while True:
            try:
                budget.take(notification.tenant_id, 1)
            except BudgetWait:
                break
            n += 1
        spent.set()
        return f"others spent {n}"

    return spend


def test_a_notification_whose_handler_ran_gets_its_feedback_when_the_budget_is_spent(
    monkeypatch, queues, idempotency_table, counter
):
    sqs, url = queues["sqs"], queues["queue_url"]
    with VismaSandbox(
        client_id=CLIENT_ID, client_secret="processor-test-secret", rate_limit=40, rate_window=60
    ) as sb:
        app = load_processor(monkeypatch, queues, sb, **budget_env(40, 60))
        other = SharedBudget(
            "idempotency",
            boto3.client("dynamodb", region_name=REGION),
            CLIENT_ID,
            BudgetSettings(reserve_percent=0.0, window_seconds=60, assumed_limit=40),
        )
        spent = threading.Event()
        registry.add(("budgetcase_*",), spender(other, spent), "spender")
        put(sqs, url, [notification("reserved-1", "/v1/customer/10001", event="budgetcase_changed")])

        handed = process_until_empty(app, sqs, url)
        feedback = sb.feedback

    assert spent.is_set()
    with pytest.raises(BudgetWait):
        other.take(TENANT, 1)  # the budget is spent: a take for the feedback would wait
    assert len(handed) == 1, "the feedback's call was reserved: no copy had to wait for it"
    [posted] = feedback_for(feedback, "reserved-1")
    assert posted["isSuccess"] is True
    assert "others spent" in posted["description"]
    record = outcomes().get("reserved-1", TENANT)
    assert record.outcome == "succeeded"
    assert_no_dlq(queues)


def test_a_429_on_the_feedback_post_waits_without_running_the_handler_again(
    monkeypatch, queues, idempotency_table, counter
):
    sqs, url = queues["sqs"], queues["queue_url"]
    with VismaSandbox(
        client_id=CLIENT_ID, client_secret="processor-test-secret", rate_limit=40, rate_window=60
    ) as sb:
        app = load_processor(monkeypatch, queues, sb, **budget_env(40, 60))
        sb.add_rule(FEEDBACK, 429, times=1, method="POST", retry_after=1)
        put(sqs, url, [notification("fb-429", "/v1/customer/10002")])

        handed = process_until_empty(app, sqs, url)
        feedback = sb.feedback
        fetched = gets(sb, "/v1/customer/10002")
        posts = [r for r in sb.requests if r["path"] == FEEDBACK]

    assert counter.runs["fb-429"] == 1, "the handler ran again for a throttled feedback post"
    assert len(fetched) == 1, "the copy refetched a resource its handler had already received"
    assert len(posts) == 2  # the refused one, then the one posted
    assert [f["isSuccess"] for f in feedback_for(feedback, "fb-429")] == [True]
    assert [waits_of(r) for r in handed] == [0, 1]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in handed] == ["1", "1"]
    record = outcomes().get("fb-429", TENANT)
    assert record.outcome == "succeeded"
    assert "throttled" in [h.step for h in record.history]
    assert_no_dlq(queues)
