"""Parsing deliveries into notifications: samples, formats, invalid items, unusable bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.conftest import load_event
from visma_webhooks.domain.parsing import (
    MAX_DEPTH,
    MAX_ITEMS,
    PayloadError,
    parse_delivery,
    ticks_to_datetime,
)
from visma_webhooks.domain.resources import ResourceRules

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
    assert notification.resource_path == "/v1/salesorder/1286"
    assert notification.action == "Freight"
    assert notification.source_format == "legacy"
    assert notification.occurred_at == datetime(2019, 3, 7, 23, 57, 52, 370000, tzinfo=UTC)
    assert notification.raw == load_event("legacy-single.json")[0]


def test_grouped_legacy_array():
    payload = load_event("legacy-grouped.json")
    delivery = parse(payload)

    assert delivery.rejections == []
    assert [n.resource_path for n in delivery.notifications] == [
        "/v1/customer/10001",
        "/v1/supplier/20002",
        "/v1/inventory/BOLT-M8",
        "/v1/salesorder/SO/1287",
        "/v1/customerinvoice/INV-000452",
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
    assert notification.resource_path == "/v1/customer/10002"
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


def test_shared_header_id_is_suffixed_with_the_item_index():
    headers = {"x-vwd-tenant-id": "t", "x-vwd-notification-id": "d-1"}
    items = [
        {"Event": "Customer Changed"},
        {"Event": "Customer Changed", "NotificationId": "own"},
        {"Event": "X"},
    ]
    delivery = parse(items, headers)

    assert [n.notification_id for n in delivery.notifications] == ["d-1:0", "own", "d-1:2"]
    assert delivery.duplicates == 0


def test_body_values_win_over_headers():
    headers = {"x-vwd-tenant-id": "header-tenant", "x-vwd-notification-id": "header-id"}
    [notification] = parse([legacy()], headers).notifications

    assert (notification.notification_id, notification.tenant_id) == (legacy()["notificationId"], "1262489")


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
        ({"notificationId": ...}, "no notification id"),
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
        ({"resourceUri": "https://evil.example/v1/customer/1"}, "not allow-listed"),
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
        ({"resourceUri": f"{HOST}/v2/customer/1"}, "matches no rewrite rule"),
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
