"""The list endpoints: an entity's stored resources, filtered on ``lastModifiedDateTime`` and paged.

Each service filters and pages as Visma's own does, so that a client paging with a
watermark meets the same answers here as there:

* Financials, ``GET /v1/{entity}`` (``/v2/`` too): ``lastModifiedDateTime`` with
  ``lastModifiedDateTimeCondition`` (``>``, ``>=``, ``<``, ``<=``; one needs the other),
  ``pageNumber`` (1-based) and ``pageSize`` (at most :data:`MAX_PAGE_SIZE`, which each item's
  ``metadata`` names, with the ``totalCount`` of the filtered list). The answer is a JSON
  array.
* SalesOrders V3, ``GET /api/v3/SalesOrders`` (or ``.../SalesOrders/{orderType}``):
  ``modifiedSince`` (changed at or after it), ``customerId``, ``status``, ``pageIndex``
  (0-based) and ``pageSize`` (default 100); the answer is a paged result ``{"value": [...],
  "totalCount": n}``.
* Journal Transactions publishes no list contract: ``GET /api/v1/JournalTransactions``
  takes Financials' parameters and answers as Financials does.

Items are ordered by ``lastModifiedDateTime``, then path, so that paging is stable while
resources change: a changed resource moves to the end. Deleted resources, ids that are
never found (``missing...``) and synthesised documents (none is stored) are not listed.
Query parameter names are matched case-insensitively, as ASP.NET binds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from visma_webhooks.domain.ordering import modified_at, normalise
from visma_webhooks.domain.services import SALESORDERS
from visma_webhooks_local.sandbox.fixtures import Documents
from visma_webhooks_local.sandbox.responses import Response
from visma_webhooks_local.sandbox.services import SandboxService

MAX_PAGE_SIZE = 1000
SALESORDERS_PAGE_SIZE = 100
CONDITIONS: dict[str, Callable[[str, str], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_OFFSET_AS_SPACE = re.compile(r" (\d\d:?\d\d)$")  # a "+01:00" that arrived unescaped, as " 01:00"


class BadQuery(ValueError):
    """A parameter Visma would refuse: answered 400."""


def list_of(svc: SandboxService, path: str) -> re.Match[str] | None:
    """The list this path asks for, or None if it names no list of ``svc``."""
    return svc.collection.match(path)


def answer(documents: Documents, svc: SandboxService, listed: re.Match[str], query: str) -> Response:
    """The page the query asks for (documents read under the sandbox's lock by the caller)."""
    params = {k.casefold(): v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    items = sorted(
        (
            (modified_at(doc) or "", path, doc)
            for path, doc in documents.stored(svc.name)
            if member(svc, listed, path)
        ),
        key=lambda item: (item[0], item[1]),
    )
    try:
        if svc.name == SALESORDERS:
            return _salesorders(params, items)
        return _financials(params, items)
    except BadQuery as exc:
        return Response(400, {"message": str(exc)})


Item = tuple[str, str, dict[str, Any]]  # (normalised lastModifiedDateTime, path, document)


def member(svc: SandboxService, listed: re.Match[str], path: str) -> bool:
    """Whether the resource at ``path`` is in the list: each group the list names matches the path's."""
    found = svc.match(path)
    if found is None:
        return False
    return all(
        wanted is None or wanted.casefold() == (got or "").casefold()
        for wanted, got in zip(listed.groups(), found.groups(), strict=False)
    )


def _financials(params: dict[str, str], items: list[Item]) -> Response:
    since, condition = params.get("lastmodifieddatetime"), params.get("lastmodifieddatetimecondition")
    if (since is None) != (condition is None):
        raise BadQuery("lastModifiedDateTime and lastModifiedDateTimeCondition are given together")
    if since is not None and condition is not None:
        compare = CONDITIONS.get(condition.strip())
        if compare is None:
            raise BadQuery(f"lastModifiedDateTimeCondition must be one of {sorted(CONDITIONS)}")
        when = _time(since, "lastModifiedDateTime")
        items = [i for i in items if i[0] and compare(i[0], when)]
    number = _integer(params, "pageNumber", 1, minimum=1)
    size = min(_integer(params, "pageSize", MAX_PAGE_SIZE, minimum=1), MAX_PAGE_SIZE)
    page = items[(number - 1) * size : number * size]
    metadata = {"totalCount": len(items), "maxPageSize": MAX_PAGE_SIZE}
    return Response(200, [{**doc, "metadata": metadata} for _, _, doc in page])


def _salesorders(params: dict[str, str], items: list[Item]) -> Response:
    if params.get("modifiedsince"):
        when = _time(params["modifiedsince"], "modifiedSince")
        items = [i for i in items if i[0] and i[0] >= when]
    customer, status = params.get("customerid"), params.get("status")
    if customer:
        items = [i for i in items if _customer_of(i[2]) == customer]
    if status:
        items = [i for i in items if str(i[2].get("status", "")).casefold() == status.casefold()]
    index = _integer(params, "pageIndex", 0, minimum=0)
    size = min(_integer(params, "pageSize", SALESORDERS_PAGE_SIZE, minimum=1), MAX_PAGE_SIZE)
    page = items[index * size : (index + 1) * size]
    return Response(200, {"value": [doc for _, _, doc in page], "totalCount": len(items)})


def _customer_of(document: dict[str, Any]) -> str | None:
    customer = document.get("customer")
    value = customer.get("id") if isinstance(customer, dict) else customer
    return None if value is None else str(value)


def _time(value: str, name: str) -> str:
    """A filter's time as sortable UTC text; Visma's forms (``yyyy-MM-dd[ HH:mm:ss[.FFF]]``, ``T``, offsets)."""
    text = value.strip()
    when = normalise(text) or normalise(_OFFSET_AS_SPACE.sub(r"+\1", text))
    if when is None:
        raise BadQuery(f"{name} is not a date and time: {value!r}")
    return when


def _integer(params: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = params.get(name.casefold())
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a whole number") from None
    if value < minimum:
        raise BadQuery(f"{name} must be at least {minimum}")
    return value
