"""Processing one queued notification with exactly-once effects.

Stages, each guarded by its own idempotency key so that a retry, a replay or a re-sent
notification never repeats one that already succeeded:

* ``notification#<id>``: the whole notification; a completed one is a duplicate;
* ``handler#<name>#<id>``: each matching handler (a retry after a crash runs only the
  handlers that did not finish, and fetches the resource only if one of them needs it);
* ``feedback#<id>#ok`` / ``feedback#<id>#failed``: the WebhookNotificationFeedback post.

Error classes (:mod:`visma_webhooks.domain.errors`): :class:`PermanentVismaError` (404, 410, ...), an
invalid notification and a handler's :class:`PermanentError` are permanent: no retry,
feedback ``isSuccess: false``. Everything else is transient: the message returns to the
queue after a backoff (or the wait Visma asked for), and on its last receive before the
DLQ the failure feedback is posted. A notification that no handler matches is
acknowledged without feedback (nobody processed it, so neither success nor failure is
true), counted as ``unhandled``.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pydantic import ValidationError

from visma_webhooks.domain.errors import PermanentError, PermanentVismaError, StageInProgress, ThrottledError
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.parsing import ItemError, PayloadError
from visma_webhooks.domain.queueing import FORCE_ATTRIBUTE, QUARANTINE_KEY, parse_quarantined
from visma_webhooks.domain.settings import ProcessorSettings
from visma_webhooks.notification_handlers import Handler, HandlerContext, Registry

MAX_RESULT_CHARS = 1000
MAX_VISIBILITY_SECONDS = 43_200  # SQS maximum: 12 hours


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # permanent: not retried, failure feedback posted
    RETRYING = "retrying"  # transient: back on the queue after a backoff
    THROTTLED = "throttled"  # Visma asked us to wait: back on the queue after that wait
    UNHANDLED = "unhandled"  # no handler matches the event
    DUPLICATE = "duplicate"  # already processed
    INVALID = "invalid"  # the message is not a notification; kept (it returns, then the DLQ)


RETRIED = frozenset({Outcome.RETRYING, Outcome.THROTTLED, Outcome.INVALID})
FINAL = frozenset(Outcome) - RETRIED  # the copy is done with: its message is deleted
COMPLETED = FINAL - {Outcome.DUPLICATE}  # the notification itself was processed
ALREADY_PROCESSED = "already processed: "  # a duplicate's description, followed by the outcome it found


class StageGuard(Protocol):
    """Runs ``fn`` at most once successfully per key; returns (result, ran_now)."""

    def once(self, key: str, fn: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]: ...


class OutcomeStore(Protocol):
    """Where the history of each notification is kept (for ``status`` and ``inspect``)."""

    def started(
        self, notification_id: str, attempt: int, message_id: str, summary: Mapping[str, Any]
    ) -> None: ...

    def finished(self, notification_id: str, result: RecordResult) -> None: ...


class Visma(Protocol):
    def get(self, tenant_id: str, path: str) -> Any: ...

    def post_feedback(
        self, tenant_id: str, notification_id: str, *, source: str, description: str, is_success: bool
    ) -> None: ...


@dataclass(frozen=True)
class QueuedRecord:
    """One SQS message as the processor sees it."""

    message_id: str
    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    receive_count: int = 1


@dataclass
class RecordResult:
    message_id: str
    outcome: Outcome
    notification_id: str | None = None
    event: str | None = None
    description: str = ""
    handlers: dict[str, Any] = field(default_factory=dict)
    feedback: dict[str, Any] | None = None
    retry_after: float | None = None
    error: str | None = None
    found: Outcome | None = None  # a duplicate: the outcome the notification already had

    @property
    def retry(self) -> bool:
        """True when the message must stay on the queue (a batch item failure)."""
        return self.outcome in RETRIED


class BatchScope:
    """Per-batch state: each distinct (tenant, resource path) is fetched once, and a
    notification that appears twice in the batch is processed by its first record only."""

    def __init__(self, visma: Visma):
        self._visma = visma
        self._lock = threading.Lock()
        self._fetches: dict[tuple[str, str], Future[Any]] = {}
        self._records: dict[str, Future[RecordResult]] = {}

    def claim(self, key: str) -> Future[RecordResult] | None:
        """None if this record is the first with ``key``; else the first one's future result."""
        with self._lock:
            if key in self._records:
                return self._records[key]
            self._records[key] = Future()
            return None

    def settle(self, key: str, result: RecordResult) -> None:
        self._records[key].set_result(result)

    def fetch(self, tenant_id: str, path: str) -> Any:
        key = (tenant_id, path)
        with self._lock:
            existing = self._fetches.get(key)
            future = self._fetches[key] = existing or Future()
        if existing is None:
            try:
                future.set_result(self._visma.get(tenant_id, path))
            except BaseException as exc:  # handed to every waiter, then re-raised
                future.set_exception(exc)
        return future.result()


class _Permanent(Exception):
    """The message is not a notification at all; it is kept (it returns, then goes to the DLQ)."""


class _StillInvalid(Exception):
    """A quarantined item that is still invalid: a permanent failure of a known notification."""

    def __init__(self, reason: str, notification_id: str | None, tenant_id: str | None):
        super().__init__(reason)
        self.notification_id = notification_id
        self.tenant_id = tenant_id


class Processor:
    def __init__(
        self,
        settings: ProcessorSettings,
        visma: Visma,
        guard: StageGuard,
        outcomes: OutcomeStore,
        registry: Registry,
        logger: Any,
    ):
        self.settings = settings
        self.visma = visma
        self.guard = guard
        self.outcomes = outcomes
        self.registry = registry
        self.logger = logger

    def batch(self) -> BatchScope:
        return BatchScope(self.visma)

    def process(self, record: QueuedRecord, scope: BatchScope) -> RecordResult:
        """Process one record; never raises (the result says whether to retry)."""
        try:
            notification = self._notification(record)
        except _Permanent as exc:
            return self._invalid(record, str(exc))
        except _StillInvalid as exc:
            return self._still_invalid(record, exc)
        suffix = (
            f"#force-{record.attributes[FORCE_ATTRIBUTE]}" if record.attributes.get(FORCE_ATTRIBUTE) else ""
        )
        nid = notification.notification_id
        result = RecordResult(record.message_id, Outcome.SUCCEEDED, nid, notification.event)
        earlier = scope.claim(nid + suffix)
        if earlier is not None:
            first: RecordResult = earlier.result()
            if first.retry:
                result.outcome, result.retry_after = first.outcome, first.retry_after
                result.error = "retried with an earlier copy in the same batch"
            else:
                result.outcome, result.found = Outcome.DUPLICATE, first.found or first.outcome
                result.description = "an earlier copy in the batch was processed"
                self.outcomes.finished(nid, result)  # counted with the other absorbed copies
            return result
        try:
            self._process(record, notification, suffix, scope, result)
        finally:
            scope.settle(nid + suffix, result)
        return result

    def _process(
        self,
        record: QueuedRecord,
        notification: Notification,
        suffix: str,
        scope: BatchScope,
        result: RecordResult,
    ) -> None:
        nid = notification.notification_id
        self.outcomes.started(
            nid,
            record.receive_count,
            record.message_id,
            {
                "tenant_id": notification.tenant_id,
                "event": notification.event,
                "resource_path": notification.resource_path,
            },
        )
        try:
            stored, ran = self.guard.once(
                f"notification#{nid}{suffix}", lambda: self._run(notification, scope, suffix)
            )
            if not ran:
                result.outcome, result.found = Outcome.DUPLICATE, Outcome(stored["outcome"])
                result.description = f"{ALREADY_PROCESSED}{result.found}"
            else:
                result.outcome = Outcome(stored["outcome"])
                result.description = stored.get("description", "")
                result.handlers = stored.get("handlers", {})
                result.feedback = stored.get("feedback")
        except Exception as exc:  # transient: the message goes back to the queue
            self._transient(record, notification, suffix, exc, result)
        self.outcomes.finished(nid, result)

    # -- stages ---------------------------------------------------------------------------

    def _run(self, notification: Notification, scope: BatchScope, suffix: str) -> dict[str, Any]:
        handlers = self.registry.matching(notification.event)
        if not handlers:
            return {"outcome": Outcome.UNHANDLED.value, "description": "no handler matches the event"}
        context = HandlerContext(
            self.logger, notification.tenant_id, self.visma, notification.notification_id
        )
        results: dict[str, Any] = {}
        failures: list[str] = []
        for entry in handlers:

            def run(entry: Handler = entry) -> dict[str, Any]:
                resource = (
                    scope.fetch(notification.tenant_id, notification.resource_path)
                    if notification.resource_path
                    else None
                )
                try:
                    return {
                        "status": "succeeded",
                        "result": _jsonable(entry.fn(notification, resource, context)),
                    }
                except PermanentError as exc:
                    return {"status": "failed", "error": str(exc) or type(exc).__name__}

            try:
                stored, _ = self.guard.once(
                    f"handler#{entry.name}#{notification.notification_id}{suffix}", run
                )
            except PermanentVismaError as exc:
                stored = {
                    "status": "failed",
                    "error": f"Visma answered {exc.status} for {notification.resource_path}",
                }
            results[entry.name] = stored
            if stored["status"] == "failed":
                failures.append(f"{entry.name}: {stored['error']}")
        success = not failures
        description = (
            "; ".join(failures)
            if failures
            else "; ".join(f"{name}: {_text(r.get('result'))}" for name, r in results.items())
        )
        feedback = self._feedback(notification, suffix, success, description)
        return {
            "outcome": (Outcome.SUCCEEDED if success else Outcome.FAILED).value,
            "description": description,
            "handlers": results,
            "feedback": feedback,
        }

    def _feedback(
        self, notification: Notification, suffix: str, success: bool, description: str
    ) -> dict[str, Any]:
        """Post feedback once per (notification, success/failure); a rejected post is not retried."""

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

        stored, _ = self.guard.once(
            f"feedback#{notification.notification_id}#{'ok' if success else 'failed'}{suffix}", post
        )
        return stored

    # -- failures -------------------------------------------------------------------------

    def _transient(
        self,
        record: QueuedRecord,
        notification: Notification,
        suffix: str,
        exc: Exception,
        result: RecordResult,
    ) -> None:
        throttled = exc if isinstance(exc, ThrottledError) else None
        result.outcome = Outcome.THROTTLED if throttled else Outcome.RETRYING
        result.error = f"{type(exc).__name__}: {exc}"[:MAX_RESULT_CHARS]
        # A stage held by another worker backs off like any transient failure: if that worker
        # crashed, the stage stays held until its invocation's deadline, and quicker retries
        # would only use up this copy's receives and send it to the DLQ meanwhile.
        result.retry_after = self._retry_after(
            record.receive_count, throttled.retry_after if throttled else None
        )
        self.logger.warning(
            "notification will be retried",
            extra={
                "notification_id": notification.notification_id,
                "error": result.error,
                "retry_after": result.retry_after,
            },
        )
        if record.receive_count >= self.settings.max_receive_count and not isinstance(exc, StageInProgress):
            # (Not when another worker holds the notification: that worker reports the outcome,
            # and a "gave up" from this copy could land after its success feedback.)
            description = f"gave up after {record.receive_count} attempts: {result.error}"
            try:
                result.feedback = self._feedback(notification, suffix, False, description)
            except Exception as feedback_exc:  # the message still goes to the DLQ
                result.feedback = {"posted": False, "is_success": False, "error": str(feedback_exc)[:200]}

    def _retry_after(self, receive_count: int, wanted: float | None) -> float:
        if wanted is not None:
            delay = wanted + random.uniform(0, 1)
        else:
            delay = self.settings.retry_base_seconds * 2 ** max(0, receive_count - 1)
            delay = min(delay, self.settings.retry_max_seconds) * random.uniform(0.8, 1.2)
        return min(delay, MAX_VISIBILITY_SECONDS)

    def _invalid(self, record: QueuedRecord, reason: str) -> RecordResult:
        self.logger.error(
            "message is not a valid notification", extra={"message_id": record.message_id, "reason": reason}
        )
        return RecordResult(
            record.message_id,
            Outcome.INVALID,
            record.attributes.get("notification_id"),
            error=reason,
            retry_after=self._retry_after(record.receive_count, None),
        )

    def _still_invalid(self, record: QueuedRecord, exc: _StillInvalid) -> RecordResult:
        """Permanent: acknowledged, failure feedback when the ids are known, history kept."""
        nid, reason = exc.notification_id, str(exc)
        result = RecordResult(record.message_id, Outcome.FAILED, nid, description=reason, error=reason)
        if nid and exc.tenant_id:
            self.outcomes.started(
                nid,
                record.receive_count,
                record.message_id,
                {"tenant_id": exc.tenant_id, "body": record.body[:MAX_RESULT_CHARS]},
            )
            stub = Notification.model_construct(notification_id=nid, tenant_id=exc.tenant_id)
            try:
                result.feedback = self._feedback(stub, "", False, reason)
            except Exception as feedback_exc:  # transient: keep the message and try again
                result.outcome, result.error = (
                    Outcome.RETRYING,
                    f"feedback: {feedback_exc}"[:MAX_RESULT_CHARS],
                )
                result.retry_after = self._retry_after(record.receive_count, None)
            self.outcomes.finished(nid, result)
        self.logger.warning(
            "invalid notification acknowledged", extra={"message_id": record.message_id, "reason": reason}
        )
        return result

    def _notification(self, record: QueuedRecord) -> Notification:
        """The message body as a notification; a quarantined item is re-validated."""
        try:
            body = json.loads(record.body)
        except ValueError as exc:
            raise _Permanent(f"body is not JSON: {exc}") from None
        if isinstance(body, dict) and isinstance(body.get(QUARANTINE_KEY), dict):
            try:
                return parse_quarantined(body, self.settings.rules)
            except PayloadError as exc:
                raise _Permanent(str(exc)) from None
            except ItemError as exc:
                raise _StillInvalid(
                    f"invalid notification: {exc}", exc.notification_id, exc.tenant_id
                ) from None
        try:
            return Notification.model_validate(body)
        except ValidationError as exc:
            raise _Permanent(f"not a notification: {exc.error_count()} error(s)") from None


def _jsonable(value: Any) -> Any:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return _text(value)
    return value if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text[:MAX_RESULT_CHARS]
