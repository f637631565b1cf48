"""Turning a webhook delivery (raw body + headers) into normalised notifications.

Two formats arrive at the same endpoint:

* legacy (Visma.net Integrations): a JSON array of ``{"notificationId", "contextId",
  "event", "resourceUri", "action", "timeStamp"}`` items, ``timeStamp`` in .NET ticks;
* dispatcher (Developer Portal subscriptions): an object or an array, camelCase or
  PascalCase keys, with ``x-vwd-*`` headers carrying the tenant and notification id.

A delivery is ``dispatcher`` when it carries ``x-vwd-tenant-id`` or
``x-vwd-notification-id``, ``legacy`` otherwise. Keys are matched case-insensitively
and unknown fields are kept in ``raw``. A body that is not a JSON object/array of
objects raises :class:`PayloadError` (400); an item that cannot be a notification
becomes a :class:`Rejection` with its reasons (kept, never dropped).
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

from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.resources import ResourcePathError, ResourceRules

MAX_ITEMS = 1000
MAX_DEPTH = 32
DISPATCHER_HEADERS = (
    "x-vwd-tenant-id",
    "x-vwd-notification-id",
    "x-vwd-event-id",
    "x-vwd-subscription-id",
    "x-vwd-notification-timestamp",
    "x-vwd-webhook-timestamp",
)
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
}


class PayloadError(ValueError):
    """The body as a whole is unusable: not JSON, or not the shape of a delivery."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ItemError(ValueError):
    """One item cannot become a notification."""

    def __init__(self, reasons: Iterable[str]):
        self.reasons = tuple(reasons)
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class Rejection:
    """An item that failed validation, kept with its reasons."""

    index: int
    reasons: tuple[str, ...]
    raw: Any
    notification_id: str | None = None

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
    """The ``x-vwd-*`` headers (but the signature), lower-cased."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return {name: lowered[name] for name in DISPATCHER_HEADERS if lowered.get(name)}


def parse_delivery(body: bytes, headers: Mapping[str, str], rules: ResourceRules) -> Delivery:
    """Parse a whole delivery. Raises :class:`PayloadError` for a structurally bad body."""
    data = load_json(body)
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

    metadata = dispatcher_metadata(headers)
    delivery = Delivery(metadata=metadata)
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            notification = parse_item(item, metadata, rules, index=index, count=len(items))
        except ItemError as exc:
            delivery.rejections.append(
                Rejection(index, exc.reasons, item, clean_id(lookup(item, "notification_id")))
            )
            continue
        if notification.notification_id in seen:
            delivery.duplicates += 1
            continue
        seen.add(notification.notification_id)
        delivery.notifications.append(notification)
    return delivery


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
    """One item (plus the delivery's ``x-vwd-*`` metadata) → :class:`Notification`."""
    reasons: list[str] = []
    source_format = "dispatcher" if _is_dispatcher(metadata) else "legacy"

    notification_id = _text(item, "notification_id", reasons)
    if notification_id is None and metadata.get("x-vwd-notification-id"):
        # One delivery id for several items: suffix the position so that each stays distinct.
        header_id = metadata["x-vwd-notification-id"]
        notification_id = header_id if count == 1 else f"{header_id}:{index}"
    if notification_id is None:
        reasons.append("no notification id (notificationId or x-vwd-notification-id)")
    elif not _ID.match(notification_id):
        reasons.append("notification id has characters outside [A-Za-z0-9._:@-] or is too long")

    tenant_id = _text(item, "tenant_id", reasons) or metadata.get("x-vwd-tenant-id")
    if tenant_id is None:
        reasons.append("no tenant (contextId, tenantId or x-vwd-tenant-id)")
    elif not _ID.match(tenant_id):
        reasons.append("tenant id has characters outside [A-Za-z0-9._:@-] or is too long")

    event = _text(item, "event", reasons)
    if event is None:
        reasons.append("no event")

    resource_path = _resource_path(item, rules, reasons)
    action = _text(item, "action", reasons)
    occurred_at = _timestamp(lookup(item, "timestamp")) or _timestamp(
        metadata.get("x-vwd-notification-timestamp") or metadata.get("x-vwd-webhook-timestamp")
    )
    if reasons:
        raise ItemError(reasons)
    try:
        return Notification.model_validate(
            {
                "notification_id": notification_id,
                "tenant_id": tenant_id,
                "event": event,
                "resource_path": resource_path,
                "action": action,
                "occurred_at": occurred_at,
                "source_format": source_format,
                "raw": dict(item),
            }
        )
    except ValidationError as exc:
        raise ItemError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors()) from None


def _is_dispatcher(metadata: Mapping[str, str]) -> bool:
    return bool(metadata.get("x-vwd-tenant-id") or metadata.get("x-vwd-notification-id"))


def lookup(item: Mapping[str, Any], name: str) -> Any:
    """The first non-empty value of ``name``'s aliases (case-insensitive keys)."""
    aliases = _ALIASES[name]
    for key, value in item.items():
        normalised = key.lower().replace("_", "").replace("-", "") if isinstance(key, str) else ""
        if normalised in aliases and value is not None and value != "":
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
    if len(text) > 200:
        reasons.append(f"{name} is longer than 200 characters")
        return None
    return text or None


def clean_id(value: Any) -> str | None:
    """``value`` as an id string if it is a well-formed id, else None."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        return text if _ID.match(text) else None
    return None


def _resource_path(item: Mapping[str, Any], rules: ResourceRules, reasons: list[str]) -> str | None:
    uri = lookup(item, "resource_uri")
    relative = lookup(item, "relative_uri")
    try:
        if uri is not None:
            if not isinstance(uri, str):
                reasons.append(f"resourceUri must be a string, not {type(uri).__name__}")
                return None
            return rules.resource_path(uri)
        if relative is not None:
            if not isinstance(relative, str):
                reasons.append(f"relativeResourceUri must be a string, not {type(relative).__name__}")
                return None
            return rules.relative_path(relative)
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
