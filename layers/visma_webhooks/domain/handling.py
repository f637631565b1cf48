"""The handler stage of one notification, and its WebhookNotificationFeedback.

In order, for a notification that some handler matches:

* **Echo.** A notification whose ``api_client_id`` is our own Visma Connect client id
  (compared case-insensitively) was caused by our own write-back: only handlers
  registered with ``echoes=True`` run. With none, the outcome is ``echo`` and no feedback
  is posted: no handler processed it, the document already shows the feedback of the
  change that made us write, and every post is one more call in the tenant's budget.
* **Budget.** The calls the stage will make, the fetch and the feedback post, are taken
  from the tenant's budget at once, before anything runs: a notification whose handlers
  ran always has its feedback call (:mod:`.budgets`). No budget: it waits (``throttled``).
* **Order.** A notification naming a resource that a matching handler fetches takes the
  resource's lease (:mod:`.ordering`); another notification of it holding the lease makes
  this one wait (``waiting``). The fetched state older than the one handlers already
  received is ``superseded``: no handler runs.
* **Fetch.** The resource is fetched (once per batch, from its service) only when a
  matching handler needs it (``fetch=True``, the default) and the notification is not a
  deletion. A resource that is gone (404 or 410) makes it a deletion too.
* **Deletion.** Handlers get resource ``None`` and a notification with ``deleted=True``;
  the outcome is success unless a handler fails.
* **Unchanged.** A fetched resource whose fingerprint (:mod:`.fingerprints`) equals the one
  last handed to handlers skips every handler not registered with ``unchanged=True``
  (recorded as ``skipped``); when all are skipped the outcome is ``unchanged``, with
  success feedback saying so. The new watermark and fingerprint are kept once every
  handler succeeded, with the outcome (one write); a deletion forgets them, so that a
  re-created resource counts as a change. A forced replay (``visma-webhooks replay
  --force``) runs every handler, unchanged or not.

Each handler's result and each feedback post are recorded in the attempt's ``stages``
as soon as they are done, and stored with the outcome: a later copy runs only what is
missing. Feedback is posted once per (tenant, notification, success/failure). A
notification whose id Visma never issued (``derived_id``: one of several items of a
delivery with one header id, or a reconciler's synthetic notification) gets none: Visma
would refuse it, or attach it to another notification; its history says so. A post
Visma refuses (4xx, e.g. for a document deleted meanwhile) is recorded and not retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from visma_webhooks.domain.budgets import Priority
from visma_webhooks.domain.errors import PermanentError, PermanentVismaError, ResourceHeld
from visma_webhooks.domain.fingerprints import fingerprint
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.ordering import (
    Lease,
    ResourceClaim,
    ResourceState,
    ResourceStore,
    modified_at,
    superseded,
)
from visma_webhooks.domain.outcomes import Outcome
from visma_webhooks.domain.services import FINANCIALS
from visma_webhooks.notification_handlers import Handler, HandlerContext, Registry

if TYPE_CHECKING:
    from visma_webhooks.domain.settings import ProcessorSettings

MAX_RESULT_CHARS = 1000
GONE = frozenset({404, 410})
DERIVED_ID = "not posted: the id was derived (Visma never issued it)"
SYNTHETIC = "not posted: a synthetic notification of the reconciler (Visma issued no id)"
UNCHANGED = "unchanged: the resource is as handlers last saw it"
SUPERSEDED = "superseded: handlers already received a newer state of the resource"


class Visma(Protocol):
    """The Visma client as the processor uses it; ``client_id`` is our own Visma Connect client."""

    client_id: str

    def get(self, tenant_id: str, service: str, path: str, *, reserved: bool = False) -> Any: ...

    def reserve(self, tenant_id: str, units: int, priority: Priority = Priority.WEBHOOK) -> None: ...

    def request(
        self,
        tenant_id: str,
        method: str,
        service: str,
        path: str,
        json: Any = None,
        params: Any = None,
    ) -> Any: ...

    def post_feedback(
        self,
        tenant_id: str,
        notification_id: str,
        *,
        source: str,
        description: str,
        is_success: bool,
        reserved: bool = False,
    ) -> None: ...


class Fetcher(Protocol):
    """Fetches a resource once per batch (:class:`~.processing.BatchScope`)."""

    def fetch(self, tenant_id: str, service: str, path: str) -> Any: ...

    def fetched(self, tenant_id: str, service: str, path: str) -> bool: ...


@dataclass
class Attempt:
    """One copy's work on a notification: its lease, and the stages done so far (``handlers``
    by name, ``feedback`` by ``ok``/``failed``), seeded with what earlier copies recorded."""

    owner: str
    until: float  # the lease's end: the invocation's deadline, epoch seconds
    forced: bool = False
    stages: dict[str, Any] = field(default_factory=dict)
    give_back: Callable[[ResourceState | None, bool], Any] | None = None  # the resource lease held
    release: Any = None  # its release, written with the outcome

    def settle(self, keep: ResourceState | None = None, gone: bool = False) -> None:
        """The resource lease's release (keeping ``keep``, or forgetting a ``gone`` resource)."""
        if self.give_back is not None:
            self.release, self.give_back = self.give_back(keep, gone), None

    def __post_init__(self) -> None:
        self.stages.setdefault("handlers", {})
        self.stages.setdefault("feedback", {})

    @property
    def handlers(self) -> dict[str, Any]:
        handlers: dict[str, Any] = self.stages["handlers"]
        return handlers


def service_of(notification: Notification) -> str | None:
    """The notification's service; a resource path without one is on Financials."""
    return notification.service or (FINANCIALS if notification.resource_path else None)


class Feedback:
    """Posts each notification's WebhookNotificationFeedback at most once per success/failure."""

    def __init__(self, settings: ProcessorSettings, visma: Visma):
        self.settings = settings
        self.visma = visma

    @staticmethod
    def due(notification: Notification, attempt: Attempt) -> bool:
        return not notification.derived_id and not attempt.stages["feedback"]

    def post(
        self, notification: Notification, attempt: Attempt, success: bool, description: str, *, reserved: bool
    ) -> dict[str, Any]:
        if notification.derived_id:
            why = SYNTHETIC if notification.source_format == "reconciled" else DERIVED_ID
            return {"posted": False, "is_success": success, "skipped": why}
        key = "ok" if success else "failed"
        done: dict[str, Any] | None = attempt.stages["feedback"].get(key)
        if done is not None:
            return done
        try:
            self.visma.post_feedback(
                notification.tenant_id,
                notification.notification_id,
                source=self.settings.feedback_source,
                description=description,
                is_success=success,
                reserved=reserved,
            )
            done = {"posted": True, "is_success": success, "description": description[:MAX_RESULT_CHARS]}
        except PermanentVismaError as exc:
            done = {"posted": False, "is_success": success, "error": f"Visma answered {exc.status}"}
        attempt.stages["feedback"][key] = done
        return done


class _Resource:
    """The notification's resource under its lease: fetched when a handler first runs."""

    def __init__(self, notification: Notification, service: str, scope: Fetcher, ignored: frozenset[str]):
        self.notification = notification
        self.service = service
        self.path = notification.resource_path or ""
        self.scope = scope
        self.ignored = ignored
        self.state = ResourceState()  # what handlers last received, read with the lease
        self.loaded = False
        self.document: Any = None
        self.gone = notification.deleted
        self.fingerprint: str | None = None
        self.modified: str | None = None
        self.unchanged = False
        self.superseded = False
        self.shared = False  # fetched by an earlier record of the batch
        self.error: PermanentVismaError | None = None

    def load(self) -> None:
        """Fetch it (before the claim: the claim's condition compares it with what handlers got)."""
        if self.loaded or self.gone:
            return
        try:
            self.document = self.scope.fetch(self.notification.tenant_id, self.service, self.path)
        except PermanentVismaError as exc:
            if exc.status not in GONE:
                self.error = exc
            else:
                self.gone = True
        self.loaded = True
        if not self.gone and self.error is None:
            self.fingerprint = fingerprint(self.document, self.ignored)
            self.modified = modified_at(self.document)

    def claim(self) -> ResourceClaim:
        """What the claim compares; nothing when an earlier record of the batch handed this
        very state over already (the conditional claim would be refused)."""
        unknown = self.gone or self.error or self.shared
        fetched = None if unknown else ResourceState(self.fingerprint, self.modified)
        return ResourceClaim(self.service, self.path, fetched)

    def hold(self, lease: Lease, store: ResourceStore, attempt: Attempt) -> None:
        """Work under the lease taken with the claim, or wait for its holder."""
        if not lease.acquired:
            raise ResourceHeld(f"another notification holds {self.path}", lease.held_for)
        tenant = self.notification.tenant_id
        attempt.give_back = lambda keep, gone: store.release(
            tenant, self.service, self.path, attempt.owner, keep, gone
        )
        if lease.newer or attempt.forced:  # checked by the claim's condition, or not wanted
            return
        self.state = lease.state
        self.superseded = superseded(self.state, self.modified)
        self.unchanged = self.state.fingerprint == self.fingerprint

    def kept(self) -> ResourceState | None:
        """Every handler succeeded: what to keep as handed over (None: nothing new)."""
        if self.gone or self.fingerprint is None or self.superseded:
            return None
        if self.unchanged and self.modified == self.state.modified:
            return None
        modified = max(filter(None, (self.modified, self.state.modified)), default=None)
        return ResourceState(self.fingerprint, modified)


@dataclass
class Plan:
    """What a notification's handler stage will do: ``short``, the outcome when nothing runs."""

    handlers: list[Handler]
    short: dict[str, Any] | None = None
    resource: _Resource | None = None


class HandlerStage:
    """Runs the matching handlers of one notification, each once, and posts its feedback."""

    def __init__(
        self,
        settings: ProcessorSettings,
        visma: Visma,
        resources: ResourceStore,
        registry: Registry,
        logger: Any,
        feedback: Feedback,
    ):
        self.settings = settings
        self.visma = visma
        self.resources = resources
        self.registry = registry
        self.logger = logger
        self.feedback = feedback

    def plan(self, notification: Notification, scope: Fetcher, done: Attempt | None = None) -> Plan:
        """The handlers that will run and the resource they need, fetched, with the calls of
        the fetch and the feedback taken from the budget. A first copy plans before its
        claim (``done`` None); a later one after it, knowing what earlier copies ``done``."""
        handlers = self.registry.matching(notification.event)
        if not handlers:
            return Plan(
                [], {"outcome": Outcome.UNHANDLED.value, "description": "no handler matches the event"}
            )
        if self._echo(notification):
            handlers = [h for h in handlers if h.echoes]
            if not handlers:
                return Plan(
                    [],
                    {
                        "outcome": Outcome.ECHO.value,
                        "description": "our own change (ApiClientId is our client): no handler opted in",
                    },
                )
        service = service_of(notification)
        pending = [h for h in handlers if done is None or h.name not in done.handlers]
        resource = (
            _Resource(notification, service, scope, self.settings.fingerprint_ignore)
            if service and notification.resource_path and any(h.fetch for h in pending)
            else None
        )
        fetch = resource is not None and not resource.gone
        if resource is not None and scope.fetched(notification.tenant_id, resource.service, resource.path):
            fetch, resource.shared = False, True
        feedback = not notification.derived_id and (done is None or Feedback.due(notification, done))
        # the reconciler's synthetic notifications spend only what webhooks leave
        priority = Priority.BACKGROUND if notification.source_format == "reconciled" else Priority.WEBHOOK
        self.visma.reserve(notification.tenant_id, int(fetch) + int(feedback), priority)
        if resource is not None:
            resource.load()
        return Plan(handlers, None, resource)

    def run(
        self, notification: Notification, plan: Plan, attempt: Attempt, checkpoint: Callable[[], None]
    ) -> dict[str, Any]:
        """The handlers not yet done, the checkpoint of their results, then the feedback."""
        if plan.short is not None:
            return plan.short
        resource = plan.resource
        context = HandlerContext(
            self.logger,
            notification.tenant_id,
            self.visma,
            notification.notification_id,
            service_of(notification),
        )
        for entry in plan.handlers:
            if entry.name not in attempt.handlers:
                attempt.handlers[entry.name] = self._handler(entry, notification, resource, context)
        results = {h.name: attempt.handlers[h.name] for h in plan.handlers}
        failures = [f"{name}: {r['error']}" for name, r in results.items() if r["status"] == "failed"]
        if resource is not None:
            attempt.settle(None if failures else resource.kept(), not failures and resource.gone)
        checkpoint()
        return self._finish(notification, attempt, results, failures, resource)

    def _echo(self, notification: Notification) -> bool:
        ours = (self.visma.client_id or "").strip().casefold()
        return bool(ours) and (notification.api_client_id or "").strip().casefold() == ours

    def _handler(
        self,
        entry: Handler,
        notification: Notification,
        resource: _Resource | None,
        context: HandlerContext,
    ) -> dict[str, Any]:
        if resource is not None and resource.error is not None:
            status = resource.error.status
            return {"status": "failed", "error": f"Visma answered {status} for {notification.resource_path}"}
        gone = notification.deleted or (resource is not None and resource.gone)
        if resource is not None and not gone:
            if resource.superseded:
                return {"status": "skipped", "reason": "superseded"}
            if resource.unchanged and not entry.unchanged:
                return {"status": "skipped", "reason": "resource unchanged"}
        seen = notification.model_copy(update={"deleted": True}) if gone else notification
        document = resource.document if resource is not None and entry.fetch and not gone else None
        try:
            result = {"status": "succeeded", "result": _jsonable(entry.fn(seen, document, context))}
        except PermanentError as exc:
            result = {"status": "failed", "error": str(exc) or type(exc).__name__}
        return {**result, "deleted": True} if gone else result

    def _finish(
        self,
        notification: Notification,
        attempt: Attempt,
        results: dict[str, Any],
        failures: list[str],
        resource: _Resource | None,
    ) -> dict[str, Any]:
        deleted = any(r.get("deleted") for r in results.values())
        skipped = all(r["status"] == "skipped" for r in results.values())
        if failures:
            outcome, description = Outcome.FAILED, "; ".join(failures)
        elif skipped and resource is not None and resource.superseded:
            outcome = Outcome.SUPERSEDED
            description = f"{SUPERSEDED} (fetched {resource.modified}, handed over {resource.state.modified})"
        elif skipped:
            outcome, description = Outcome.UNCHANGED, f"{UNCHANGED} (skipped: {', '.join(results)})"
        else:
            outcome = Outcome.SUCCEEDED
            description = "; ".join(
                f"{name}: {_text(r.get('result')) if r['status'] == 'succeeded' else 'skipped, unchanged'}"
                for name, r in results.items()
            )
        feedback = self.feedback.post(
            notification, attempt, outcome is not Outcome.FAILED, description, reserved=True
        )
        return {
            "outcome": outcome.value,
            "description": description,
            "handlers": results,
            "feedback": feedback,
            "deleted": deleted,
        }


def _jsonable(value: Any) -> Any:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return _text(value)
    return value if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text[:MAX_RESULT_CHARS]
