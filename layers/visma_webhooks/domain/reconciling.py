"""Reconciliation: what Visma's list endpoints say changed, turned into synthetic notifications.

Webhooks alone cannot keep a downstream system matching the ERP: only flagged records
notify, documents notify only on status changes, a tenant that has not approved the
webhook scopes sends nothing, and a dispatcher that gives up is silent. Every resource
carries ``lastModifiedDateTime``, and the list endpoints filter on it, so this module
describes, free of any I/O:

* **which entities** can be listed (:data:`ENTITIES`): the service, the list path, the
  fields that make a listed item's resource path, the event its notification names, and
  how the service pages (Financials: ``lastModifiedDateTime`` with
  ``lastModifiedDateTimeCondition`` and ``pageNumber``/``pageSize``; SalesOrders V3:
  ``modifiedSince`` with ``pageIndex``/``pageSize``);
* **a pass** over one (tenant, service, entity) (:class:`Cursor`): it lists changes since
  the stored watermark less an overlap (for clock skew and late commits), takes only those
  up to a cutoff a settle time before now (a webhook still on its way is not "missed"),
  and when its last page is read the watermark becomes that cutoff;
* **the filter** (:func:`select`): a listed state is enqueued only if it is newer than the
  state handlers last received (the processor's per-resource watermark);
* **the synthetic notification** (:func:`synthetic`): its id is derived from (tenant,
  service, path, normalised ``lastModifiedDateTime``), so a re-run enqueues the same id and
  the processor's dedup absorbs it; ``derived_id`` because Visma issued no id (no feedback).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.ordering import modified_at, normalise
from visma_webhooks.domain.services import FINANCIALS, SALESORDERS

Paging = Literal["financials", "salesorders"]
Origin = Literal["reconciler", "backfill"]
ID_PREFIX = "reconciled:"
LIST_KEYS = ("records", "items", "data", "value", "results")  # where a paged answer keeps its items
DEFAULT_PAGE_SIZE = 500
NO_PASS = -1  # a cursor's page when no pass is under way (SalesOrders V3 pages from 0)


@dataclass(frozen=True)
class Entity:
    """One listable entity: where its list is and how a listed item names its resource."""

    name: str
    service: str
    list_path: str
    keys: tuple[str, ...]  # fields whose values, in order, follow list_path in the resource path
    event: str  # the normalised event of its notification (what Visma fires for a change)
    paging: Paging = "financials"

    @property
    def first_page(self) -> int:
        """Financials' ``pageNumber`` counts from 1, SalesOrders V3's ``pageIndex`` from 0."""
        return 0 if self.paging == "salesorders" else 1

    def params(self, since: str | None, page: int, page_size: int) -> dict[str, str]:
        """The list request's query: the since-filter (``>=``, UTC without offset) and the page."""
        query: dict[str, str] = {}
        if self.paging == "financials":
            if since:
                query["lastModifiedDateTime"] = visma_time(since)
                query["lastModifiedDateTimeCondition"] = ">="
            query |= {"pageNumber": str(page), "pageSize": str(page_size)}
        else:
            if since:
                query["modifiedSince"] = visma_time(since)
            query |= {"pageIndex": str(page), "pageSize": str(page_size)}
        return query

    def resource_path(self, item: Mapping[str, Any]) -> str | None:
        """The path of the resource a listed item is, or None if a key is missing or unsafe."""
        fields = {str(k).casefold(): v for k, v in item.items()}
        segments = []
        for key in self.keys:
            value = fields.get(key.casefold())
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not _safe_segment(value.strip()):
                return None
            segments.append(value.strip())
        return "/".join((self.list_path, *segments))


def _safe_segment(value: str) -> bool:
    return bool(value) and ".." not in value and not any(c in value for c in "/\\?#%@ \t\r\n")


ENTITIES: Mapping[str, Entity] = {
    e.name: e
    for e in (
        Entity("customer", FINANCIALS, "/v1/customer", ("number",), "customer_changed"),
        Entity("supplier", FINANCIALS, "/v1/supplier", ("number",), "supplier_changed"),
        Entity("inventory", FINANCIALS, "/v1/inventory", ("inventoryNumber",), "inventory_item_changed"),
        Entity("account", FINANCIALS, "/v1/account", ("accountCD",), "account_changed"),
        Entity("project", FINANCIALS, "/v1/project", ("projectID",), "project_changed"),
        Entity("employee", FINANCIALS, "/v1/employee", ("employeeNumber",), "employee_changed"),
        Entity(
            "customerinvoice", FINANCIALS, "/v1/customerinvoice", ("referenceNumber",), "ar_invoice_changed"
        ),
        Entity("shipment", FINANCIALS, "/v1/shipment", ("shipmentNumber",), "shipment_changed"),
        Entity(
            "salesorder",
            SALESORDERS,
            "/api/v3/SalesOrders",
            ("orderType", "orderNo"),
            "salesorder_updated",
            "salesorders",
        ),
    )
}
DEFAULT_ENTITIES = ("customer", "supplier", "inventory", "salesorder")


def entities(names: Sequence[str]) -> tuple[Entity, ...]:
    """The entities named (``customer``, ``salesorder``...); raises ValueError for an unknown one."""
    unknown = [n for n in names if n not in ENTITIES]
    if unknown:
        raise ValueError(f"unknown entities {unknown}: known are {sorted(ENTITIES)}")
    return tuple(ENTITIES[n] for n in dict.fromkeys(names))


def visma_time(normalised: str) -> str:
    """``2025-01-02T03:04:05.678901Z`` → ``2025-01-02T03:04:05.678`` (what the list filters take)."""
    return normalised[:23]


def shifted(normalised: str, seconds: float) -> str:
    """A normalised time moved by ``seconds`` (negative: earlier)."""
    when = datetime.strptime(normalised, "%Y-%m-%dT%H:%M:%S.%fZ") + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamp(when: datetime) -> str:
    """A timezone-aware time as normalised text."""
    text = normalise(when.isoformat())
    if text is None:  # pragma: no cover - isoformat is always readable
        raise ValueError(f"unreadable time {when!r}")
    return text


def listed_total(body: Any) -> int | None:
    """How many items the whole filtered list has, where Visma says: a paged answer's
    ``totalCount``, or the ``metadata.totalCount`` Financials puts in each item."""
    if isinstance(body, Mapping):
        total = body.get("totalCount")
    else:
        items = listed_items(body)
        metadata = items[0].get("metadata") if items else None
        total = metadata.get("totalCount") if isinstance(metadata, Mapping) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def listed_items(body: Any) -> list[Mapping[str, Any]]:
    """The items of a list answer: a JSON array, or an object holding one (``records``...)."""
    if isinstance(body, Mapping):
        body = next((body[k] for k in LIST_KEYS if isinstance(body.get(k), list)), [])
    return [item for item in body if isinstance(item, Mapping)] if isinstance(body, list) else []


# -- a pass -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """The stored progress of one (tenant, service, entity): its watermark and any pass under way.

    ``watermark``: every change up to it was handled or enqueued. A pass under way has
    ``page`` ≥ 0 (the next page to read), its filter ``since`` and its ``cutoff``; it
    counts ``pages``, ``listed`` and ``enqueued``. ``missed`` is the running total of
    changes found that no webhook had delivered.
    """

    watermark: str | None = None
    since: str | None = None
    cutoff: str | None = None
    page: int = NO_PASS
    pages: int = 0
    listed: int = 0
    enqueued: int = 0
    missed: int = 0
    last_missed: int = 0
    finished_at: str | None = None
    version: int = 0

    @property
    def in_pass(self) -> bool:
        return self.page != NO_PASS


def start_pass(
    cursor: Cursor, entity: Entity, now: str, overlap: float, settle: float, lookback: float
) -> Cursor:
    """A new reconciliation pass: since the watermark less ``overlap`` (else ``lookback`` ago),
    up to ``settle`` seconds before ``now``."""
    since = shifted(cursor.watermark, -overlap) if cursor.watermark else shifted(now, -lookback)
    return replace(cursor, since=since, cutoff=shifted(now, -settle), **_fresh(entity))


def start_backfill(cursor: Cursor, entity: Entity, since: str | None, now: str) -> Cursor:
    """A backfill: everything since ``since`` (None: from the beginning) up to ``now``.

    A backfill already under way with the same ``since`` is resumed instead, one page
    back: records deleted meanwhile may have moved items into the page already read.
    """
    if cursor.in_pass and cursor.since == since:
        return replace(cursor, page=max(entity.first_page, cursor.page - 1))
    return replace(cursor, since=since, cutoff=now, **_fresh(entity))


def _fresh(entity: Entity) -> dict[str, Any]:
    return {"page": entity.first_page, "pages": 0, "listed": 0, "enqueued": 0, "last_missed": 0}


@dataclass(frozen=True)
class Change:
    """A listed state that handlers have not received."""

    path: str
    modified: str  # normalised
    missed: bool  # newer than the previous watermark: no webhook had delivered it


def candidates(items: Sequence[Mapping[str, Any]], entity: Entity, cutoff: str | None) -> dict[str, str]:
    """path → normalised lastModifiedDateTime of the listed items up to ``cutoff`` (the newest per path)."""
    found: dict[str, str] = {}
    for item in items:
        path, modified = entity.resource_path(item), modified_at(item)
        if path is None or modified is None or (cutoff is not None and modified > cutoff):
            continue
        if modified > found.get(path, ""):
            found[path] = modified
    return found


def select(
    found: Mapping[str, str], seen: Mapping[str, str | None], missed_after: str | None
) -> list[Change]:
    """The states newer than what handlers last received (``seen``: path → their watermark).

    A change after ``missed_after`` (the previous pass's watermark) counts as missed: the
    previous pass had no chance to find it, so no webhook delivered it. One in the
    overlap may be a change found before and not processed yet; it is not counted twice.
    """
    changes = []
    for path, modified in found.items():
        last = seen.get(path)
        if last is None or modified > last:
            changes.append(Change(path, modified, missed_after is not None and modified > missed_after))
    return changes


def missed_after(cursor: Cursor) -> str | None:
    """Where missed changes start for the pass under way: the old watermark, else its start."""
    return cursor.watermark or cursor.since


def page_done(cursor: Cursor, listed: int, changes: Sequence[Change], count_missed: bool) -> Cursor:
    """The cursor after a page whose changes were enqueued and acknowledged."""
    missed = sum(c.missed for c in changes) if count_missed else 0
    return replace(
        cursor,
        page=cursor.page + 1,
        pages=cursor.pages + 1,
        listed=cursor.listed + listed,
        enqueued=cursor.enqueued + len(changes),
        missed=cursor.missed + missed,
        last_missed=cursor.last_missed + missed,
    )


def pass_done(cursor: Cursor, now: str) -> Cursor:
    """The pass read its last page: the watermark moves to its cutoff (never back)."""
    watermark = max(filter(None, (cursor.watermark, cursor.cutoff)), default=None)
    return replace(cursor, watermark=watermark, page=NO_PASS, finished_at=now)


def synthetic(tenant_id: str, entity: Entity, change: Change, origin: Origin) -> Notification:
    """The notification of one change, with an id that the same change always gets."""
    return Notification(
        notification_id=synthetic_id(tenant_id, entity.service, change.path, change.modified),
        tenant_id=tenant_id,
        event=entity.event,
        service=entity.service,
        resource_path=change.path,
        occurred_at=datetime.strptime(change.modified, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        source_format="reconciled",
        derived_id=True,
        raw={
            "origin": origin,
            "entity": entity.name,
            "resourcePath": change.path,
            "lastModifiedDateTime": change.modified,
        },
    )


def synthetic_id(tenant_id: str, service: str, path: str, modified: str) -> str:
    digest = hashlib.sha256("\0".join((tenant_id, service, path, modified)).encode()).hexdigest()
    return ID_PREFIX + digest[:40]
