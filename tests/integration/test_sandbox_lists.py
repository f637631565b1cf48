"""The sandbox's list endpoints: each service's filters and paging, and ``lastModifiedDateTime``."""

from __future__ import annotations

import itertools
import re

import pytest

from tests.sandbox_support import auth, token
from visma_webhooks.domain.ordering import normalise
from visma_webhooks.domain.services import JOURNAL_TRANSACTIONS, SALESORDERS
from visma_webhooks_local.sandbox import VismaSandbox
from visma_webhooks_local.sandbox.lists import MAX_PAGE_SIZE

VISMA_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")
# Five customers, each changed a minute after the one before.
CUSTOMERS = {
    f"/v1/customer/L{i}": {"number": f"L{i}", "lastModifiedDateTime": f"2030-01-0{i}T10:00:00.000"}
    for i in range(1, 6)
}


@pytest.fixture
def sb():
    with VismaSandbox(fixtures=CUSTOMERS, service_fixtures={}) as running:
        yield running


@pytest.fixture
def headers(sb, http):
    return auth(token(sb, http))


def numbers(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item["number"] for item in answer.json()]


# -- Financials --------------------------------------------------------------------------


def test_a_financials_list_is_every_stored_resource_of_the_entity_oldest_change_first(sb, http, headers):
    sb.set_resource("/v1/supplier/S1", {"number": "S1"})
    sb.set_resource("/v1/customer/L0", {"number": "L0", "lastModifiedDateTime": "2030-01-03T10:00:00.000"})
    http.get(sb.url + "/v1/customer/SYNTH", headers=headers, timeout=5)  # synthesised: not stored
    answer = http.get(sb.url + "/v1/customer", headers=headers, timeout=5)
    assert numbers(answer) == ["L1", "L2", "L0", "L3", "L4", "L5"]  # a tie is ordered by path
    assert answer.json()[0]["metadata"] == {"totalCount": 6, "maxPageSize": MAX_PAGE_SIZE}
    assert numbers(http.get(sb.url + "/v1/Customer", headers=headers, timeout=5))[0] == "L1"  # casing varies
    assert numbers(http.get(sb.url + "/v1/supplier", headers=headers, timeout=5)) == ["S1"]
    assert http.get(sb.url + "/v2/customer", headers=headers, timeout=5).json() == []


def test_deleted_resources_are_not_listed(sb, http, headers):
    assert http.delete(sb.url + "/v1/customer/L2", headers=headers, timeout=5).status_code == 204
    sb.delete_resource("/v1/customer/L4")
    assert numbers(http.get(sb.url + "/v1/customer", headers=headers, timeout=5)) == ["L1", "L3", "L5"]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [(">", ["L4", "L5"]), (">=", ["L3", "L4", "L5"]), ("<", ["L1", "L2"]), ("<=", ["L1", "L2", "L3"])],
)
@pytest.mark.parametrize(
    "when",
    ["2030-01-03T10:00:00.000", "2030-01-03 10:00:00", "2030-01-03T10:00:00", "2030-01-03T11:00:00+01:00"],
)
def test_the_last_modified_filter(sb, http, headers, condition, expected, when):
    params = {"lastModifiedDateTime": when, "lastModifiedDateTimeCondition": condition}
    assert numbers(http.get(sb.url + "/v1/customer", params=params, headers=headers, timeout=5)) == expected


def test_a_date_alone_is_its_midnight(sb, http, headers):
    params = {"lastModifiedDateTime": "2030-01-04", "lastModifiedDateTimeCondition": ">"}
    assert numbers(http.get(sb.url + "/v1/customer", params=params, headers=headers, timeout=5)) == [
        "L4",
        "L5",
    ]


def test_pages_are_numbered_from_one(sb, http, headers):
    def page(number: int, size: int) -> list[str]:
        params = {"pageNumber": number, "pageSize": size}
        return numbers(http.get(sb.url + "/v1/customer", params=params, headers=headers, timeout=5))

    assert [page(1, 2), page(2, 2), page(3, 2), page(4, 2)] == [["L1", "L2"], ["L3", "L4"], ["L5"], []]
    assert page(1, MAX_PAGE_SIZE + 1) == ["L1", "L2", "L3", "L4", "L5"]  # limited to the max page size


@pytest.mark.parametrize(
    "params",
    [
        {"lastModifiedDateTime": "2030-01-01"},
        {"lastModifiedDateTimeCondition": ">"},
        {"lastModifiedDateTime": "2030-01-01", "lastModifiedDateTimeCondition": "=="},
        {"lastModifiedDateTime": "yesterday", "lastModifiedDateTimeCondition": ">"},
        {"pageNumber": "0"},
        {"pageSize": "many"},
    ],
)
def test_a_bad_filter_or_page_is_400(sb, http, headers, params):
    answer = http.get(sb.url + "/v1/customer", params=params, headers=headers, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["message"]


def test_paging_with_a_watermark_sees_every_change_while_resources_change(sb, http, headers):
    """Each page asks for what changed after the last item seen; a resource changed meanwhile comes again."""
    seen: list[tuple[str, str]] = []
    watermark = "2000-01-01T00:00:00.000"
    for step in range(20):
        params = {"lastModifiedDateTime": watermark, "lastModifiedDateTimeCondition": ">", "pageSize": 2}
        page = http.get(sb.url + "/v1/customer", params=params, headers=headers, timeout=5).json()
        if not page:
            break
        seen += [(item["number"], item["lastModifiedDateTime"]) for item in page]
        watermark = page[-1]["lastModifiedDateTime"]
        if step == 0:  # an ERP user changes one already seen and one not yet seen
            for path in ("/v1/customer/L1", "/v1/customer/L4"):
                http.put(sb.url + path, json={"name": {"value": "changed"}}, headers=headers, timeout=5)
    latest = {
        item["number"]: item["lastModifiedDateTime"]
        for item in sb.documents.by_service["financials"].values()
    }
    assert {number: modified for number, modified in seen} == latest
    assert [n for n, _ in seen] == ["L1", "L2", "L3", "L5", "L1", "L4"]


# -- lastModifiedDateTime ----------------------------------------------------------------


def test_every_resource_carries_last_modified_and_each_change_advances_it(sb, http, headers):
    sb.set_resource("/v1/customer/NEW", {"number": "NEW"})
    created = sb.resource("/v1/customer/NEW")["lastModifiedDateTime"]
    assert VISMA_TIME.match(created)
    stamps = [created]
    for i in range(10):
        http.put(sb.url + "/v1/customer/NEW", json={"name": str(i)}, headers=headers, timeout=5)
        stamps.append(sb.resource("/v1/customer/NEW")["lastModifiedDateTime"])
    assert all(VISMA_TIME.match(s) for s in stamps)
    assert all(normalise(a) < normalise(b) for a, b in itertools.pairwise(stamps))


def test_a_change_is_later_than_the_resources_own_time_even_in_the_future(sb, http, headers):
    sb.fire("/v1/customer/L5", tenant="t", changes={"name": "x"})  # a control-API change
    assert sb.resource("/v1/customer/L5")["lastModifiedDateTime"] == "2030-01-05T10:00:00.001"


# -- SalesOrders V3 and Journal Transactions ---------------------------------------------


def orders(sb: VismaSandbox) -> None:
    for number, (kind, customer, status, day) in {
        "1": ("SO", "C1", "Open", 1),
        "2": ("SO", "C2", "Completed", 2),
        "3": ("IN", "C1", "Open", 3),
    }.items():
        sb.set_resource(
            f"/api/v3/SalesOrders/{kind}/{number}",
            {
                "orderType": kind,
                "orderNo": number,
                "customer": {"id": customer},
                "status": status,
                "lastModifiedDateTime": f"2030-02-0{day}T08:00:00.000",
            },
            SALESORDERS,
        )


def order_numbers(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item["orderNo"] for item in answer.json()["value"]]


def test_salesorders_lists_are_paged_results_with_pages_indexed_from_zero(sb, http, headers):
    orders(sb)
    url = sb.salesorders_url + "/api/v3/SalesOrders"
    answer = http.get(url, headers=headers, timeout=5)
    assert answer.json()["totalCount"] == 3
    assert order_numbers(answer) == ["1", "2", "3"]
    pages = [
        order_numbers(http.get(url, params={"pageIndex": i, "pageSize": 2}, headers=headers, timeout=5))
        for i in range(3)
    ]
    assert pages == [["1", "2"], ["3"], []]
    assert http.get(url, params={"pageIndex": -1}, headers=headers, timeout=5).status_code == 400


def test_salesorders_filters(sb, http, headers):
    orders(sb)
    url = sb.salesorders_url + "/api/v3/SalesOrders"

    def listed(path: str = "", **params: str) -> list[str]:
        return order_numbers(http.get(url + path, params=params, headers=headers, timeout=5))

    assert listed(modifiedSince="2030-02-02T08:00:00.000") == ["2", "3"]  # at or after
    assert listed(modifiedSince="2030-02-02T09:00:00+01:00") == ["2", "3"]
    assert listed("/SO") == ["1", "2"]
    assert listed(customerId="C1") == ["1", "3"]
    assert listed(status="open") == ["1", "3"]
    raw = http.get(
        url + "?modifiedSince=2030-02-02T09:00:00+01:00", headers=headers, timeout=5
    )  # '+' unescaped
    assert order_numbers(raw) == ["2", "3"]


def test_journal_transactions_list_as_financials_does(sb, http, headers):
    for n, day in (("J1", 2), ("J2", 1)):
        path = f"/api/v1/JournalTransactions/{n}"
        sb.set_resource(
            path, {"batchNumber": n, "lastModifiedDateTime": f"2030-03-0{day}"}, JOURNAL_TRANSACTIONS
        )
    url = sb.journaltx_url + "/api/v1/JournalTransactions"
    answer = http.get(url, params={"pageNumber": 1, "pageSize": 1}, headers=headers, timeout=5)
    assert [(i["batchNumber"], i["metadata"]["totalCount"]) for i in answer.json()] == [("J2", 2)]


# -- the budget --------------------------------------------------------------------------


def test_each_list_call_uses_one_call_of_the_budget(http):
    with VismaSandbox(rate_limit=2) as sb:
        headers = auth(token(sb, http))
        assert http.get(sb.url + "/v1/customer", headers=headers, timeout=5).status_code == 200
        assert (
            http.get(sb.salesorders_url + "/api/v3/SalesOrders", headers=headers, timeout=5).status_code
            == 200
        )
        refused = http.get(sb.url + "/v1/customer", headers=headers, timeout=5)
        assert refused.status_code == 429
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        [window] = sb.budget()["windows"]
        assert (window["served"], window["refused"]) == (2, 1)
