"""Parsing deliveries into notifications: samples, formats, invalid items, unusable bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.conftest import load_event
from visma_webhooks.domain.parsing import (
    FINANCIAL_PUBLISHER,
    MAX_DEPTH,
    MAX_ITEMS,
    SALESORDER_PUBLISHER,
    ItemError,
    PayloadError,
    parse_delivery,
    ticks_to_datetime,
)
from visma_webhooks.domain.queueing import QUARANTINE_KEY, parse_quarantined, quarantine_message
from visma_webhooks.domain.resources import ResourceRules
from visma_webhooks.domain.services import FINANCIALS, JOURNAL_TRANSACTIONS, SALESORDERS

RULES = ResourceRules()
SEED_TICKS = 636875998723700000


def parse(payload, headers=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_delivery(body, headers or {}, RULES)


def legacy(**fields):
    """A valid legacy item; a field set to ``...`` is left out."""
    item = {
        "notificationId": "1455fe2a-4240-4a32-b7a5-201430e9a842",
        "contextId": "1262489",
        "event": "salesorder_changed",
        "resourceUri": "https://integration.visma.net/API/controller/api/v1/salesorder/1286",
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not ...}


# --- the samples in events/ ------------------------------------------------------------------------


def test_seed_legacy_example():
    [notification] = parse(load_event("legacy-single.json")).notifications

    assert notification.notification_id == "1455fe2a-4240-4a32-b7a5-201430e9a842"
    assert notification.tenant_id == "1262489"
    assert notification.event == "salesorder_changed"
    # a legacy Financials sales order is fetched from SalesOrders V3 (type SO: Financials' default)
    assert (notification.service, notification.resource_path) == (SALESORDERS, "/api/v3/SalesOrders/SO/1286")
    assert notification.action == "Freight"
    assert notification.source_format == "legacy"
    assert (notification.publisher, notification.api_client_id) == (None, None)
    assert not notification.deleted
    assert not notification.derived_id
    assert notification.occurred_at == datetime(2019, 3, 7, 23, 57, 52, 370000, tzinfo=UTC)
    assert notification.raw == load_event("legacy-single.json")[0]


def test_grouped_legacy_array():
    payload = load_event("legacy-grouped.json")
    delivery = parse(payload)

    assert delivery.rejections == []
    assert [(n.service, n.resource_path) for n in delivery.notifications] == [
        (FINANCIALS, "/v1/customer/10001"),
        (FINANCIALS, "/v1/supplier/20002"),
        (FINANCIALS, "/v1/inventory/BOLT-M8"),
        (SALESORDERS, "/api/v3/SalesOrders/SO/1287"),
        (FINANCIALS, "/v1/customerinvoice/INV-000452"),
    ]
    assert [n.notification_id for n in delivery.notifications] == [i["notificationId"] for i in payload]
    assert delivery.notifications[3].action == "PrepareInvoice"
    assert delivery.notifications[1].raw["status"] == "Active"
    assert {n.source_format for n in delivery.notifications} == {"legacy"}


def test_dispatcher_delivery_with_headers():
    sample = load_event("dispatcher-delivery.json")
    delivery = parse(sample["body"], sample["headers"])
    [notification] = delivery.notifications

    assert notification.source_format == "dispatcher"
    assert notification.notification_id == sample["headers"]["x-vwd-notification-id"]
    assert notification.tenant_id == sample["headers"]["x-vwd-tenant-id"]
    assert notification.event == "customer_changed"
    assert (notification.service, notification.resource_path) == (FINANCIALS, "/v1/customer/10002")
    assert notification.publisher == FINANCIAL_PUBLISHER
    assert not notification.derived_id
    # no timestamp in the body: the notification timestamp header (epoch ms) is used
    assert notification.occurred_at == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
    assert notification.raw == sample["body"]
    assert delivery.metadata["x-vwd-subscription-id"] == sample["headers"]["x-vwd-subscription-id"]


# --- timestamps ------------------------------------------------------------------------------------


def test_seed_ticks_are_utc():
    # Independently: 636875998723700000 ticks = 63687599872 s + 0.37 s after 0001-01-01 00:00 UTC,
    # i.e. 737124 whole days (to 2019-03-07) and 86272 s (23:57:52).
    assert divmod(SEED_TICKS // 10**7, 86400) == (737124, 86272)
    assert datetime(1, 1, 1).toordinal() + 737124 == datetime(2019, 3, 7).toordinal()
    assert ticks_to_datetime(SEED_TICKS) == datetime(2019, 3, 7, 23, 57, 52, 370000, tzinfo=UTC)
    assert ticks_to_datetime(621355968000000000) == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SEED_TICKS, datetime(2019, 3, 7, 23, 57, 52, 370000, tzinfo=UTC)),
        (str(SEED_TICKS), datetime(2019, 3, 7, 23, 57, 52, 370000, tzinfo=UTC)),
        (1764000000000, datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
        (1764000000, datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
        ("2025-11-24T16:00:00Z", datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
        ("2025-11-24T18:00:00+02:00", datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
        ("2025-11-24T16:00:00", datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
        ("yesterday", None),
        ("²", None),
        ("9" * 5000, None),
        ("0001-01-01T00:00:00+01:00", None),
        (10**400, None),
        (-5, None),
        (True, None),
        ([1], None),
    ],
)
def test_timestamps(value, expected):
    [notification] = parse([legacy(timeStamp=value)]).notifications

    assert notification.occurred_at == expected
    if expected is not None:
        assert notification.occurred_at.utcoffset().total_seconds() == 0


# --- key spellings and header fallbacks ------------------------------------------------------------


def test_pascal_case_keys_read_like_camel_case():
    camel = legacy(action="Freight", timeStamp=SEED_TICKS)
    pascal = {key[0].upper() + key[1:]: value for key, value in camel.items()}
    [from_camel] = parse([camel]).notifications
    [from_pascal] = parse([pascal]).notifications

    assert "NotificationId" in pascal
    assert from_pascal.model_dump(exclude={"raw"}) == from_camel.model_dump(exclude={"raw"})
    assert from_pascal.raw == pascal


def test_snake_and_upper_case_keys():
    item = {
        "NOTIFICATION_ID": "n-1",
        "tenant_id": "42",
        "Event": "AR Invoice Status Changed",
        "relative_resource_uri": "api/v1/customerinvoice/INV-1",
    }
    [notification] = parse([item]).notifications

    assert (notification.notification_id, notification.tenant_id) == ("n-1", "42")
    assert notification.event == "ar_invoice_status_changed"
    assert notification.resource_path == "/v1/customerinvoice/INV-1"


def test_tenant_and_id_come_from_headers_when_the_body_lacks_them():
    headers = {"X-Vwd-Tenant-Id": "tenant-7", "x-vwd-notification-id": "delivery-1"}
    [notification] = parse({"Event": "Shipment Deleted", "EntityId": "S-9"}, headers).notifications

    assert (notification.notification_id, notification.tenant_id) == ("delivery-1", "tenant-7")
    assert notification.event == "shipment_deleted"
    assert notification.resource_path is None
    assert notification.source_format == "dispatcher"


def test_shared_header_id_is_suffixed_with_the_item_index_and_marked_derived():
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "d-1"}
    items = [
        {"Event": "Customer Changed"},
        {"Event": "Customer Changed", "NotificationId": "own"},
        {"Event": "X"},
    ]
    delivery = parse(items, headers)

    assert [n.notification_id for n in delivery.notifications] == ["d-1:0", "d-1:1", "d-1:2"]
    assert all(n.derived_id for n in delivery.notifications)
    assert delivery.duplicates == 0


def test_the_header_id_and_tenant_win_over_the_body():
    headers = {"x-vwd-tenant-id": "header-tenant", "x-vwd-notification-id": "header-id"}
    [notification] = parse([legacy()], headers).notifications

    assert (notification.notification_id, notification.tenant_id) == ("header-id", "header-tenant")
    assert not notification.derived_id


def test_two_notifications_about_one_customer_stay_two():
    """A body ``id`` is the entity's, not the notification's: it must not merge two deliveries."""
    body = {
        "Event": "Customer Changed",
        "Id": "10002",
        "ResourceUri": "https://api.finance.visma.net/v1/customer/10002",
    }
    first, second = (
        parse(body, {"x-vwd-tenant-id": "t", "x-vwd-notification-id": nid}).notifications[0]
        for nid in ("n-1", "n-2")
    )

    assert (first.notification_id, second.notification_id) == ("n-1", "n-2")


@pytest.mark.parametrize("key", ["notificationId", "NotificationId", "id", "Id"])
def test_a_body_id_is_used_when_there_is_no_header_id(key):
    item = {key: "body-id", "contextId": "1", "event": "customer_changed"}
    [notification] = parse([item], {"x-vwd-subscription-id": "s"}).notifications

    assert notification.notification_id == "body-id"
    assert not notification.derived_id


def test_a_body_id_that_is_not_an_id_does_not_matter_when_the_header_names_one():
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "d-1"}
    [notification] = parse({"Event": "Customer Changed", "Id": {"Value": 7}}, headers).notifications

    assert notification.notification_id == "d-1"


def test_duplicates_within_a_delivery_are_per_tenant():
    delivery = parse([legacy(), legacy(contextId="other-tenant"), legacy(action="again")])

    assert [(n.tenant_id, n.notification_id) for n in delivery.notifications] == [
        ("1262489", legacy()["notificationId"]),
        ("other-tenant", legacy()["notificationId"]),
    ]
    assert delivery.duplicates == 1


def test_a_rejected_item_of_a_shared_header_id_names_its_derived_id():
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "d-1"}
    delivery = parse(
        [
            {"Event": "Customer Changed"},
            {"Event": "Customer Changed", "ResourceUri": "https://evil.example/v1/x/1"},
        ],
        headers,
    )

    [rejection] = delivery.rejections
    assert (rejection.index, rejection.count, rejection.notification_id, rejection.tenant_id) == (
        1,
        2,
        "d-1:1",
        "t",
    )


# --- both publishers, deletions, the writer ----------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "normalised", "publisher"),
    [
        ("SALESORDER_CREATED", "salesorder_created", SALESORDER_PUBLISHER),
        ("SALESORDER_UPDATED", "salesorder_updated", SALESORDER_PUBLISHER),
        ("SALESORDER_DELETED", "salesorder_deleted", SALESORDER_PUBLISHER),
        ("SALESORDER_UI_CUSTOMACTION", "salesorder_ui_customaction", SALESORDER_PUBLISHER),
        ("Customer Changed", "customer_changed", FINANCIAL_PUBLISHER),
        ("AR Invoice Status Changed", "ar_invoice_status_changed", FINANCIAL_PUBLISHER),
        ("Shipment Deleted", "shipment_deleted", FINANCIAL_PUBLISHER),
        ("Account Deleted", "account_deleted", FINANCIAL_PUBLISHER),
        ("Inventory Item Action Triggered", "inventory_item_action_triggered", FINANCIAL_PUBLISHER),
        ("journaltransaction_changed", "journaltransaction_changed", None),
        ("salesorder_changed", "salesorder_changed", None),
    ],
)
def test_both_publishers_events_normalise_into_one_vocabulary(event, normalised, publisher):
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "n"}
    [notification] = parse({"Event": event}, headers).notifications

    assert notification.event == normalised
    assert notification.publisher == publisher
    assert notification.deleted == normalised.endswith("_deleted")


def test_legacy_items_have_no_inferred_publisher():
    [notification] = parse([legacy(event="Customer Changed")]).notifications

    assert notification.publisher is None


@pytest.mark.parametrize("key", ["publisher", "Publisher", "PublisherName", "source", "EventSource"])
def test_a_publisher_named_in_the_body_wins(key):
    [notification] = parse([legacy(**{key: "visma.net.erp.journaltransactionservice"})]).notifications

    assert notification.publisher == "visma.net.erp.journaltransactionservice"


@pytest.mark.parametrize("value", [{"name": "x"}, ["x"], True, "p" * 201])
def test_a_publisher_that_is_not_text_is_ignored_not_refused(value):
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "n"}
    [notification] = parse({"Event": "SALESORDER_UPDATED", "Publisher": value}, headers).notifications

    assert notification.publisher == SALESORDER_PUBLISHER
    assert notification.raw["Publisher"] == value


@pytest.mark.parametrize(
    "event", ["account_deleted", "shipment_deleted", "salesorder_deleted", "Project Deleted"]
)
def test_deletions(event):
    [notification] = parse([legacy(event=event)]).notifications

    assert notification.deleted


@pytest.mark.parametrize("event", ["customer_changed", "deleted_customer_restored", "salesorder_undeleted_x"])
def test_not_deletions(event):
    [notification] = parse([legacy(event=event)]).notifications

    assert not notification.deleted


@pytest.mark.parametrize("key", ["ApiClientId", "apiClientId", "ApiClientID", "api_client_id", "APICLIENTID"])
def test_the_writers_client_id_in_any_casing(key):
    [notification] = parse(
        [legacy(**{key: "shop-client"}, TenantId="1262489", IsScheduler=False)]
    ).notifications

    assert notification.api_client_id == "shop-client"
    assert notification.raw["IsScheduler"] is False


@pytest.mark.parametrize(
    "header", ["x-vwd-api-client-id", "X-Vwd-ApiClientId", "x-vwd-apiclientid", "ApiClientId"]
)
def test_the_writers_client_id_from_a_header(header):
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "n", header: " shop-client "}
    delivery = parse({"Event": "Customer Changed"}, headers)

    assert delivery.notifications[0].api_client_id == "shop-client"
    assert delivery.metadata["x-vwd-api-client-id"] == "shop-client"


def test_the_bodys_client_id_wins_over_a_header():
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "n", "x-vwd-api-client-id": "header-client"}
    [notification] = parse({"Event": "Customer Changed", "ApiClientId": "body-client"}, headers).notifications

    assert notification.api_client_id == "body-client"


@pytest.mark.parametrize("value", [{"id": "x"}, ["x"], 1.5])
def test_a_client_id_that_is_not_text_is_ignored_not_refused(value):
    [notification] = parse([legacy(ApiClientId=value)]).notifications

    assert notification.api_client_id is None
    assert notification.raw["ApiClientId"] == value


@pytest.mark.parametrize(
    ("uri", "service", "path"),
    [
        (
            "https://salesorder.visma.net/api/v3/SalesOrders/SO/1286",
            SALESORDERS,
            "/api/v3/SalesOrders/SO/1286",
        ),
        (
            "https://journaltx.visma.net/api/v1/journaltransaction/JT1",
            JOURNAL_TRANSACTIONS,
            "/api/v1/journaltransaction/JT1",
        ),
        ("https://api.finance.visma.net/v2/journaltransaction/JT1", FINANCIALS, "/v2/journaltransaction/JT1"),
    ],
)
def test_each_service_is_named_with_its_path(uri, service, path):
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "n"}
    [notification] = parse([{"event": "SALESORDER_UPDATED", "resourceUri": uri}], headers).notifications

    assert (notification.service, notification.resource_path) == (service, path)


def test_the_legacy_sales_order_rule_is_configurable():
    rules = ResourceRules.from_env({"LEGACY_SALESORDER_RULE": "financials"})
    [notification] = parse_delivery(
        json.dumps(load_event("legacy-single.json")).encode(), {}, rules
    ).notifications

    assert (notification.service, notification.resource_path) == (FINANCIALS, "/v1/salesorder/1286")


@pytest.mark.parametrize(
    "body",
    [
        {"eventType": "SALESORDER_UPDATED", "data": {"orderType": "SO", "orderNbr": "1286"}, "Version": 3},
        [{"EVENT": "Customer Changed", "Extra": [1, {"x": None}]}, {"event": "Customer Changed"}],
        {
            "eventName": "SALESORDER_UI_CUSTOMACTION",
            "action": "ShipNow",
            "ResourceURI": "https://salesorder.visma.net/api/v3/SalesOrders/SO/1",
        },
    ],
)
def test_dispatcher_bodies_of_any_shape_are_kept_whole(body):
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "n"}
    delivery = parse(body, headers)

    assert delivery.rejections == []
    assert [n.raw for n in delivery.notifications] == (body if isinstance(body, list) else [body])


def test_unknown_fields_are_kept_in_raw():
    item = legacy(ChangedFields=["Name"], nested={"a": [1, 2.5, None, {"b": "ø"}]}, status="Open", id2=7)
    [notification] = parse([item]).notifications

    assert notification.raw == item


def test_numeric_ids_become_strings():
    [notification] = parse([legacy(notificationId=12345, contextId=1262489)]).notifications

    assert (notification.notification_id, notification.tenant_id) == ("12345", "1262489")


def test_duplicates_are_counted_and_the_first_is_kept():
    delivery = parse([legacy(action="first"), legacy(action="second"), legacy(notificationId="other")])

    assert [n.action for n in delivery.notifications] == ["first", None]
    assert delivery.duplicates == 1


# --- invalid items -----------------------------------------------------------------------------------

HOST = "https://api.finance.visma.net"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"notificationId": ...}, "no notification id (x-vwd-notification-id or notificationId)"),
        ({"notificationId": ""}, "no notification id"),
        ({"contextId": ...}, "no tenant"),
        ({"contextId": None}, "no tenant"),
        ({"event": ...}, "no event"),
        ({"event": "!!!"}, "no letters or digits"),
        ({"notificationId": {"id": 1}}, "notification_id must be a string"),
        ({"notificationId": 1.5}, "notification_id must be a string"),
        ({"notificationId": True}, "notification_id must be a string"),
        ({"contextId": ["1262489"]}, "tenant_id must be a string"),
        ({"event": ["customer_changed"]}, "event must be a string"),
        ({"action": {"name": "Freight"}}, "action must be a string"),
        ({"notificationId": "a" * 201}, "notification_id is longer than 200"),
        ({"notificationId": "id with spaces"}, "notification id has characters"),
        ({"contextId": "12/34"}, "tenant id has characters"),
        ({"resourceUri": 1286}, "resourceUri must be a string"),
        ({"resourceUri": ..., "relativeResourceUri": ["api"]}, "relativeResourceUri must be a string"),
        ({"resourceUri": "http://api.finance.visma.net/v1/customer/1"}, "is not https"),
        ({"resourceUri": "ftp://api.finance.visma.net/v1/customer/1"}, "is not https"),
        ({"resourceUri": "https://evil.example/v1/customer/1"}, "not allow-listed for any service"),
        (
            {"resourceUri": "https://salesorder.visma.net.evil.example/api/v3/SalesOrders/SO/1"},
            "not allow-listed",
        ),
        (
            {"resourceUri": "https://salesorder.visma.net/v1/customer/1"},
            "matches no resource pattern of salesorders",
        ),
        (
            {"resourceUri": "https://journaltx.visma.net/v2/journaltransaction/1"},
            "matches no resource pattern",
        ),
        ({"resourceUri": f"{HOST}/v1/salesorder/SO/1/lines/2"}, "no SalesOrders V3 equivalent"),
        ({"resourceUri": "https://10.0.0.1/v1/customer/1"}, "not allow-listed"),
        ({"resourceUri": f"{HOST}/v1/customer/../../admin/1"}, "'..' segment"),
        ({"resourceUri": f"{HOST}/v1/customer/./1"}, "'.' or '..' segment"),
        ({"resourceUri": f"{HOST}/v1/customer/%2e%2e/1"}, "encoded separator"),
        ({"resourceUri": f"{HOST}/v1/customer/a%2Fb"}, "encoded separator"),
        ({"resourceUri": f"{HOST}/v1/customer/a%5cb"}, "encoded separator"),
        ({"resourceUri": f"{HOST}/v1/customer/a%00"}, "encoded separator"),
        ({"resourceUri": f"{HOST}/v1/customer/%252e%252e"}, "percent sign"),
        ({"resourceUri": f"{HOST}/v1/customer/1?expand=all"}, "query or fragment"),
        ({"resourceUri": f"{HOST}/v1/customer/1#top"}, "query or fragment"),
        ({"resourceUri": f"{HOST}/v3/customer/1"}, "matches no resource pattern of financials"),
        ({"resourceUri": "https://integration.visma.net/v1/customer/1"}, "matches no rewrite rule"),
        ({"resourceUri": f"{HOST}/v1/customer"}, "is not /v1/<entity>/<id>"),
        ({"resourceUri": f"{HOST}/v1/customer/" + "/".join("abcdefg")}, "is not /v1/<entity>/<id>"),
        ({"resourceUri": f"{HOST}/v1/1customer/1"}, "is not a plain name"),
        ({"resourceUri": f"{HOST}/v1/customer/1;drop"}, "outside the resource pattern"),
        ({"resourceUri": "https://user:pw@api.finance.visma.net/v1/customer/1"}, "credentials or a port"),
        ({"resourceUri": "https://api.finance.visma.net:8443/v1/customer/1"}, "credentials or a port"),
        ({"resourceUri": "https://api.finance.visma.net:http/v1/customer/1"}, "not a valid URL"),
        ({"resourceUri": "/v1/customer/1"}, "scheme '(none)' is not https"),
        ({"resourceUri": "//api.finance.visma.net/v1/customer/1"}, "scheme '(none)' is not https"),
        (
            {"resourceUri": ..., "relativeResourceUri": "https://evil.example/api/v1/customer/1"},
            "is absolute",
        ),
        ({"resourceUri": ..., "relativeResourceUri": "//evil.example/api/v1/customer/1"}, "is absolute"),
        ({"resourceUri": ..., "relativeResourceUri": "api/v2/customer/1"}, "is not under api/v1"),
        ({"resourceUri": ..., "relativeResourceUri": "api/v1/customer/1?x=1"}, "query or fragment"),
        ({"resourceUri": ..., "relativeResourceUri": "api/v1/../../etc/passwd"}, "'..' segment"),
    ],
)
def test_invalid_item_is_rejected_with_its_reason(fields, reason):
    item = legacy(**fields)
    delivery = parse([legacy(notificationId="fine"), item])

    assert [n.notification_id for n in delivery.notifications] == ["fine"]
    [rejection] = delivery.rejections
    assert rejection.index == 1
    assert rejection.raw == item
    assert any(reason in r for r in rejection.reasons), rejection.reasons


def test_every_reason_of_an_item_is_reported():
    [rejection] = parse([{"notificationId": "n", "resourceUri": "http://x/y"}]).rejections

    assert len(rejection.reasons) == 3
    assert rejection.summary() == {"index": 0, "notificationId": "n", "reasons": list(rejection.reasons)}


def test_rejection_names_its_id_only_when_it_is_well_formed():
    delivery = parse([legacy(event=...), legacy(notificationId="bad id\r\n", event=...)])

    assert [r.notification_id for r in delivery.rejections] == [legacy()["notificationId"], None]


def test_a_header_id_too_long_for_its_suffix_is_rejected():
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "d" * 199}
    delivery = parse([{"Event": "a"}, {"Event": "b"}], headers)

    assert delivery.notifications == []
    assert all("notification id has characters" in r.reasons[0] for r in delivery.rejections)


# --- unusable bodies ---------------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    """One item whose field ``x`` holds ``levels`` nested lists: the body is ``levels + 2`` deep."""
    return b'[{"notificationId":"n","contextId":"1","event":"e","x":' + b"[" * levels + b"]" * levels + b"}]"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xff\xfe[]", "not valid UTF-8"),
        (b'[{"event":"\xc0\xae"}]', "not valid UTF-8"),
        (b"", "body is empty"),
        (b" \r\n\t", "body is empty"),
        (b"{", "not valid JSON"),
        (b"<xml/>", "not valid JSON"),
        (b'[{"a":1}] trailing', "not valid JSON"),
        ("\ufeff[]".encode(), "not valid JSON"),
        (b'[{"a":NaN}]', "NaN is not valid JSON"),
        (b'[{"a":Infinity}]', "Infinity is not valid JSON"),
        (b'[{"a":-Infinity}]', "-Infinity is not valid JSON"),
        (b'[{"a":1e999}]', "out of range"),
        (b'[{"a":-1e400}]', "out of range"),
        (b'[{"a":1' + b"0" * 5000 + b"}]", "not valid JSON"),
        (b"42", "not int"),
        (b'"text"', "not str"),
        (b"null", "not NoneType"),
        (b"true", "not bool"),
        (b"[]", "empty array"),
        (b'[{}, 1, "x", null, []]', "item 1 must be a JSON object, not int"),
        (b"[[]]", "item 0 must be a JSON object, not list"),
        (b"[" + b",".join([b"{}"] * (MAX_ITEMS + 1)) + b"]", f"at most {MAX_ITEMS}"),
        (nested(MAX_DEPTH - 1), f"deeper than {MAX_DEPTH}"),
        (b"[" * 100_000 + b"]" * 100_000, f"deeper than {MAX_DEPTH}"),
        (b'[{"a":"\\ud800"}]', "unpaired UTF-16 surrogates"),
        (b'[{"\\udfff":"a"}]', "unpaired UTF-16 surrogates"),
    ],
)
def test_unusable_body_raises_payload_error(body, problem):
    with pytest.raises(PayloadError) as raised:
        parse(body)

    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_non_object_items_are_each_named():
    with pytest.raises(PayloadError) as raised:
        parse(b'[{}, 1, "x", null]')

    assert raised.value.problems == [
        "item 1 must be a JSON object, not int",
        "item 2 must be a JSON object, not str",
        "item 3 must be a JSON object, not NoneType",
    ]


def test_nesting_up_to_the_limit_is_accepted():
    assert len(parse(nested(MAX_DEPTH - 2)).notifications) == 1


def test_paired_surrogate_escapes_are_fine():
    [notification] = parse(
        b'[{"notificationId":"n","contextId":"1","event":"e","emoji":"\\ud83d\\ude00"}]'
    ).notifications

    assert notification.raw["emoji"] == "\U0001f600"


def test_max_items_is_accepted():
    items = [legacy(notificationId=f"n{i}") for i in range(MAX_ITEMS)]

    assert len(parse(items).notifications) == MAX_ITEMS


# --- quarantine: what a replay needs, and what is not a quarantine record ----------------------------

SHARED = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "d-1"}
ERP_ITEM = {"Event": "Customer Changed", "ResourceUri": "https://erp.example.com/v1/customer/1"}
FIXED = ResourceRules.from_env({"ALLOWED_RESOURCE_HOSTS": "erp.example.com"})


def quarantined_copies(items, headers):
    delivery = parse(items, headers)
    return [json.loads(quarantine_message(r, delivery.metadata).body) for r in delivery.rejections]


def test_a_quarantined_item_keeps_its_place_and_gets_its_derived_id_back():
    copies = quarantined_copies([ERP_ITEM, ERP_ITEM, ERP_ITEM], SHARED)

    assert [(c[QUARANTINE_KEY]["index"], c[QUARANTINE_KEY]["count"]) for c in copies] == [
        (0, 3),
        (1, 3),
        (2, 3),
    ]
    replayed = [parse_quarantined(c, FIXED) for c in copies]
    assert [(n.notification_id, n.derived_id) for n in replayed] == [
        ("d-1:0", True),
        ("d-1:1", True),
        ("d-1:2", True),
    ]
    assert [n.resource_path for n in replayed] == ["/v1/customer/1"] * 3


def test_a_quarantined_single_item_keeps_the_header_id():
    [copy] = quarantined_copies(ERP_ITEM, SHARED)

    notification = parse_quarantined(copy, FIXED)
    assert (notification.notification_id, notification.derived_id, notification.tenant_id) == (
        "d-1",
        False,
        "t",
    )


def test_the_quarantine_message_names_the_id_and_tenant():
    delivery = parse([ERP_ITEM, ERP_ITEM], SHARED)
    message = quarantine_message(delivery.rejections[1], delivery.metadata)

    assert message.attributes["notification_id"] == "d-1:1"
    assert message.attributes["tenant_id"] == "t"


def test_a_still_invalid_item_raises_item_error_with_its_ids():
    [copy, _] = quarantined_copies([ERP_ITEM, ERP_ITEM], SHARED)

    with pytest.raises(ItemError, match="not allow-listed") as raised:
        parse_quarantined(copy, RULES)
    assert (raised.value.notification_id, raised.value.tenant_id, raised.value.derived_id) == (
        "d-1:0",
        "t",
        True,
    )


def test_a_record_without_count_counts_index_plus_one_items():
    record = {"reasons": ["x"], "metadata": SHARED, "item": ERP_ITEM}

    assert parse_quarantined({QUARANTINE_KEY: record}, FIXED).notification_id == "d-1"
    assert parse_quarantined({QUARANTINE_KEY: {**record, "index": 2}}, FIXED).notification_id == "d-1:2"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"item": [ERP_ITEM]}, "item is not an object"),
        ({"item": None}, "item is not an object"),
        ({"item": ERP_ITEM, "metadata": ["x"]}, "metadata is not an object of strings"),
        ({"item": ERP_ITEM, "metadata": {"x-vwd-tenant-id": 7}}, "metadata is not an object of strings"),
        ({"item": ERP_ITEM, "index": 3, "count": 3}, "index 3 of 3 items is impossible"),
        ({"item": ERP_ITEM, "index": -1, "count": 3}, "impossible"),
        ({"item": ERP_ITEM, "index": "0", "count": 3}, "impossible"),
        ({"item": ERP_ITEM, "index": 0, "count": True}, "impossible"),
        ({"item": ERP_ITEM, "index": 0, "count": MAX_ITEMS + 1}, "impossible"),
    ],
)
def test_what_is_not_a_quarantine_record_raises_payload_error(record, problem):
    with pytest.raises(PayloadError, match=problem):
        parse_quarantined({QUARANTINE_KEY: record}, FIXED)


@pytest.mark.parametrize("body", [{}, {QUARANTINE_KEY: "item"}, {QUARANTINE_KEY: [ERP_ITEM]}])
def test_a_message_without_a_quarantine_object_raises_payload_error(body):
    with pytest.raises(PayloadError, match="the message has no 'quarantine' object"):
        parse_quarantined(body, FIXED)
