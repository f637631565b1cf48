"""The handler stage of one notification, and its WebhookNotificationFeedback.

In order, for a notification that some handler matches:

* **Echo.** A notification whose ``api_client_id`` is our own Visma Connect client id
  (compared case-insensitively) was caused by our own write-back: only handlers
  registered with ``echoes=True`` run. With none, the outcome is ``echo`` and no feedback
  is posted: no handler processed it, the document already shows the feedback of the
  change that made us write, and every post is one more call in the tenant's budget.
* **Fetch.** The resource is fetched (once per batch, from its service) only when a
  matching handler needs it (``fetch=True``, the default) and the notification is not a
  deletion. A resource that is gone (404 or 410) makes it a deletion too.
* **Deletion.** Handlers get resource ``None`` and a notification with ``deleted=True``;
  the outcome is success unless a handler fails.
* **Unchanged.** A fetched resource whose fingerprint (:mod:`.fingerprints`) equals the one
  last handed to handlers skips every handler not registered with ``unchanged=True``
  (recorded as ``skipped``); when all are skipped the outcome is ``unchanged``, with
  success feedback saying so. The fingerprint is stored once every handler succeeded;
  a deletion forgets it, so that a re-created resource counts as a change. A forced replay
  (``visma-webhooks replay --force``) runs every handler, unchanged or not.

Feedback is posted once per (tenant, notification, success/failure). A notification whose
id Visma never issued (``derived_id``: one of several items of a delivery with one
header id) gets none: Visma would refuse it, or attach it to another notification; its
history says so. A post Visma refuses (4xx, e.g. for a document deleted meanwhile) is
recorded and not retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from visma_webhooks.domain.errors import PermanentError, PermanentVismaError
from visma_webhooks.domain.fingerprints import FingerprintStore, fingerprint
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.outcomes import Outcome
from visma_webhooks.domain.services import FINANCIALS
from visma_webhooks.notification_handlers import Handler, HandlerContext, Registry

if TYPE_CHECKING:
    from visma_webhooks.domain.settings import ProcessorSettings

MAX_RESULT_CHARS = 1000
GONE = frozenset({404, 410})
DERIVED_ID = "not posted: the id was derived (Visma never issued it)"
UNCHANGED = "unchanged: the resource is as handlers last saw it"


class Visma(Protocol):
    """The Visma client as the processor uses it; ``client_id`` is our own Visma Connect client."""

    client_id: str

    def get(self, tenant_id: str, service: str, path: str) -> Any: ...

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
        self, tenant_id: str, notification_id: str, *, source: str, description: str, is_success: bool
    ) -> None: ...


class StageGuard(Protocol):
    """Runs ``fn`` at most once successfully per key; returns (result, ran_now)."""

    def once(self, key: str, fn: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]: ...


class Fetcher(Protocol):
    """Fetches a resource once per batch, and gives records of one resource turns (:class:`~.processing.BatchScope`)."""

    def fetch(self, tenant_id: str, service: str, path: str) -> Any: ...

    def hold(self, tenant_id: str, service: str, path: str) -> AbstractContextManager[object]: ...


def service_of(notification: Notification) -> str | None:
    """The notification's service; a resource path without one is on Financials."""
    return notification.service or (FINANCIALS if notification.resource_path else None)


class Feedback:
    """Posts each notification's WebhookNotificationFeedback at most once per success/failure."""

    def __init__(self, settings: ProcessorSettings, visma: Visma, guard: StageGuard):
        self.settings = settings
        self.visma = visma
        self.guard = guard

    def post(
        self, notification: Notification, suffix: str, success: bool, description: str
    ) -> dict[str, Any]:
        if notification.derived_id:
            return {"posted": False, "is_success": success, "skipped": DERIVED_ID}

        def post() -> dict[str, Any]:
            try:
                self.visma.post_feedback(
                    notification.tenant_id,
                    notification.notification_id,
                    source=self.settings.feedback_source,
                    description=description,
                    is_success=success,
                )
            except PermanentVismaError as exc:
                return {"posted": False, "is_success": success, "error": f"Visma answered {exc.status}"}
            return {"posted": True, "is_success": success, "description": description[:MAX_RESULT_CHARS]}

        key = f"feedback#{notification.tenant_id}#{notification.notification_id}"
        stored, _ = self.guard.once(f"{key}#{'ok' if success else 'failed'}{suffix}", post)
        return stored


class _Resource:
    """The notification's resource, fetched when a handler first runs: gone, unchanged, or new."""

    def __init__(
        self,
        notification: Notification,
        service: str,
        scope: Fetcher,
        fingerprints: FingerprintStore,
        ignored: frozenset[str],
        forced: bool,
    ):
        self.notification = notification
        self.forced = forced  # a forced replay runs every handler, unchanged or not
        self.service = service
        self.path = notification.resource_path or ""
        self.scope = scope
        self.fingerprints = fingerprints
        self.ignored = ignored
        self.loaded = False
        self.document: Any = None
        self.gone = notification.deleted
        self.fingerprint: str | None = None
        self.unchanged = False
        self.error: PermanentVismaError | None = None

    def load(self) -> None:
        if self.error is not None:
            raise self.error
        if self.loaded or self.gone:
            return
        tenant = self.notification.tenant_id
        try:
            self.document = self.scope.fetch(tenant, self.service, self.path)
        except PermanentVismaError as exc:
            if exc.status not in GONE:
                self.error = exc
                raise
            self.gone = True
        self.loaded = True
        if not self.gone:
            self.fingerprint = fingerprint(self.document, self.ignored)
            stored = self.fingerprints.get(tenant, self.service, self.path)
            self.unchanged = not self.forced and stored == self.fingerprint

    def remember(self) -> None:
        """Every handler succeeded: keep what they saw."""
        tenant = self.notification.tenant_id
        if self.gone:
            self.fingerprints.forget(tenant, self.service, self.path)
        elif self.fingerprint is not None and not self.unchanged:
            self.fingerprints.put(tenant, self.service, self.path, self.fingerprint)


class HandlerStage:
    """Runs the matching handlers of one notification, each once, and posts its feedback."""

    def __init__(
        self,
        settings: ProcessorSettings,
        visma: Visma,
        guard: StageGuard,
        fingerprints: FingerprintStore,
        registry: Registry,
        logger: Any,
        feedback: Feedback,
    ):
        self.settings = settings
        self.visma = visma
        self.guard = guard
        self.fingerprints = fingerprints
        self.registry = registry
        self.logger = logger
        self.feedback = feedback

    def run(self, notification: Notification, scope: Fetcher, suffix: str) -> dict[str, Any]:
        handlers = self.registry.matching(notification.event)
        if not handlers:
            return {"outcome": Outcome.UNHANDLED.value, "description": "no handler matches the event"}
        if self._echo(notification):
            handlers = [h for h in handlers if h.echoes]
            if not handlers:
                return {
                    "outcome": Outcome.ECHO.value,
                    "description": "our own change (ApiClientId is our client): no handler opted in",
                }
        service = service_of(notification)
        resource = (
            _Resource(
                notification,
                service,
                scope,
                self.fingerprints,
                self.settings.fingerprint_ignore,
                bool(suffix),
            )
            if service and notification.resource_path and any(h.fetch for h in handlers)
            else None
        )
        context = HandlerContext(
            self.logger, notification.tenant_id, self.visma, notification.notification_id, service
        )
        # Records of one batch that name the same resource take turns, from the fingerprint
        # check to storing the new one: the second sees what the first handed over, so one
        # state reaches the handlers once, whichever record runs first.
        turn = (
            scope.hold(notification.tenant_id, resource.service, resource.path) if resource else nullcontext()
        )
        with turn:
            results = {h.name: self._handler(h, notification, resource, context, suffix) for h in handlers}
            failures = [f"{name}: {r['error']}" for name, r in results.items() if r["status"] == "failed"]
            if not failures and resource is not None:
                resource.remember()
        return self._finish(notification, suffix, results, failures)

    def _echo(self, notification: Notification) -> bool:
        ours = (self.visma.client_id or "").strip().casefold()
        return bool(ours) and (notification.api_client_id or "").strip().casefold() == ours

    def _handler(
        self,
        entry: Handler,
        notification: Notification,
        resource: _Resource | None,
        context: HandlerContext,
        suffix: str,
    ) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            if resource is not None:
                resource.load()
            gone = notification.deleted or (resource is not None and resource.gone)
            if not gone and resource is not None and resource.unchanged and not entry.unchanged:
                return {"status": "skipped", "reason": "resource unchanged"}
            seen = notification.model_copy(update={"deleted": True}) if gone else notification
            document = resource.document if resource is not None and entry.fetch and not gone else None
            try:
                result = {"status": "succeeded", "result": _jsonable(entry.fn(seen, document, context))}
            except PermanentError as exc:
                result = {"status": "failed", "error": str(exc) or type(exc).__name__}
            return {**result, "deleted": True} if gone else result

        key = f"handler#{entry.name}#{notification.tenant_id}#{notification.notification_id}{suffix}"
        try:
            stored, _ = self.guard.once(key, run)
        except PermanentVismaError as exc:
            return {
                "status": "failed",
                "error": f"Visma answered {exc.status} for {notification.resource_path}",
            }
        return stored

    def _finish(
        self, notification: Notification, suffix: str, results: dict[str, Any], failures: list[str]
    ) -> dict[str, Any]:
        deleted = any(r.get("deleted") for r in results.values())
        if failures:
            outcome, description = Outcome.FAILED, "; ".join(failures)
        elif all(r["status"] == "skipped" for r in results.values()):
            outcome, description = Outcome.UNCHANGED, f"{UNCHANGED} (skipped: {', '.join(results)})"
        else:
            outcome = Outcome.SUCCEEDED
            description = "; ".join(
                f"{name}: {_text(r.get('result')) if r['status'] == 'succeeded' else 'skipped, unchanged'}"
                for name, r in results.items()
            )
        feedback = self.feedback.post(notification, suffix, outcome is not Outcome.FAILED, description)
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
