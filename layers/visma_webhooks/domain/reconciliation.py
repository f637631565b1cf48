"""One reconciliation pass, or one stretch of a backfill, over the pages of Visma's lists.

For each page (:mod:`.reconciling` says what is asked and what is taken): list it at
background priority, read the processor's watermarks of the listed resources, enqueue a
synthetic notification for each state handlers have not received, and only once the
queue acknowledged them store the cursor with the next page. A crash therefore repeats at
most one page, whose notifications keep their ids and are absorbed by the processor's
dedup. A page that Visma's budget does not allow ends the tenant's run (it resumes on the
next run, where it stopped); so do throttling and a run that is out of time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from visma_webhooks.domain.budgets import Priority
from visma_webhooks.domain.errors import ThrottledError, VismaError
from visma_webhooks.domain.queueing import BatchSender, EnqueueError, Message, enqueue, notification_message
from visma_webhooks.domain.reconciling import (
    Cursor,
    Entity,
    Origin,
    candidates,
    listed_items,
    listed_total,
    missed_after,
    page_done,
    pass_done,
    select,
    start_backfill,
    start_pass,
    synthetic,
)

log = logging.getLogger(__name__)

Kind = Literal["reconcile", "backfill"]
Stop = Literal["done", "budget", "time", "error", "conflict", "pages"]


class Lister(Protocol):
    """What a pass needs of the Visma client: a GET at a priority."""

    def get(
        self,
        tenant_id: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        priority: Priority = Priority.WEBHOOK,
    ) -> Any: ...


class CursorConflict(Exception):
    """Another run stored the cursor since it was read: that run carries on with it."""


class CursorStore(Protocol):
    """Cursors per (kind, tenant, entity) and the processor's resource watermarks."""

    def load(self, kind: Kind, tenant_id: str, entity: Entity) -> Cursor: ...

    def save(self, kind: Kind, tenant_id: str, entity: Entity, cursor: Cursor) -> Cursor:
        """Store ``cursor`` if nobody did since it was read; the stored one (new version) or :class:`CursorConflict`."""
        ...

    def seen(self, tenant_id: str, service: str, paths: Sequence[str]) -> dict[str, str | None]:
        """path → the ``lastModifiedDateTime`` of the state handlers last received (None: never)."""
        ...


@dataclass(frozen=True)
class PassSettings:
    page_size: int = 500
    overlap_seconds: float = 300.0  # re-listed before the watermark: clock skew, late commits
    settle_seconds: float = 120.0  # changes younger than this are left to their webhooks
    lookback_seconds: float = 3600.0  # a first pass, without a watermark, looks this far back
    max_pages: int = 200  # per entity and run


@dataclass
class EntityRun:
    """What one run did for one (tenant, entity)."""

    tenant_id: str
    entity: str
    stop: Stop = "done"
    pages: int = 0
    listed: int = 0
    enqueued: int = 0
    missed: int = 0
    calls: int = 0
    retry_after: float | None = None
    error: str | None = None
    total: int | None = None  # items in the whole list, where Visma says
    cursor: Cursor = field(default_factory=Cursor)


@dataclass
class Walk:
    """The collaborators of a walk over pages; ``now`` gives normalised UTC text."""

    lister: Lister
    store: CursorStore
    sender: BatchSender
    now: Callable[[], str]
    out_of_time: Callable[[], bool] = lambda: False
    on_page: Callable[[EntityRun], None] | None = None

    def run(
        self, kind: Kind, tenant_id: str, entity: Entity, cursor: Cursor, settings: PassSettings
    ) -> EntityRun:
        """Read pages of the pass under way in ``cursor`` until it is done or must stop."""
        run = EntityRun(tenant_id, entity.name, cursor=cursor)
        origin: Origin = "reconciler" if kind == "reconcile" else "backfill"
        while run.cursor.in_pass:
            if run.pages >= settings.max_pages or self.out_of_time():
                run.stop = "pages" if run.pages >= settings.max_pages else "time"
                return run
            try:
                self._page(kind, origin, run, entity, settings)
            except ThrottledError as exc:  # the budget (BudgetWait) or Visma's 429
                run.stop, run.retry_after = "budget", exc.retry_after
                return run
            except (VismaError, EnqueueError) as exc:
                run.stop, run.error = "error", str(exc)
                log.warning(
                    "listing failed", extra={"tenant_id": tenant_id, "entity": entity.name, "error": str(exc)}
                )
                return run
            except CursorConflict:
                run.stop = "conflict"
                return run
            if self.on_page is not None:
                self.on_page(run)
        return run

    def _page(
        self, kind: Kind, origin: Origin, run: EntityRun, entity: Entity, settings: PassSettings
    ) -> None:
        cursor = run.cursor
        run.calls += 1
        body = self.lister.get(
            run.tenant_id,
            entity.service,
            entity.list_path,
            params=entity.params(cursor.since, cursor.page, settings.page_size),
            priority=Priority.BACKGROUND,
        )
        items = listed_items(body)
        run.total = listed_total(body) if items else run.total
        found = candidates(items, entity, cursor.cutoff)
        seen = self.store.seen(run.tenant_id, entity.service, list(found)) if found else {}
        count_missed = kind == "reconcile"
        changes = select(found, seen, missed_after(cursor) if count_missed else None)
        if changes:
            messages = [
                notification_message(i, synthetic(run.tenant_id, entity, c, origin))
                for i, c in enumerate(changes)
            ]
            enqueue(self.sender, messages)  # raises EnqueueError: the cursor stays, the page repeats
        cursor = page_done(cursor, len(items), changes, count_missed)
        if len(items) < settings.page_size:
            cursor = pass_done(cursor, self.now())
        run.cursor = self.store.save(kind, run.tenant_id, entity, cursor)
        run.pages += 1
        run.listed += len(items)
        run.enqueued += len(changes)
        run.missed += sum(c.missed for c in changes) if count_missed else 0


def reconcile_tenant(
    walk: Walk, tenant_id: str, entities: Sequence[Entity], settings: PassSettings
) -> list[EntityRun]:
    """One run for a tenant: each entity's pass under way goes on, else a new one starts.

    Entities whose pass is under way come first, then the one reconciled longest ago, so
    that a budget that runs out every run still reaches every entity in turn. The tenant
    stops at the first entity that meets its budget or runs out of time.
    """
    cursors = {e.name: walk.store.load("reconcile", tenant_id, e) for e in entities}
    order = sorted(entities, key=lambda e: (not cursors[e.name].in_pass, cursors[e.name].finished_at or ""))
    runs: list[EntityRun] = []
    for entity in order:
        cursor = cursors[entity.name]
        if not cursor.in_pass:
            cursor = start_pass(
                cursor,
                entity,
                walk.now(),
                settings.overlap_seconds,
                settings.settle_seconds,
                settings.lookback_seconds,
            )
        run = walk.run("reconcile", tenant_id, entity, cursor, settings)
        runs.append(run)
        if run.stop in ("budget", "time"):
            break
    return runs


def backfill(
    walk: Walk, tenant_id: str, entity: Entity, since: str | None, settings: PassSettings
) -> EntityRun:
    """One stretch of a backfill: resumed where an interrupted one stopped, else from ``since``.

    A finished backfill run again walks everything anew, and enqueues only what handlers
    have not received: nothing, if every state was processed.
    """
    cursor = start_backfill(walk.store.load("backfill", tenant_id, entity), entity, since, walk.now())
    return walk.run("backfill", tenant_id, entity, cursor, settings)


class DryRunStore:
    """A store that reads the real one and keeps what would be stored in memory."""

    def __init__(self, store: CursorStore):
        self.store = store
        self.cursors: dict[tuple[str, str, str], Cursor] = {}

    def load(self, kind: Kind, tenant_id: str, entity: Entity) -> Cursor:
        return self.cursors.get((kind, tenant_id, entity.name)) or self.store.load(kind, tenant_id, entity)

    def save(self, kind: Kind, tenant_id: str, entity: Entity, cursor: Cursor) -> Cursor:
        self.cursors[(kind, tenant_id, entity.name)] = cursor
        return cursor

    def seen(self, tenant_id: str, service: str, paths: Sequence[str]) -> dict[str, str | None]:
        return self.store.seen(tenant_id, service, paths)


class CountingSender:
    """A sender that sends nothing and counts what it was given (a dry run)."""

    def __init__(self) -> None:
        self.messages = 0

    def send_batch(self, messages: Sequence[Message]) -> list[str]:
        self.messages += len(messages)
        return []
