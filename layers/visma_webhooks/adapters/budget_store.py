"""The shared budget of each (tenant, Visma client), in the ``IdempotencyTable`` (:mod:`visma_webhooks.domain.budgets`).

The item ``budget#<tenant>#<client_id>`` holds the window (``ends_at``, ``limit``,
``spent``, ``used_seen``, ``spent_at_seen``) and a ``version``. An instance writes it with a conditional put
on the version it last wrote or read (compare-and-swap); a put that loses the race gets
the current item back with the refusal and tries again, so every instance spends from one
count without a read before each write.

To keep DynamoDB off the path of every call, an instance takes a **chunk** of calls at a
time (up to ``MAX_CHUNK``, and at most a fiftieth of what the window allows) and spends
it locally; what it has not spent when the window ends is lost, at most a chunk per
instance and window. The headers of every answer are kept and written with the next
take, so the count follows what Visma saw (other integrations on the client included).

The first take of a tenant in each window also adds the tenant to the item
``tenants#seen`` (attribute ``tenants``, a string set), which the reconciler reads to
know the tenants to reconcile without scanning the table.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.domain.budgets import (
    BudgetSettings,
    BudgetWait,
    Priority,
    Window,
    current,
    grant,
    observe,
)
from visma_webhooks.domain.rate_limits import RateLimit

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

BUDGET_PREFIX = "budget#"
TENANTS_SEEN_KEY = {"id": {"S": "tenants#seen"}}
MAX_CHUNK = 10
MAX_RACES = 8
FAIL_FAST_SECONDS = 5.0
TTL_SECONDS = 7 * 24 * 3600


@dataclass
class _Local:
    """One tenant's budget as this instance knows it."""

    window: Window | None = None  # as last written or read
    chunk: int = 0  # calls taken from the shared count, not yet spent
    chunk_ends_at: float = 0.0
    seen: tuple[RateLimit, float] | None = None  # the newest headers not yet written
    failing: tuple[Exception, float] | None = None  # the table's last error, and until when


class SharedBudget:
    """:class:`~visma_webhooks.domain.budgets.Budget` shared by every instance through DynamoDB."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        client_id: str,
        settings: BudgetSettings,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.table_name = table_name
        self.client = client
        self.client_id = client_id
        self.settings = settings
        self._clock = clock
        self._tenants: dict[str, _Local] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.writes = 0  # DynamoDB requests made (for the benchmark)

    def take(self, tenant_id: str, units: int, priority: Priority = Priority.WEBHOOK) -> None:
        with self._tenant_lock(tenant_id):
            local = self._tenants.setdefault(tenant_id, _Local())
            now = self._clock()
            if local.chunk >= units and now < local.chunk_ends_at and not self._news(local, units):
                local.chunk -= units
                return
            if local.failing is not None and now < local.failing[1]:
                raise local.failing[0]  # the table just failed: the records waiting fail fast
            try:
                self._reserve(tenant_id, local, units, priority, now)
            except (ClientError, BotoCoreError) as exc:
                local.failing = (exc, self._clock() + FAIL_FAST_SECONDS)
                raise
            local.failing = None

    def observe(self, tenant_id: str, seen: RateLimit) -> None:
        with self._lock:
            local = self._tenants.setdefault(tenant_id, _Local())
            local.seen = (seen, self._clock())

    # -- internals ----------------------------------------------------------------------

    def _news(self, local: _Local, units: int) -> bool:
        """Headers that must reach the shared count before another call: Visma is nearly
        out, or counts clearly more than this stack spent (other integrations are busy)."""
        if local.seen is None or local.window is None or local.seen[0].remaining is None:
            return False
        seen = local.seen[0]
        used = (seen.limit or local.window.limit) - (seen.remaining or 0)
        return (seen.remaining or 0) <= units + MAX_CHUNK or used > local.window.used + 2 * MAX_CHUNK

    def _tenant_lock(self, tenant_id: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(tenant_id, threading.Lock())

    def _reserve(self, tenant_id: str, local: _Local, units: int, priority: Priority, now: float) -> None:
        with self._lock:
            seen, local.seen = local.seen, None
        for _ in range(MAX_RACES):
            window = current(local.window, now, self.settings)
            if seen is not None:
                window = observe(window, seen[0], seen[1], self.settings)
            chunk = self._chunk(window, units)
            granted, wait = grant(window, now, chunk, self.settings, priority)
            if wait and chunk > units:  # the pace allows less than a chunk: ask for just enough
                granted, wait = grant(window, now, units, self.settings, priority)
            if wait:
                # The headers that make this wait, or a window that just began, are news for
                # every instance: written first.
                news = seen is not None or local.window is None or window.ends_at != local.window.ends_at
                if news and not self._put(tenant_id, local, window):
                    now = self._clock()
                    continue
                local.chunk = 0  # what is left of it is not spent past the news
                raise BudgetWait(f"tenant {tenant_id}'s Visma budget is spent for now", wait)
            if self._put(tenant_id, local, granted):
                leftover = local.chunk if now < local.chunk_ends_at else 0
                local.chunk = leftover + granted.spent - window.spent - units
                local.chunk_ends_at = granted.ends_at
                return
            now = self._clock()
        raise BudgetWait(f"tenant {tenant_id}'s Visma budget is contended", 1.0)

    def _chunk(self, window: Window, units: int) -> int:
        return max(units, min(MAX_CHUNK, self.settings.allowed(window.limit) // 50))

    def _key(self, tenant_id: str) -> dict[str, Any]:
        return {"id": {"S": f"{BUDGET_PREFIX}{tenant_id}#{self.client_id}"}}

    def _put(self, tenant_id: str, local: _Local, window: Window) -> bool:
        """Write ``window`` if nobody wrote since ``local.window``; else learn what they wrote."""
        known = local.window
        new = replace(window, version=(known.version if known else 0) + 1)
        item = {
            **self._key(tenant_id),
            "ends_at": {"N": f"{new.ends_at:.3f}"},
            "limit": {"N": str(new.limit)},
            "spent": {"N": str(new.spent)},
            "used_seen": {"N": str(new.used_seen)},
            "spent_at_seen": {"N": str(new.spent_at_seen)},
            "version": {"N": str(new.version)},
            "expiration": {"N": str(int(self._clock()) + TTL_SECONDS)},
        }
        condition = "attribute_not_exists(id) OR version = :version"
        self.writes += 1
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeValues={":version": {"N": str(known.version if known else -1)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            local.window = _window(exc.response.get("Item"))  # type: ignore[arg-type]
            return False
        if known is None or new.ends_at > known.ends_at + self.settings.window_seconds / 2:
            self._seen(tenant_id)  # a new window (not one whose end the headers moved a little)
        local.window = new
        return True

    def _seen(self, tenant_id: str) -> None:
        """Add the tenant to ``tenants#seen`` (once per window and instance)."""
        self.writes += 1
        with contextlib.suppress(ClientError):  # then the reconciler misses it until the next window
            self.client.update_item(
                TableName=self.table_name,
                Key=TENANTS_SEEN_KEY,
                UpdateExpression="ADD tenants :tenant",
                ExpressionAttributeValues={":tenant": {"SS": [tenant_id]}},
            )


def _window(item: dict[str, Any] | None) -> Window | None:
    if not item:
        return None

    def number(name: str) -> float:
        return float(item.get(name, {}).get("N", "0"))

    return Window(
        ends_at=number("ends_at"),
        limit=max(1, math.floor(number("limit"))),
        spent=int(number("spent")),
        used_seen=int(number("used_seen")),
        spent_at_seen=int(number("spent_at_seen")),
        version=int(number("version")),
    )
