"""Property-based: whatever arrives, parsing raises only PayloadError, and what it yields travels safely."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial.safety import (
    RESOURCE_PATHS,
    assert_safe_attributes,
    assert_safe_notification_body,
    strict_json,
)
from visma_webhooks.domain.parsing import DISPATCHER_HEADERS, ItemError, PayloadError, parse_delivery
from visma_webhooks.domain.queueing import (
    QUARANTINE_KEY,
    notification_message,
    parse_quarantined,
    quarantine_message,
)
from visma_webhooks.domain.resources import Resource, ResourcePathError, ResourceRules
from visma_webhooks.domain.services import FINANCIALS, SALESORDERS

RULES = ResourceRules()
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text, lone surrogates included (they reach Python strings through \\udxxx escapes).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)

# Values a notification field plausibly or hostilely holds.
hosts = st.sampled_from(
    [
        "api.finance.visma.net",
        "integration.visma.net",
        "salesorder.visma.net",
        "journaltx.visma.net",
        "API.FINANCE.VISMA.NET",
        "SalesOrder.Visma.Net",
        "salesorder.visma.net.evil.example",
        "journaltx.visma.net@evil.example",
        "169.254.169.254",
        "evil.example",
        "api.finance.visma.net@evil.example",
        "api.finance.visma.net:443",
        "[::1]",
        "",
    ]
)
prefixes = st.sampled_from(
    [
        "/v1/",
        "/API/controller/api/v1/",
        "/api/v1/",
        "/v2/",
        "/api/v3/",
        "/api/v3/SalesOrders/",
        "/api/v9/",
        "/",
        "",
    ]
)
segments = st.sampled_from(
    [
        "customer",
        "salesorder",
        "SO",
        "1286",
        "..",
        ".",
        "%2e%2e",
        "%252e",
        "%c0%ae",
        "a%2fb",
        "BOLT%20M8",
        "%e2%80%ae",
        "",
        "a\\b",
        "?x=1",
        "#f",
        "\u202e",
        "\x00",
    ]
) | st.text(max_size=6)
paths = st.lists(segments, max_size=5).map("/".join)
uris = st.builds(
    lambda scheme, host, prefix, path: f"{scheme}{host}{prefix}{path}",
    st.sampled_from(["https://", "http://", "HTTPS://", "file://", "//", ""]),
    hosts,
    prefixes,
    paths,
)
field_values = (
    st.sampled_from(["customer_changed", "Customer Changed", "1262489", "n-1", "Freight", "", " ", "!!"])
    | st.integers(min_value=-5, max_value=10**20)
    | uris
    | json_values
)
keys = (
    st.sampled_from(
        [
            "notificationId",
            "NotificationId",
            "id",
            "contextId",
            "ContextId",
            "tenantId",
            "event",
            "Event",
            "eventType",
            "resourceUri",
            "ResourceUri",
            "relativeResourceUri",
            "action",
            "timeStamp",
            "occurredAt",
            "EntityId",
        ]
    )
    | any_text
)
items = st.dictionaries(keys, field_values, max_size=8)

# Mostly well-formed notifications, each field sometimes spelt differently or replaced by anything.
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,30}", fullmatch=True)
good_uris = st.builds(
    lambda base, entity, key: f"{base}{entity}/{key}",
    st.sampled_from(
        [
            "https://api.finance.visma.net/v1/",
            "https://api.finance.visma.net/v2/",
            "https://integration.visma.net/API/controller/api/v1/",
            "https://salesorder.visma.net/api/v3/",
            "https://journaltx.visma.net/api/v1/",
            "api/v1/",
        ]
    ),
    st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,10}", fullmatch=True)
    | st.sampled_from(["salesorder", "SalesOrders"]),
    st.from_regex(r"[A-Za-z0-9._~-]{1,12}(%[0-9A-F]{2})?", fullmatch=True)
    | st.sampled_from(["..", "%2e%2e", "%252e%252e", "%2F", "%5c", "%c0%ae", "a%00", "%e2%80%ae"]),
)
timestamps = (
    st.integers(min_value=6 * 10**17, max_value=7 * 10**17)
    | st.integers(min_value=0, max_value=4 * 10**12)
    | st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
    | field_values
)


def sometimes(good, bad=field_values):
    """``good`` four times in five, else ``bad``."""
    return st.integers(0, 4).flatmap(lambda roll: good if roll else bad)


@st.composite
def notification_items(draw):
    item = {
        draw(st.sampled_from(["notificationId", "NotificationId", "id"])): draw(sometimes(ids)),
        draw(st.sampled_from(["contextId", "ContextId", "tenantId"])): draw(sometimes(ids)),
        draw(st.sampled_from(["event", "Event"])): draw(
            sometimes(st.sampled_from(["customer_changed", "Shipment Deleted"]) | any_text)
        ),
    }
    uri_key = draw(st.sampled_from(["resourceUri", "ResourceUri", "relativeResourceUri", None]))
    if uri_key:
        item[uri_key] = draw(sometimes(good_uris, uris))
    for key, values in (("action", any_text), ("timeStamp", timestamps)):
        if draw(st.booleans()):
            item[key] = draw(values)
    item.update(draw(st.dictionaries(any_text, json_values, max_size=3)))
    return item


payloads = items | st.lists(items | json_values, max_size=6) | json_values
headers = st.dictionaries(
    st.sampled_from([*DISPATCHER_HEADERS, "content-type", "X-Vwd-Tenant-Id", "x-vwd-api-client-id"]),
    st.sampled_from(["tenant-1", "delivery-1", "1764000000000", "", "a" * 250]) | any_text,
    max_size=4,
)


def encoded(payload) -> bytes:
    """``payload`` as JSON bytes, keeping lone surrogates as the escapes a sender would write."""
    return json.dumps(payload).encode("utf-8")


def parsed(body: bytes, header_values: dict[str, str]):
    """The delivery, or the PayloadError's problems: any other exception fails the test."""
    try:
        return parse_delivery(body, header_values, RULES)
    except PayloadError as exc:
        return exc.problems


def check(body: bytes, header_values: dict[str, str]) -> None:
    delivery = parsed(body, header_values)
    if isinstance(delivery, list):
        assert delivery
        assert all(isinstance(problem, str) for problem in delivery)
        return

    document = strict_json(body.decode("utf-8"))
    count = 1 if isinstance(document, dict) else len(document)
    assert len(delivery.notifications) + len(delivery.rejections) + delivery.duplicates == count
    keys = {(n.tenant_id, n.notification_id) for n in delivery.notifications}
    assert len(keys) == len(delivery.notifications)
    header_id = delivery.metadata.get("x-vwd-notification-id")
    for index, notification in enumerate(delivery.notifications):
        message = notification_message(index, notification)
        assert assert_safe_notification_body(message.body) == notification
        assert_safe_attributes(message.attributes)
        assert message.attributes["notification_id"] == notification.notification_id
        if header_id:  # the header's id, whatever the body says; derived when it is shared
            assert notification.derived_id == (count > 1)
            assert notification.notification_id.startswith(header_id)
    for rejection in delivery.rejections:
        message = quarantine_message(rejection, delivery.metadata)
        quarantined = strict_json(message.body)
        assert quarantined[QUARANTINE_KEY]["item"] == rejection.raw
        assert rejection.reasons
        assert_safe_attributes(message.attributes)
        # a replay under the same rules finds the item still invalid, under the id it had
        with pytest.raises(ItemError) as still:
            parse_quarantined(quarantined, RULES)
        assert still.value.notification_id == rejection.notification_id


@PROPERTY_SETTINGS
@given(payloads, headers)
def test_arbitrary_json_parses_or_raises_payload_error(payload, header_values):
    check(encoded(payload), header_values)


@PROPERTY_SETTINGS
@given(st.lists(notification_items(), min_size=1, max_size=6), headers)
def test_notification_shaped_items_round_trip_through_their_queue_message(payload, header_values):
    check(encoded(payload), header_values)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300), headers)
def test_arbitrary_bytes_parse_or_raise_payload_error(body, header_values):
    check(body, header_values)


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.sampled_from(
            [
                b"[",
                b"]",
                b"{",
                b"}",
                b'"a":',
                b",",
                b"1e999",
                b"NaN",
                b'"\\ud800"',
                b'"x"',
                b"null",
                b"-0",
                b"1" * 30,
                b"\xef\xbb\xbf",
                b"\xc0\xae",
                b" ",
            ]
        ),
        max_size=40,
    ).map(b"".join),
    headers,
)
def test_json_like_fragments_parse_or_raise_payload_error(body, header_values):
    check(body, header_values)


@PROPERTY_SETTINGS
@given(uris | good_uris)
def test_a_resolved_uri_names_an_allow_listed_host_and_a_safe_path_of_its_service(uri):
    outcome = resolved(uri)
    if isinstance(outcome, str):
        assert outcome
        return
    services = RULES.services_of((urlsplit(uri.strip()).hostname or "").lower())
    # its host's service, or SalesOrders V3 for a Financials host's legacy sales order
    assert outcome.service in services or (FINANCIALS in services and outcome.service == SALESORDERS)
    assert RESOURCE_PATHS[outcome.service].fullmatch(outcome.path), outcome
    assert "%2e" not in outcome.path.lower()
    assert "/../" not in outcome.path + "/"


def resolved(uri: str) -> Resource | str:
    """The resource, or the refusal's reason: any other exception fails the test."""
    try:
        return RULES.resolve(uri)
    except ResourcePathError as exc:
        return str(exc)
