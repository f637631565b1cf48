"""Reconciliation cursors and the processor's resource watermarks in DynamoDB (moto)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from visma_webhooks.adapters.resource_store import resource_key
from visma_webhooks.adapters.watermarks import DynamoDBCursorStore
from visma_webhooks.domain.reconciliation import CursorConflict
from visma_webhooks.domain.reconciling import ENTITIES, Cursor

CUSTOMER = ENTITIES["customer"]


@pytest.fixture
def store(idempotency_table):
    return DynamoDBCursorStore("idempotency", idempotency_table)


def test_a_cursor_round_trips_and_a_stale_version_is_refused(store):
    assert store.load("reconcile", "t1", CUSTOMER) == Cursor()
    cursor = Cursor(watermark="2025-06-01T11:58:00.000000Z", since="x", page=3, pages=2, missed=4)
    stored = store.save("reconcile", "t1", CUSTOMER, cursor)
    assert stored.version == 1
    assert store.load("reconcile", "t1", CUSTOMER) == stored
    assert store.load("backfill", "t1", CUSTOMER) == Cursor()  # kinds are apart
    store.save("reconcile", "t1", CUSTOMER, replace(stored, page=4))
    with pytest.raises(CursorConflict):  # another run stored it since `stored` was read
        store.save("reconcile", "t1", CUSTOMER, replace(stored, page=5))
    with pytest.raises(CursorConflict):
        store.save("reconcile", "t1", CUSTOMER, Cursor())  # a first save over an existing one


def test_status_finds_every_cursor_through_the_index(store):
    store.save("reconcile", "t1", CUSTOMER, Cursor(missed=2))
    store.save("backfill", "t2#odd", ENTITIES["salesorder"], Cursor(page=7))
    found = store.cursors()
    assert set(found) == {"reconcile#t1#financials#customer", "backfill#t2#odd#salesorders#salesorder"}
    assert found["reconcile#t1#financials#customer"].missed == 2


def test_resource_watermarks_are_read_in_batches_of_100_and_expired_ones_are_ignored(
    store, idempotency_table
):
    now = int(time.time())
    paths = [f"/v1/customer/{i}" for i in range(250)]
    for i, path in enumerate(paths[:120]):
        expiration = now - 10 if i == 0 else now + 3600
        idempotency_table.put_item(
            TableName="idempotency",
            Item={
                **resource_key("t1", "financials", path),
                "modified": {"S": f"2025-06-01T11:{i % 60:02d}:00.000000Z"},
                "expiration": {"N": str(expiration)},
            },
        )
    before = store.requests
    seen = store.seen("t1", "financials", paths)
    assert store.requests - before == 3
    assert seen[paths[0]] is None  # expired: the processor would not see it either
    assert seen[paths[1]] == "2025-06-01T11:01:00.000000Z"
    assert sum(v is not None for v in seen.values()) == 119
    assert store.seen("t2", "financials", paths[:5]) == dict.fromkeys(paths[:5])  # another tenant's


def test_tenants_seen_are_read_from_the_budget_adapters_item(store, idempotency_table):
    assert store.tenants_seen() == set()
    idempotency_table.update_item(
        TableName="idempotency",
        Key={"id": {"S": "tenants#seen"}},
        UpdateExpression="ADD tenants :t",
        ExpressionAttributeValues={":t": {"SS": ["t1", "t2"]}},
    )
    assert store.tenants_seen() == {"t1", "t2"}
