"""One tenant's Visma budget shared by processor instances through DynamoDB (adapters.budget_store), on moto.

Each ``SharedBudget`` stands for one processor instance (a Lambda execution environment):
they share nothing but the table. The clock is a fake one, moved by the test, so that
the pace (a burst, then in proportion to the time gone) gives exact numbers.
"""

from __future__ import annotations

import threading
from collections import Counter

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import REGION
from visma_webhooks.adapters.budget_store import FAIL_FAST_SECONDS, MAX_CHUNK, SharedBudget
from visma_webhooks.domain.budgets import BudgetSettings, BudgetWait, Priority
from visma_webhooks.domain.rate_limits import RateLimit

TABLE = "idempotency"
CLIENT = "processor-client"
TENANT = "1262489"
HOUR = 3600.0
T0 = 1_800_000_000.0
# Visma's limit, none of it reserved: below 50 calls a window, every take is one chunk of
# one call, so every call granted is one conditional write and the count is exact.
SMALL = BudgetSettings(reserve_percent=0.0, window_seconds=HOUR, assumed_limit=48)


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def budgets(idempotency_table, clock):
    """Processor instances, each with its own DynamoDB client and budget, sharing one table."""

    def make(settings: BudgetSettings = SMALL, table: str = TABLE) -> SharedBudget:
        client = boto3.client("dynamodb", region_name=REGION)
        return SharedBudget(table, client, CLIENT, settings, clock=clock)

    return make


def item(tenant: str = TENANT) -> dict[str, float]:
    found = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=TABLE, Key={"id": {"S": f"budget#{tenant}#{CLIENT}"}}, ConsistentRead=True
    )["Item"]
    return {name: float(value["N"]) for name, value in found.items() if "N" in value}


def seen_tenants() -> set[str]:
    found = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=TABLE, Key={"id": {"S": "tenants#seen"}}, ConsistentRead=True
    )
    return set(found.get("Item", {}).get("tenants", {}).get("SS", []))


def spend_until_refused(budget: SharedBudget, tenant: str = TENANT, units: int = 1) -> int:
    """Takes until a wait that says the budget is spent; a contended wait is tried again."""
    granted = 0
    while True:
        try:
            budget.take(tenant, units)
        except BudgetWait as exc:
            if "contended" in str(exc):
                continue
            return granted
        granted += 1


# -- two instances, one count ---------------------------------------------------------------


def test_two_instances_racing_from_threads_share_one_exact_count(budgets, clock):
    a, b = budgets(), budgets()
    a.take(TENANT, 1)  # the window starts now: it ends an hour later
    assert item()["ends_at"] == pytest.approx(T0 + HOUR)
    clock.now = T0 + HOUR / 2  # half gone: 12 at once plus 36 * 1/2 allowed by now
    barrier = threading.Barrier(8)
    granted: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(name: str, budget: SharedBudget) -> None:
        barrier.wait()
        n = spend_until_refused(budget)
        with lock:
            granted[name] += n

    threads = [
        threading.Thread(target=worker, args=(name, budget))
        for name, budget in [("a", a), ("b", b)] * 4  # four record threads in each instance
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert 1 + granted.total() == 30, granted  # exactly what the pace allows, never more
    assert granted["a"] > 0
    assert granted["b"] > 0, "the second instance must spend from the same count"
    assert item()["spent"] == 30
    assert a.writes + b.writes >= 30  # one conditional write per call (plus the races lost)
    with pytest.raises(BudgetWait):
        b.take(TENANT, 1)


def test_the_count_is_per_tenant(budgets):
    a, b = budgets(), budgets()
    assert spend_until_refused(a, "tenant-x") == 12  # the burst at the window's start
    assert spend_until_refused(b, "tenant-y") == 12, "another tenant's budget is untouched"
    with pytest.raises(BudgetWait):
        b.take("tenant-x", 1)
    assert seen_tenants() == {"tenant-x", "tenant-y"}


def test_a_second_instance_learns_the_window_from_the_table(budgets, clock):
    a, b = budgets(), budgets()
    for _ in range(12):
        a.take(TENANT, 1)

    with pytest.raises(BudgetWait) as caught:
        b.take(TENANT, 1)

    # b read a's window from the refused write: the 13th call is paced at 1/36 of the hour
    assert caught.value.retry_after == pytest.approx(HOUR / 36)
    clock.now = T0 + HOUR / 36 + 0.001
    b.take(TENANT, 1)
    assert item()["spent"] == 13


# -- headers correct the estimate -----------------------------------------------------------


def test_calls_another_integration_made_on_the_client_make_the_next_take_wait(budgets, clock):
    a = budgets()
    a.take(TENANT, 1)
    clock.now = T0 + HOUR / 2  # 30 allowed by now; this stack spent 1
    a.take(TENANT, 1)
    remaining = 20  # Visma's answer to that call: others spent 26 calls on the client
    a.observe(TENANT, RateLimit(limit=48, remaining=remaining, reset=HOUR / 2))

    granted = 0
    while True:  # each call answered before the next, as the Visma client observes them
        try:
            a.take(TENANT, 1)
        except BudgetWait:
            break
        granted, remaining = granted + 1, remaining - 1
        a.observe(TENANT, RateLimit(limit=48, remaining=remaining, reset=HOUR / 2))

    assert granted == 2  # 28 used; 30 allowed by now
    stored = item()  # what the refused take wrote: the last answer's count
    assert stored["used_seen"] + stored["spent"] - stored["spent_at_seen"] == 30


def test_the_headers_that_made_a_take_wait_are_not_forgotten(budgets, clock):
    a, b = budgets(), budgets()
    a.take(TENANT, 1)
    clock.now = T0 + HOUR / 2  # 30 allowed by now
    a.take(TENANT, 1)
    a.observe(TENANT, RateLimit(limit=48, remaining=18, reset=HOUR / 2))  # Visma counts 30

    with pytest.raises(BudgetWait):
        a.take(TENANT, 1)

    with pytest.raises(BudgetWait):
        a.take(TENANT, 1)  # the same instance, a moment later: still 30 used
    with pytest.raises(BudgetWait):
        b.take(TENANT, 1)  # another instance: the table must say 30 used too


def test_calls_granted_after_the_headers_count_on_top_of_what_visma_reported(budgets, clock):
    """Calls granted while the answers to earlier ones are still in flight (other record
    threads, chunks): Visma's count (28 used) plus this stack's calls since (not yet in
    any answer) must stay within the 30 that the pace allows by now."""
    a = budgets()
    a.take(TENANT, 1)
    clock.now = T0 + HOUR / 2
    a.take(TENANT, 1)
    a.observe(TENANT, RateLimit(limit=48, remaining=20, reset=HOUR / 2))

    assert spend_until_refused(a) == 2


def test_another_instance_counts_its_calls_on_top_of_the_headers_in_the_table(budgets, clock):
    a, b = budgets(), budgets()
    a.take(TENANT, 1)
    clock.now = T0 + HOUR / 2
    a.take(TENANT, 1)
    a.observe(TENANT, RateLimit(limit=48, remaining=20, reset=HOUR / 2))
    a.take(TENANT, 1)  # writes Visma's 28 (and this stack's 3 spent) to the table

    assert spend_until_refused(b) == 1  # 28 + this call = 29; + b's call = 30


def test_a_higher_limit_in_the_headers_raises_what_is_allowed(budgets, clock):
    a = budgets()
    a.take(TENANT, 1)
    a.observe(TENANT, RateLimit(limit=96, remaining=95, reset=HOUR))
    clock.now = T0 + 1

    assert 1 + spend_until_refused(a) == 24  # a quarter of 96 at once, not of the 48 assumed
    assert item()["limit"] == 96


def test_headers_saying_visma_is_nearly_out_reach_the_count_before_a_local_chunk_is_spent(budgets, clock):
    settings = BudgetSettings(reserve_percent=0.0, window_seconds=HOUR, assumed_limit=1000)
    a = budgets(settings)
    clock.now = T0
    a.take(TENANT, 1)  # a chunk of 10: 9 left locally
    writes = a.writes
    a.take(TENANT, 1)
    assert a.writes == writes, "a call of the chunk needs no request"

    # others spent 245 calls: Visma counts 255, beyond the 250 burst of the window's start
    a.observe(TENANT, RateLimit(limit=1000, remaining=745, reset=HOUR))

    with pytest.raises(BudgetWait):
        a.take(TENANT, 1)  # the 8 calls left of the chunk are not spent past the news
    assert a.writes == writes + 1, "the news is written once, for the other instances"
    with pytest.raises(BudgetWait):
        a.take(TENANT, 1)
    assert a.writes == writes + 1, "a refused take without news writes nothing"


def test_headers_of_the_previous_window_do_not_hold_back_the_next_one(budgets, clock):
    """Visma's last answer of a window says it is spent (Remaining 0, reset in 1 s); once
    both Visma's window and ours have ended, the next take is in a fresh window."""
    a = budgets()
    a.take(TENANT, 1)
    clock.now = T0 + HOUR - 1
    a.take(TENANT, 1)
    a.observe(TENANT, RateLimit(limit=48, remaining=0, reset=1))

    clock.now = T0 + HOUR + 5  # both windows ended 5 s ago

    a.take(TENANT, 1)
    window = item()
    assert window["ends_at"] == pytest.approx(T0 + 2 * HOUR)
    assert window["spent"] == 1


# -- chunks -----------------------------------------------------------------------------------


def test_calls_are_taken_in_chunks_so_most_need_no_request(budgets, clock):
    settings = BudgetSettings(reserve_percent=0.0, window_seconds=HOUR, assumed_limit=1000)
    a = budgets(settings)

    for _ in range(25):
        a.take(TENANT, 1)

    # three chunks of MAX_CHUNK (1000 / 50 = 20, capped at 10) and the tenant noted once
    assert MAX_CHUNK == 10
    assert a.writes == 3 + 1
    assert item()["spent"] == 30
    assert seen_tenants() == {TENANT}


def test_a_chunk_is_at_most_a_fiftieth_of_what_the_window_allows(budgets):
    settings = BudgetSettings(reserve_percent=0.0, window_seconds=HOUR, assumed_limit=200)
    a = budgets(settings)

    for _ in range(8):
        a.take(TENANT, 1)

    assert item()["spent"] == 8  # chunks of 4
    assert a.writes == 2 + 1


def test_a_take_larger_than_a_chunk_is_one_request(budgets):
    settings = BudgetSettings(reserve_percent=0.0, window_seconds=HOUR, assumed_limit=1000)
    a = budgets(settings)
    a.take(TENANT, 12)
    assert (item()["spent"], a.writes) == (12, 2)


def test_the_pace_allowing_less_than_a_chunk_grants_just_the_calls_asked_for(budgets):
    settings = BudgetSettings(reserve_percent=0.0, window_seconds=HOUR, assumed_limit=1000)
    a, b = budgets(settings), budgets(settings)
    a.take(TENANT, 245)  # the burst is 250: 5 left by the pace now

    for _ in range(5):
        b.take(TENANT, 1)

    assert item()["spent"] == 250
    with pytest.raises(BudgetWait):
        b.take(TENANT, 1)


def test_a_chunk_left_at_the_end_of_the_window_is_not_spent_in_the_next(budgets, clock):
    settings = BudgetSettings(reserve_percent=0.0, window_seconds=HOUR, assumed_limit=1000)
    a = budgets(settings)
    a.take(TENANT, 1)  # 9 left of the chunk
    writes = a.writes
    clock.now = T0 + HOUR + 1

    a.take(TENANT, 1)

    assert a.writes == writes + 2  # a new chunk, and the tenant noted for the new window
    window = item()
    assert window["ends_at"] == pytest.approx(T0 + 2 * HOUR)
    assert window["spent"] == 10


def test_background_work_leaves_the_webhooks_headroom(budgets):
    a = budgets()
    granted = 0
    while True:
        try:
            a.take(TENANT, 1, Priority.BACKGROUND)
        except BudgetWait:
            break
        granted += 1

    assert granted == 9  # three quarters of the 12 at once
    assert 9 + spend_until_refused(a) == 12


# -- the table failing ------------------------------------------------------------------------


def test_a_failing_table_fails_fast_then_is_tried_again(budgets, clock):
    a = budgets(table="no-such-table")

    with pytest.raises(ClientError) as first:
        a.take(TENANT, 1)
    assert "ResourceNotFound" in type(first.value).__name__ + str(first.value)
    writes = a.writes
    clock.now = T0 + FAIL_FAST_SECONDS - 0.1
    for _ in range(3):
        with pytest.raises(type(first.value)) as again:
            a.take(TENANT, 1)  # the records waiting fail at once, without a request each
        assert again.value is first.value
    assert a.writes == writes

    clock.now = T0 + FAIL_FAST_SECONDS + 0.1
    with pytest.raises(type(first.value)):
        a.take(TENANT, 1)
    assert a.writes == writes + 1, "after the pause the table is asked again"


def test_the_table_recovering_ends_the_fast_failures(budgets, clock, idempotency_table):
    a = budgets()
    idempotency_table.delete_table(TableName=TABLE)
    with pytest.raises(ClientError):  # the table is gone
        a.take(TENANT, 1)
    idempotency_table.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ClientError):  # still within the pause
        a.take(TENANT, 1)

    clock.now = T0 + FAIL_FAST_SECONDS + 1
    a.take(TENANT, 1)
    a.take(TENANT, 1)
    assert item()["spent"] == 2


def test_a_take_larger_than_the_burst_is_granted_once_the_pace_has_grown(budgets, clock):
    """6 calls a window allow 1.5 at once: a take of 2 waits a little into the window, and
    after that wait it is granted (the window started with the first take, not the retry)."""
    a = budgets(BudgetSettings(reserve_percent=0.0, window_seconds=2.0, assumed_limit=6))

    with pytest.raises(BudgetWait) as caught:
        a.take(TENANT, 2)
    clock.now = T0 + caught.value.retry_after + 0.01

    a.take(TENANT, 2)
    assert item()["spent"] == 2
