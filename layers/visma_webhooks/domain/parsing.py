"""Turning a webhook delivery (raw body + headers) into normalised notifications.

Two formats and two dispatcher publishers arrive at the same endpoint:

* legacy (Visma.net Integrations): a JSON array of ``{"notificationId", "contextId",
  "event", "resourceUri", "relativeResourceUri", "action", "timeStamp"}`` items,
  ``timeStamp`` in .NET ticks, since ERP 9.30 also ``ApiClientId``;
* dispatcher (Developer Portal subscriptions), from the publishers ``Visma Net Financial``
  (display names: ``Customer Changed``) and ``visma.net.erp.salesorderservice``
  (``SALESORDER_UPDATED``): ``x-vwd-*`` headers carry the tenant and the notification id;
  Visma does not publish the body, so it may be an object or an array, in any casing.

A delivery is ``dispatcher`` when it carries ``x-vwd-tenant-id`` or
``x-vwd-notification-id``, ``legacy`` otherwise. Body keys are compared lower-cased
without ``_`` and ``-`` (``NotificationId``, ``notification_id`` and ``NOTIFICATIONID``
are one key); the first non-empty value of these keys is read, and nothing else:

* id: ``notificationId``, ``id``: only when there is no ``x-vwd-notification-id``;
* tenant: ``contextId``, ``tenantId``, ``tenant``: only when there is no ``x-vwd-tenant-id``;
* event: ``event``, ``eventName``, ``eventType`` (normalised: ``Customer Changed`` →
  ``customer_changed``, ``SALESORDER_UI_CUSTOMACTION`` → ``salesorder_ui_customaction``);
  a ``*_deleted`` event sets ``deleted``;
* resource: ``resourceUri`` (also ``resourceUrl``, ``uri``), else ``relativeResourceUri``
  (``relativeUri``), mapped onto (service, path) by :mod:`visma_webhooks.domain.resources`;
* ``action``; time: ``timeStamp``, ``occurredAt``, ``eventTime``, ``notificationTimestamp``
  (ticks, epoch s/ms or ISO 8601), else the ``x-vwd-notification-timestamp`` or
  ``x-vwd-webhook-timestamp`` header;
* writer: ``ApiClientId`` (any casing), else the header ``x-vwd-api-client-id`` (also
  spelt ``x-vwd-apiclientid``, ``ApiClientId``: header names compared like body keys);
* publisher: ``publisher``, ``publisherName``, ``publisherId``, ``eventSource``,
  ``source``; else, for dispatcher deliveries, inferred from the event: ``SALESORDER_*`` →
  ``visma.net.erp.salesorderservice``, a display name with spaces → ``Visma Net
  Financial``; None for legacy items. A writer or publisher that is not short text is
  ignored, never a reason to refuse the item.

Ids. The dispatcher's ``x-vwd-notification-id`` is the id whenever present, whatever the
body says: a body ``id`` may be the entity's, and two notifications about one customer
must not merge. With one header id and several items, item ``i`` gets
``<header id>:<i>`` and ``derived_id``: Visma never issued that id, so no feedback is
posted for it (Visma would refuse it, and the ERP user could not see it). Duplicates
inside a delivery are per (tenant, id).

Every other field is kept in ``raw`` and never a reason to refuse an item. A body that is
not a JSON object/array of objects raises :class:`PayloadError` (400); an item that cannot
be a notification becomes a :class:`Rejection` with its reasons (kept, never dropped).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from visma_webhooks.domain.models import Notification, normalise_event
from visma_webhooks.domain.resources import Resource, ResourcePathError, ResourceRules

MAX_ITEMS = 1000
MAX_DEPTH = 32
MAX_TEXT = 200
NOTIFICATION_ID_HEADER = "x-vwd-notification-id"
TENANT_HEADER = "x-vwd-tenant-id"
API_CLIENT_HEADER = "x-vwd-api-client-id"
DISPATCHER_HEADERS = (
    TENANT_HEADER,
    NOTIFICATION_ID_HEADER,
    "x-vwd-event-id",
    "x-vwd-subscription-id",
    "x-vwd-group-id",
    "x-vwd-application-id",
    "x-vwd-notification-timestamp",
    "x-vwd-webhook-timestamp",
)
# Header names (compared like body keys) that name the writer's Visma Connect client.
_API_CLIENT_HEADERS = frozenset({"xvwdapiclientid", "apiclientid"})
SALESORDER_PUBLISHER = "visma.net.erp.salesorderservice"
FINANCIAL_PUBLISHER = "Visma Net Financial"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,199}$")
_TICKS_AT_EPOCH = 621_355_968_000_000_000  # .NET ticks (100 ns since 0001-01-01) at 1970-01-01

# field → accepted keys, compared lower-cased without "_" or "-"
_ALIASES = {
    "notification_id": ("notificationid", "id"),
    "tenant_id": ("contextid", "tenantid", "tenant"),
    "event": ("event", "eventname", "eventtype"),
    "resource_uri": ("resourceuri", "resourceurl", "uri"),
    "relative_uri": ("relativeresourceuri", "relativeuri"),
    "action": ("action",),
    "timestamp": ("timestamp", "occurredat", "eventtime", "notificationtimestamp"),
    "api_client_id": ("apiclientid",),
    "publisher": ("publisher", "publishername", "publisherid", "eventsource", "source"),
}


class PayloadError(ValueError):
    """The body as a whole is unusable: not JSON, or not the shape of a delivery."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ItemError(ValueError):
    """One item cannot become a notification; the id and tenant it would have had, when known."""

    def __init__(
        self,
        reasons: Iterable[str],
        notification_id: str | None = None,
        tenant_id: str | None = None,
        derived_id: bool = False,
    ):
        self.reasons = tuple(reasons)
        self.notification_id = notification_id
        self.tenant_id = tenant_id
        self.derived_id = derived_id
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class Rejection:
    """An item that failed validation, kept with its reasons and its place in the delivery."""

    index: int
    reasons: tuple[str, ...]
    raw: Any
    notification_id: str | None = None
    tenant_id: str | None = None
    count: int = 1  # items in the delivery: with ``index``, what a replay needs for a derived id

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "notificationId": self.notification_id,
            "reasons": list(self.reasons),
        }


@dataclass
class Delivery:
    """What one request carried: valid notifications (deduplicated) and rejections."""

    notifications: list[Notification] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    metadata: dict[str, str] = field(default_factory=dict)


def dispatcher_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``x-vwd-*`` headers (but the signature), lower-cased, and the writer's client id."""
    lowered = {k.lower(): v.strip() for k, v in headers.items() if isinstance(v, str)}
    metadata = {name: lowered[name] for name in DISPATCHER_HEADERS if lowered.get(name)}
    for name, value in lowered.items():
        if _key(name) in _API_CLIENT_HEADERS and value:
            metadata[API_CLIENT_HEADER] = value
    return metadata


def parse_delivery(body: bytes, headers: Mapping[str, str], rules: ResourceRules) -> Delivery:
    """Parse a whole delivery. Raises :class:`PayloadError` for a structurally bad body."""
    items = _items(load_json(body))
    metadata = dispatcher_metadata(headers)
    delivery = Delivery(metadata=metadata)
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        try:
            notification = parse_item(item, metadata, rules, index=index, count=len(items))
        except ItemError as exc:
            delivery.rejections.append(
                Rejection(index, exc.reasons, item, exc.notification_id, exc.tenant_id, len(items))
            )
            continue
        key = (notification.tenant_id, notification.notification_id)
        if key in seen:
            delivery.duplicates += 1
            continue
        seen.add(key)
        delivery.notifications.append(notification)
    return delivery


def _items(data: Any) -> list[dict[str, Any]]:
    """The items of a decoded body: an object is one item, an array holds them."""
    if isinstance(data, dict):
        items: list[Any] = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise PayloadError([f"body must be a JSON object or array, not {type(data).__name__}"])
    if not items:
        raise PayloadError(["body is an empty array: no notifications"])
    if len(items) > MAX_ITEMS:
        raise PayloadError([f"body holds {len(items)} items; at most {MAX_ITEMS} are accepted"])
    problems = [
        f"item {i} must be a JSON object, not {type(item).__name__}"
        for i, item in enumerate(items)
        if not isinstance(item, dict)
    ]
    if problems:
        raise PayloadError(problems)
    return items


def load_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body, refusing what could not travel safely downstream."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError([f"body is not valid UTF-8 (byte {exc.start})"]) from None
    if not text.strip():
        raise PayloadError(["body is empty"])
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise PayloadError([f"JSON is nested deeper than {MAX_DEPTH} levels"]) from None
    except ValueError as exc:
        raise PayloadError([f"body is not valid JSON: {exc}"]) from None
    if _depth(data) > MAX_DEPTH:
        raise PayloadError([f"JSON is nested deeper than {MAX_DEPTH} levels"])
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(["body contains unpaired UTF-16 surrogates"]) from None
    return data


def parse_item(
    item: Mapping[str, Any],
    metadata: Mapping[str, str],
    rules: ResourceRules,
    *,
    index: int = 0,
    count: int = 1,
) -> Notification:
    """One item (plus the delivery's ``x-vwd-*`` metadata) → :class:`Notification`.

    ``index`` and ``count`` place the item in its delivery: they make its id when several
    items share one header id (see the module docstring).
    """
    reasons: list[str] = []
    dispatcher = _is_dispatcher(metadata)
    notification_id, derived = _notification_id(item, metadata, index, count, reasons)
    tenant_id = metadata.get(TENANT_HEADER) or _text(item, "tenant_id", reasons)
    if tenant_id is None:
        reasons.append("no tenant (contextId, tenantId or x-vwd-tenant-id)")
    elif not _ID.match(tenant_id):
        reasons.append("tenant id has characters outside [A-Za-z0-9._:@-] or is too long")
    event = _text(item, "event", reasons)
    if event is None:
        reasons.append("no event")
    resource = _resource(item, rules, reasons)
    action = _text(item, "action", reasons)
    if reasons or event is None:  # (a missing event is one of the reasons)
        raise ItemError(reasons, clean_id(notification_id), clean_id(tenant_id), derived)
    fields = {
        "notification_id": notification_id,
        "tenant_id": tenant_id,
        "event": event,
        "service": resource.service if resource else None,
        "resource_path": resource.path if resource else None,
        "deleted": normalise_event(event).endswith("_deleted"),
        "api_client_id": _optional_text(item, "api_client_id") or metadata.get(API_CLIENT_HEADER),
        "publisher": _optional_text(item, "publisher") or (infer_publisher(event) if dispatcher else None),
        "action": action,
        "occurred_at": _timestamp(lookup(item, "timestamp"))
        or _timestamp(
            metadata.get("x-vwd-notification-timestamp") or metadata.get("x-vwd-webhook-timestamp")
        ),
        "source_format": "dispatcher" if dispatcher else "legacy",
        "derived_id": derived,
        "raw": dict(item),
    }
    try:
        return Notification.model_validate(fields)
    except ValidationError as exc:
        raise ItemError(
            (f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()),
            clean_id(notification_id),
            clean_id(tenant_id),
            derived,
        ) from None


def infer_publisher(event: str) -> str | None:
    """The dispatcher publisher whose vocabulary ``event`` (as sent, not normalised) belongs to."""
    name = event.strip()
    if name.upper().startswith("SALESORDER_") and name == name.upper():
        return SALESORDER_PUBLISHER
    if " " in name:
        return FINANCIAL_PUBLISHER
    return None


def _notification_id(
    item: Mapping[str, Any], metadata: Mapping[str, str], index: int, count: int, reasons: list[str]
) -> tuple[str | None, bool]:
    """The item's id and whether it is derived: the header's when present, else the body's."""
    header_id = metadata.get(NOTIFICATION_ID_HEADER)
    derived = bool(header_id) and count > 1
    notification_id = (
        (f"{header_id}:{index}" if derived else header_id)
        if header_id
        else _text(item, "notification_id", reasons)
    )
    if notification_id is None:
        reasons.append("no notification id (x-vwd-notification-id or notificationId)")
    elif not _ID.match(notification_id):
        reasons.append("notification id has characters outside [A-Za-z0-9._:@-] or is too long")
    return notification_id, derived


def _is_dispatcher(metadata: Mapping[str, str]) -> bool:
    return bool(metadata.get(TENANT_HEADER) or metadata.get(NOTIFICATION_ID_HEADER))


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def lookup(item: Mapping[str, Any], name: str) -> Any:
    """The first non-empty value of ``name``'s aliases (case-insensitive keys)."""
    aliases = _ALIASES[name]
    for key, value in item.items():
        if isinstance(key, str) and _key(key) in aliases and value is not None and value != "":
            return value
    return None


def _text(item: Mapping[str, Any], name: str, reasons: list[str]) -> str | None:
    value = lookup(item, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        reasons.append(f"{name} must be a string, not {type(value).__name__}")
        return None
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        reasons.append(f"{name} is longer than {MAX_TEXT} characters")
        return None
    return text or None


def _optional_text(item: Mapping[str, Any], name: str) -> str | None:
    """A descriptive field as text; anything else (an object, overlong text) counts as absent."""
    return _text(item, name, [])


def clean_id(value: Any) -> str | None:
    """``value`` as an id string if it is a well-formed id, else None."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        return text if _ID.match(text) else None
    return None


def _resource(item: Mapping[str, Any], rules: ResourceRules, reasons: list[str]) -> Resource | None:
    uri = lookup(item, "resource_uri")
    relative = lookup(item, "relative_uri")
    try:
        if uri is not None:
            if not isinstance(uri, str):
                reasons.append(f"resourceUri must be a string, not {type(uri).__name__}")
                return None
            return rules.resolve(uri)
        if relative is not None:
            if not isinstance(relative, str):
                reasons.append(f"relativeResourceUri must be a string, not {type(relative).__name__}")
                return None
            return rules.resolve_relative(relative)
    except ResourcePathError as exc:
        reasons.append(str(exc))
    return None


def ticks_to_datetime(ticks: int) -> datetime:
    """.NET ticks (100 ns since 0001-01-01 UTC) → aware UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=(ticks - _TICKS_AT_EPOCH) // 10)


def _timestamp(value: Any) -> datetime | None:
    """Ticks, epoch milliseconds/seconds, or ISO 8601; ``None`` when it is none of them."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            if len(text) > 20:  # beyond any tick count; int() of a long string is slow or refused
                return None
            value = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except (ValueError, OverflowError):
                return None
    if not isinstance(value, int | float) or not 0 < value < 10**20 or not math.isfinite(value):
        return None
    try:
        if value >= 10**17:
            return ticks_to_datetime(int(value))
        if value >= 10**11:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float; one beyond float range (``1e999``) would re-serialise as null."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest
