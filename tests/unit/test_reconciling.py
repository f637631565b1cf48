"""Reconciliation's domain logic: list requests, listed items, the watermark and its overlap,
paging and its page boundaries, the filter against what handlers received, deterministic ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from visma_webhooks.domain.budgets import BudgetWait, Priority
from visma_webhooks.domain.errors import PermanentVismaError
from visma_webhooks.domain.ordering import normalise
from visma_webhooks.domain.queueing import Message
from visma_webhooks.domain.reconciliation import CursorConflict, PassSettings, Walk, reconcile_tenant
from visma_webhooks.domain.reconciling import (
    ENTITIES,
    Cursor,
    candidates,
    entities,
    listed_items,
    listed_total,
    missed_after,
    pass_done,
    select,
    shifted,
    start_backfill,
    start_pass,
    synthetic,
    synthetic_id,
)

CUSTOMER = ENTITIES["customer"]
ORDERS = ENTITIES["salesorder"]
NOW = "2025-06-01T12:00:00.000000Z"


def t(minutes: float) -> str:
    """A normalised time ``minutes`` after 11:00."""
    return shifted("2025-06-01T11:00:00.000000Z", minutes * 60)


def test_each_service_pages_and_filters_as_visma_documents():
    assert CUSTOMER.params(t(0), 2, 100) == {
        "lastModifiedDateTime": "2025-06-01T11:00:00.000",
        "lastModifiedDateTimeCondition": ">=",
        "pageNumber": "2",
        "pageSize": "100",
    }
    assert ORDERS.params(t(0), 0, 50) == {
        "modifiedSince": "2025-06-01T11:00:00.000",
        "pageIndex": "0",
        "pageSize": "50",
    }
    assert (CUSTOMER.first_page, ORDERS.first_page) == (1, 0)  # pageNumber from 1, pageIndex from 0
    assert CUSTOMER.params(None, 1, 10) == {"pageNumber": "1", "pageSize": "10"}  # a backfill from the start


def test_a_listed_item_names_its_resource_path():
    assert CUSTOMER.resource_path({"number": "10001", "name": "x"}) == "/v1/customer/10001"
    assert CUSTOMER.resource_path({"Number": 10002}) == "/v1/customer/10002"  # casing, numbers
    assert ORDERS.resource_path({"orderType": "SO", "orderNo": "1286"}) == "/api/v3/SalesOrders/SO/1286"
    for unsafe in (
        {},
        {"number": ""},
        {"number": "../x"},
        {"number": "a/b"},
        {"number": True},
        {"number": "a b"},
    ):
        assert CUSTOMER.resource_path(unsafe) is None, unsafe


def test_list_answers_are_read_as_arrays_or_paged_objects():
    assert listed_items([{"a": 1}, "junk"]) == [{"a": 1}]
    assert listed_items({"value": [{"a": 1}], "totalCount": 1}) == [{"a": 1}]
    assert listed_items({"unexpected": 1}) == []
    assert listed_items(None) == []
    assert listed_total({"value": [], "totalCount": 7}) == 7
    assert listed_total([{"a": 1, "metadata": {"totalCount": 9}}]) == 9
    assert listed_total([{"a": 1}]) is None


def test_unknown_entities_are_refused():
    assert [e.name for e in entities(["customer", "salesorder", "customer"])] == ["customer", "salesorder"]
    with pytest.raises(ValueError, match="unknown entities"):
        entities(["nonsense"])


def test_a_pass_starts_at_the_watermark_less_the_overlap_and_ends_a_settle_time_before_now():
    first = start_pass(Cursor(), CUSTOMER, NOW, overlap=300, settle=120, lookback=3600)
    assert (first.since, first.cutoff, first.page) == (t(0), t(58), 1)
    later = start_pass(Cursor(watermark=t(30)), CUSTOMER, NOW, overlap=300, settle=120, lookback=3600)
    assert later.since == t(25)
    assert missed_after(later) == t(30)  # the overlap is re-listed, not counted as missed again


def test_the_watermark_moves_to_the_cutoff_only_when_the_pass_is_done_and_never_back():
    cursor = replace(Cursor(watermark=t(50)), since=t(45), cutoff=t(40), page=3)
    assert pass_done(cursor, NOW).watermark == t(50)
    assert pass_done(replace(cursor, cutoff=t(58)), NOW).watermark == t(58)
    assert not pass_done(cursor, NOW).in_pass


def test_candidates_take_the_newest_state_per_path_up_to_the_cutoff():
    items = [
        {"number": "1", "lastModifiedDateTime": "2025-06-01T11:10:00.0000000"},  # .NET's seven digits
        {"number": "1", "lastModifiedDateTime": "2025-06-01T13:10:00+02:00"},  # 11:10, offset given
        {"number": "2", "lastModifiedDateTime": "2025-06-01T11:59:00"},  # after the cutoff: next pass
        {"number": "3"},  # no lastModifiedDateTime: cannot be compared
        {"name": "no key", "lastModifiedDateTime": "2025-06-01T11:00:00"},
    ]
    assert candidates(items, CUSTOMER, t(58)) == {"/v1/customer/1": t(10)}


def test_only_states_newer_than_what_handlers_received_are_selected():
    found = {"/v1/customer/1": t(10), "/v1/customer/2": t(20), "/v1/customer/3": t(30)}
    seen = {"/v1/customer/1": t(10), "/v1/customer/2": t(5), "/v1/customer/3": None}
    changes = select(found, seen, missed_after=t(25))
    assert [(c.path, c.missed) for c in changes] == [("/v1/customer/2", False), ("/v1/customer/3", True)]


def test_synthetic_ids_are_deterministic_and_differ_per_state():
    a = synthetic_id("t1", "financials", "/v1/customer/1", t(10))
    assert a == synthetic_id("t1", "financials", "/v1/customer/1", t(10))
    assert len({a, synthetic_id("t2", "financials", "/v1/customer/1", t(10))}) == 2
    assert a != synthetic_id("t1", "financials", "/v1/customer/1", t(11))
    change = select({"/v1/customer/1": t(10)}, {}, None)[0]
    notification = synthetic("t1", CUSTOMER, change, "reconciler")
    assert notification.notification_id == a
    assert (notification.source_format, notification.derived_id, notification.event) == (
        "reconciled",
        True,
        "customer_changed",
    )
    assert normalise(notification.occurred_at.isoformat()) == t(10)


def test_a_backfill_resumes_one_page_back_with_the_same_since_and_restarts_with_another():
    under_way = replace(Cursor(), since=None, cutoff=NOW, page=5, pages=4)
    assert start_backfill(under_way, CUSTOMER, None, NOW).page == 4
    assert start_backfill(under_way, CUSTOMER, t(0), NOW).page == 1
    assert start_backfill(Cursor(), CUSTOMER, None, NOW).page == 1


# -- the walk over pages, with fakes ---------------------------------------------------------


class FakeVisma:
    """A list endpoint over ``records`` (path id → modified), paged; may run out of budget."""

    def __init__(self, records: dict[str, str], budget: int = 1000):
        self.records = records
        self.budget = budget
        self.calls: list[dict[str, Any]] = []

    def get(self, tenant_id, service, path, *, params=None, priority=Priority.WEBHOOK):
        assert priority is Priority.BACKGROUND
        if self.budget <= 0:
            raise BudgetWait("spent", 30.0)
        self.budget -= 1
        self.calls.append(dict(params or {}))
        since = (params or {}).get("lastModifiedDateTime", "")
        rows = sorted((n, m) for n, m in self.records.items() if m[:23] >= since)
        page, size = int(params["pageNumber"]), int(params["pageSize"])
        return [{"number": n, "lastModifiedDateTime": m} for n, m in rows[(page - 1) * size : page * size]]


class FakeStore:
    def __init__(self, seen: dict[str, str] | None = None, fail_save_after: int | None = None):
        self.cursors: dict[tuple[str, str, str], Cursor] = {}
        self.seen_modified = dict(seen or {})
        self.saves = 0
        self.fail_save_after = fail_save_after

    def load(self, kind, tenant_id, entity):
        return self.cursors.get((kind, tenant_id, entity.name), Cursor())

    def save(self, kind, tenant_id, entity, cursor):
        if self.fail_save_after is not None and self.saves >= self.fail_save_after:
            raise RuntimeError("crash")
        stored = self.cursors.get((kind, tenant_id, entity.name), Cursor())
        if stored.version != cursor.version:
            raise CursorConflict("x")
        self.saves += 1
        self.cursors[(kind, tenant_id, entity.name)] = replace(cursor, version=cursor.version + 1)
        return self.cursors[(kind, tenant_id, entity.name)]

    def seen(self, tenant_id, service, paths: Sequence[str]):
        return {p: self.seen_modified.get(p) for p in paths}


class Sender:
    def __init__(self):
        self.ids: list[str] = []

    def send_batch(self, messages: Sequence[Message]) -> list[str]:
        self.ids += [m.attributes["notification_id"] for m in messages]
        return []


def _walk(visma, store, sender, now=NOW):
    return Walk(visma, store, sender, now=lambda: now)


SETTINGS = PassSettings(page_size=10, overlap_seconds=300, settle_seconds=120, lookback_seconds=3600)


def _records(n: int, minute: float = 10) -> dict[str, str]:
    return {f"{i:04d}": t(minute + i / 100) for i in range(n)}


def test_one_pass_pages_until_a_short_page_and_enqueues_each_unseen_state_once():
    records = _records(25)
    seen = {f"/v1/customer/{i:04d}": m for i, (_, m) in enumerate(records.items()) if i % 5}  # 1 in 5 missed
    visma, store, sender = FakeVisma(records), FakeStore(seen), Sender()
    (run,) = reconcile_tenant(_walk(visma, store, sender), "t1", [CUSTOMER], SETTINGS)
    assert (run.stop, run.pages, run.listed, run.enqueued, run.missed) == ("done", 3, 25, 5, 5)
    assert [c["pageNumber"] for c in visma.calls] == ["1", "2", "3"]
    assert len(set(sender.ids)) == 5
    cursor = store.cursors[("reconcile", "t1", "customer")]
    assert (cursor.watermark, cursor.in_pass, cursor.missed) == (t(58), False, 5)


def test_a_page_exactly_full_at_the_end_costs_one_empty_page():
    visma, store, sender = FakeVisma(_records(20)), FakeStore(), Sender()
    (run,) = reconcile_tenant(_walk(visma, store, sender), "t1", [CUSTOMER], SETTINGS)
    assert (run.pages, run.enqueued) == (3, 20)


def test_a_second_pass_relists_the_overlap_but_enqueues_and_counts_nothing_again():
    records = _records(5, minute=57)  # 11:57, in the overlap of the next pass
    visma, store, sender = FakeVisma(records), FakeStore(), Sender()
    reconcile_tenant(_walk(visma, store, sender), "t1", [CUSTOMER], SETTINGS)
    assert len(sender.ids) == 5
    for i, m in enumerate(records.values()):  # the processor handled them
        store.seen_modified[f"/v1/customer/{i:04d}"] = m
    (run,) = reconcile_tenant(
        _walk(visma, store, sender, now="2025-06-01T12:15:00.000000Z"), "t1", [CUSTOMER], SETTINGS
    )
    assert (run.listed, run.enqueued, run.missed) == (5, 0, 0)
    assert visma.calls[-1]["lastModifiedDateTime"] == "2025-06-01T11:53:00.000"  # watermark 11:58 less 5 min


def test_a_crash_between_pages_repeats_at_most_that_page_with_the_same_ids():
    visma, store, sender = FakeVisma(_records(25)), FakeStore(fail_save_after=1), Sender()
    with pytest.raises(RuntimeError, match="crash"):
        reconcile_tenant(_walk(visma, store, sender), "t1", [CUSTOMER], SETTINGS)
    assert len(sender.ids) == 20  # page 2 was enqueued, its cursor not stored
    store.fail_save_after = None
    reconcile_tenant(_walk(visma, store, sender), "t1", [CUSTOMER], SETTINGS)
    assert [c["pageNumber"] for c in visma.calls] == ["1", "2", "2", "3"]
    assert len(sender.ids) == 35  # page 2 enqueued again...
    assert len(set(sender.ids)) == 25  # ...with the same ids, which the processor deduplicates


def test_a_budget_running_out_stops_the_tenant_and_the_next_run_resumes_where_it_stopped():
    visma, store, sender = FakeVisma(_records(25), budget=2), FakeStore(), Sender()
    runs = reconcile_tenant(_walk(visma, store, sender), "t1", [CUSTOMER, ENTITIES["supplier"]], SETTINGS)
    assert [(r.entity, r.stop, r.pages) for r in runs] == [("customer", "budget", 2)]
    assert runs[0].retry_after == 30.0
    cursor = store.cursors[("reconcile", "t1", "customer")]
    assert (cursor.page, cursor.watermark) == (3, None)  # not advanced past unread pages
    visma.budget = 10
    runs = reconcile_tenant(_walk(visma, store, sender), "t1", [CUSTOMER], SETTINGS)
    assert (runs[0].stop, runs[0].pages) == ("done", 1)
    assert len(set(sender.ids)) == 25


def test_a_failing_list_stops_only_that_entity():
    class Refusing(FakeVisma):
        def get(self, tenant_id, service, path, **kwargs):
            if service == "salesorders":
                raise PermanentVismaError("scope not approved", 403)
            return super().get(tenant_id, service, path, **kwargs)

    visma, store, sender = Refusing(_records(3)), FakeStore(), Sender()
    runs = reconcile_tenant(_walk(visma, store, sender), "t1", [ORDERS, CUSTOMER], SETTINGS)
    assert sorted((r.entity, r.stop) for r in runs) == [("customer", "done"), ("salesorder", "error")]


def test_entities_reconciled_longest_ago_go_first():
    store = FakeStore()
    store.cursors[("reconcile", "t1", "customer")] = Cursor(watermark=t(0), finished_at=t(40))
    store.cursors[("reconcile", "t1", "supplier")] = Cursor(watermark=t(0), finished_at=t(20))
    visma = FakeVisma({}, budget=0)
    runs = reconcile_tenant(_walk(visma, store, Sender()), "t1", [CUSTOMER, ENTITIES["supplier"]], SETTINGS)
    assert [r.entity for r in runs] == ["supplier"]
