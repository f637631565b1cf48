"""Processing one queued notification with exactly-once effects.

Stages, each guarded by its own idempotency key so that a retry, a replay or a re-sent
notification never repeats one that already succeeded. Every key holds the tenant: Visma's
notification ids are unique per tenant only, so the same id from two tenants is two
notifications, each with its own handlers and its own feedback.

* ``notification#<tenant>#<id>``: the whole notification; a completed one is a duplicate;
* ``handler#<name>#<tenant>#<id>``: each matching handler (a retry after a crash runs only
  the handlers that did not finish, and fetches the resource only if one of them runs);
* ``feedback#<tenant>#<id>#ok`` / ``...#failed``: the WebhookNotificationFeedback post.

What the handler stage does (echoes, fetching, deletions, unchanged resources, feedback)
is in :mod:`visma_webhooks.domain.handling`.

Error classes (:mod:`visma_webhooks.domain.errors`): :class:`PermanentVismaError` (4xx but
404/410, which mean the resource is gone), an invalid notification and a handler's
:class:`PermanentError` are permanent: no retry, feedback ``isSuccess: false``. Everything
else is transient: the message returns to the queue after a backoff (or the wait Visma
asked for), and on its last receive before the DLQ the failure feedback is posted. A
notification that no handler matches is acknowledged without feedback (nobody processed
it, so neither success nor failure is true), counted as ``unhandled``.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from visma_webhooks.domain.errors import StageInProgress, ThrottledError
from visma_webhooks.domain.fingerprints import FingerprintStore
from visma_webhooks.domain.handling import MAX_RESULT_CHARS, Feedback, HandlerStage, StageGuard, Visma
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.outcomes import (
    ALREADY_PROCESSED,
    Outcome,
    OutcomeStore,
    RecordResult,
)
from visma_webhooks.domain.parsing import ItemError, PayloadError
from visma_webhooks.domain.queueing import FORCE_ATTRIBUTE, QUARANTINE_KEY, parse_quarantined
from visma_webhooks.domain.settings import ProcessorSettings
from visma_webhooks.notification_handlers import Registry

MAX_VISIBILITY_SECONDS = 43_200  # SQS maximum: 12 hours


@dataclass(frozen=True)
class QueuedRecord:
    """One SQS message as the processor sees it."""

    message_id: str
    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    receive_count: int = 1


class BatchScope:
    """Per-batch state: each distinct (tenant, service, path) is fetched once, records that
    name one resource take turns handling it, and a notification that appears twice in the
    batch is processed by its first record only."""

    def __init__(self, visma: Visma):
        self._visma = visma
        self._lock = threading.Lock()
        self._fetches: dict[tuple[str, str, str], Future[Any]] = {}
        self._holds: dict[tuple[str, str, str], threading.Lock] = {}
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

    def hold(self, tenant_id: str, service: str, path: str) -> threading.Lock:
        """The resource's turn: held while one record checks, hands over and remembers it."""
        with self._lock:
            return self._holds.setdefault((tenant_id, service, path), threading.Lock())

    def fetch(self, tenant_id: str, service: str, path: str) -> Any:
        key = (tenant_id, service, path)
        with self._lock:
            existing = self._fetches.get(key)
            future = self._fetches[key] = existing or Future()
        if existing is None:
            try:
                future.set_result(self._visma.get(tenant_id, service, path))
            except BaseException as exc:  # handed to every waiter, then re-raised
                future.set_exception(exc)
        return future.result()


class _Permanent(Exception):
    """The message is not a notification at all; it is kept (it returns, then goes to the DLQ)."""


class _StillInvalid(Exception):
    """A quarantined item that is still invalid: a permanent failure of a known notification."""

    def __init__(self, reason: str, notification_id: str | None, tenant_id: str | None, derived_id: bool):
        super().__init__(reason)
        self.notification_id = notification_id
        self.tenant_id = tenant_id
        self.derived_id = derived_id


class Processor:
    def __init__(
        self,
        settings: ProcessorSettings,
        visma: Visma,
        guard: StageGuard,
        outcomes: OutcomeStore,
        registry: Registry,
        logger: Any,
        *,
        fingerprints: FingerprintStore,
    ):
        self.settings = settings
        self.visma = visma
        self.guard = guard
        self.outcomes = outcomes
        self.logger = logger
        self.feedback = Feedback(settings, visma, guard)
        self.handlers = HandlerStage(settings, visma, guard, fingerprints, registry, logger, self.feedback)

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
        nid, tenant = notification.notification_id, notification.tenant_id
        result = RecordResult(record.message_id, Outcome.SUCCEEDED, nid, notification.event, tenant_id=tenant)
        key = f"{tenant}#{nid}{suffix}"
        earlier = scope.claim(key)
        if earlier is not None:
            first: RecordResult = earlier.result()
            if first.retry:
                result.outcome, result.retry_after = first.outcome, first.retry_after
                result.error = "retried with an earlier copy in the same batch"
            else:
                result.outcome, result.found = Outcome.DUPLICATE, first.found or first.outcome
                result.description = "an earlier copy in the batch was processed"
                self.outcomes.finished(tenant, nid, result)  # counted with the other absorbed copies
            return result
        try:
            self._process(record, notification, suffix, scope, result)
        finally:
            scope.settle(key, result)
        return result

    def _process(
        self,
        record: QueuedRecord,
        notification: Notification,
        suffix: str,
        scope: BatchScope,
        result: RecordResult,
    ) -> None:
        nid, tenant = notification.notification_id, notification.tenant_id
        summary: dict[str, Any] = {
            "tenant_id": tenant,
            "event": notification.event,
            "service": notification.service,
            "resource_path": notification.resource_path,
        }
        if notification.api_client_id:
            summary["api_client_id"] = notification.api_client_id
        self.outcomes.started(tenant, nid, record.receive_count, record.message_id, summary)
        try:
            stored, ran = self.guard.once(
                f"notification#{tenant}#{nid}{suffix}", lambda: self.handlers.run(notification, scope, suffix)
            )
            if not ran:
                result.outcome, result.found = Outcome.DUPLICATE, Outcome(stored["outcome"])
                result.description = f"{ALREADY_PROCESSED}{result.found}"
            else:
                result.outcome = Outcome(stored["outcome"])
                result.description = stored.get("description", "")
                result.handlers = stored.get("handlers", {})
                result.feedback = stored.get("feedback")
                result.deleted = bool(stored.get("deleted"))
        except Exception as exc:  # transient: the message goes back to the queue
            self._transient(record, notification, suffix, exc, result)
        self.outcomes.finished(tenant, nid, result)

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
                result.feedback = self.feedback.post(notification, suffix, False, description)
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
        result = RecordResult(
            record.message_id, Outcome.FAILED, nid, description=reason, error=reason, tenant_id=exc.tenant_id
        )
        if nid and exc.tenant_id:
            self.outcomes.started(
                exc.tenant_id,
                nid,
                record.receive_count,
                record.message_id,
                {"tenant_id": exc.tenant_id, "body": record.body[:MAX_RESULT_CHARS]},
            )
            stub = Notification.model_construct(
                notification_id=nid, tenant_id=exc.tenant_id, derived_id=exc.derived_id
            )
            try:
                result.feedback = self.feedback.post(stub, "", False, reason)
            except Exception as feedback_exc:  # transient: keep the message and try again
                result.outcome, result.error = (
                    Outcome.RETRYING,
                    f"feedback: {feedback_exc}"[:MAX_RESULT_CHARS],
                )
                result.retry_after = self._retry_after(record.receive_count, None)
            self.outcomes.finished(exc.tenant_id, nid, result)
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
                    f"invalid notification: {exc}", exc.notification_id, exc.tenant_id, exc.derived_id
                ) from None
        try:
            return Notification.model_validate(body)
        except ValidationError as exc:
            raise _Permanent(f"not a notification: {exc.error_count()} error(s)") from None
