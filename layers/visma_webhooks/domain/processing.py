"""Processing one queued notification with exactly-once effects.

Each notification (per tenant: Visma's ids are unique per tenant only) has one state item
(:class:`~visma_webhooks.domain.outcomes.NotificationState`): a copy **claims** it with
one conditional write, which returns the stages earlier copies finished, runs only what
is missing (:mod:`visma_webhooks.domain.handling`), and **finishes** it with one more
write that records the outcome and gives back the notification's lease and its
resource's (with the resource's new watermark). A copy that finds the notification
completed is a duplicate; one that finds it held waits as long as the holder may hold it.
A forced replay is a run of its own (``force-<id>``): it runs every stage again, once.

Waiting is not failing. A notification waiting for its tenant's budget, for a 429's
``Retry-After`` or for a lease is ``throttled``/``waiting``: the processor function puts
a fresh copy of it back on the queue with a delay and acknowledges this one, so that no
wait, however long, uses up a receive that counts toward the DLQ.

Error classes (:mod:`visma_webhooks.domain.errors`): :class:`PermanentVismaError` (4xx but
404/410, which mean the resource is gone), an invalid notification and a handler's
:class:`PermanentError` are permanent: no retry, feedback ``isSuccess: false``. Everything
else is transient: the message returns to the queue after a backoff, and on its last
receive before the DLQ the failure feedback is posted, only if this copy holds the
notification and knows it did not complete. A notification that no handler matches is
acknowledged without feedback (nobody processed it, so neither success nor failure is
true), counted as ``unhandled``.
"""

from __future__ import annotations

import json
import random
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from visma_webhooks.domain.batches import BatchScope, QueuedRecord
from visma_webhooks.domain.errors import ResourceHeld, ThrottledError, VismaError
from visma_webhooks.domain.handling import (
    MAX_RESULT_CHARS,
    Attempt,
    Feedback,
    HandlerStage,
    Plan,
    Visma,
    service_of,
)
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.ordering import ResourceStore
from visma_webhooks.domain.outcomes import (
    ALREADY_PROCESSED,
    Claim,
    ClaimStatus,
    NotificationState,
    Outcome,
    RecordResult,
)
from visma_webhooks.domain.parsing import ItemError, PayloadError
from visma_webhooks.domain.queueing import FORCE_ATTRIBUTE, QUARANTINE_KEY, WAITS_ATTRIBUTE, parse_quarantined
from visma_webhooks.domain.settings import ProcessorSettings
from visma_webhooks.notification_handlers import Registry

MAX_VISIBILITY_SECONDS = 43_200  # SQS maximum: 12 hours
MAIN_RUN = "main"


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
        state: NotificationState,
        resources: ResourceStore,
        registry: Registry,
        logger: Any,
    ):
        self.settings = settings
        self.visma = visma
        self.state = state
        self.resources = resources
        self.logger = logger
        self.feedback = Feedback(settings, visma)
        self.handlers = HandlerStage(settings, visma, resources, registry, logger, self.feedback)

    def batch(self, deadline: float | None = None) -> BatchScope:
        return BatchScope(self.visma, deadline)

    def process(self, record: QueuedRecord, scope: BatchScope) -> RecordResult:
        """Process one record; never raises (the result says whether to retry or wait)."""
        try:
            notification = self._notification(record)
        except _Permanent as exc:
            return self._invalid(record, str(exc))
        except _StillInvalid as exc:
            notification = Notification.model_construct(
                notification_id=exc.notification_id,
                tenant_id=exc.tenant_id,
                derived_id=exc.derived_id,
                source_format="legacy",
                event=None,
                resource_path=None,
            )
            if not exc.notification_id or not exc.tenant_id:
                return self._still_invalid(record, str(exc))
            return self._claimed(record, notification, scope, invalid=str(exc))
        nid, tenant = notification.notification_id, notification.tenant_id
        key = f"{tenant}#{nid}#{_run(record)}"
        earlier = scope.claim(key)
        if earlier is None:
            result = RecordResult(record.message_id, Outcome.RETRYING, nid, error="not processed")
            try:
                result = self._claimed(record, notification, scope)
            finally:
                scope.settle(key, result)
            result.attempts = record.attempts
            return result
        first: RecordResult = earlier.result()
        result = RecordResult(record.message_id, Outcome.DUPLICATE, nid, notification.event, tenant_id=tenant)
        if first.retry or first.wait:
            result.outcome, result.retry_after = first.outcome, first.retry_after
            result.error = "retried with an earlier copy in the same batch"
        else:
            result.found = first.found or first.outcome
            result.description = "an earlier copy in the batch was processed"
            self.state.note(tenant, nid, result)  # counted with the other absorbed copies
        return result

    # -- one claimed notification ---------------------------------------------------------

    def _claimed(
        self, record: QueuedRecord, notification: Notification, scope: BatchScope, invalid: str | None = None
    ) -> RecordResult:
        nid, tenant = notification.notification_id, notification.tenant_id
        result = RecordResult(record.message_id, Outcome.SUCCEEDED, nid, notification.event, tenant_id=tenant)
        turn: AbstractContextManager[object] = nullcontext()
        service = service_of(notification)
        if invalid is None and service and notification.resource_path:
            turn = scope.hold(tenant, service, notification.resource_path)
        with turn:  # records of one resource in a batch take turns, from the fetch to the outcome
            self._claim_and_run(record, notification, scope, result, invalid)
        return result

    def _claim_and_run(
        self,
        record: QueuedRecord,
        notification: Notification,
        scope: BatchScope,
        result: RecordResult,
        invalid: str | None,
    ) -> None:
        nid, tenant = notification.notification_id, notification.tenant_id
        run, owner = _run(record), f"{record.message_id}#{uuid.uuid4().hex[:12]}"
        plan, early = None, None
        # A first copy fetches before its claim, which then also takes the resource's lease
        # in the same request; a later one claims first, to fetch only for what is missing.
        first = record.receive_count == 1 and not record.attributes.get(WAITS_ATTRIBUTE)
        try:
            if invalid is None and first:
                plan = self.handlers.plan(notification, scope)
        except VismaError as exc:  # before the claim: recorded once the notification is claimed
            early = exc
        except Exception as exc:  # the budget's table failed: nothing is known, nothing written
            self._transient(record, notification, exc, result, None)
            return
        try:
            resource = plan.resource if plan is not None and early is None else None
            claim = self.state.claim(
                tenant,
                nid,
                run,
                owner=owner,
                until=scope.deadline,
                attempt=record.receive_count,
                message_id=record.message_id,
                summary=_summary(notification, record, invalid),
                resource=resource.claim() if resource is not None else None,
            )
        except Exception as exc:  # the state is unknown: never "gave up" on a guess
            self._transient(record, notification, exc, result, None)
            return
        if claim.status is not ClaimStatus.CLAIMED:
            self._refused(notification, claim.status, claim.found, claim.held_for, result)
            return
        attempt = Attempt(owner, scope.deadline, forced=run != MAIN_RUN, stages=dict(claim.stages))
        try:
            if early is not None:
                raise early
            if invalid is None and plan is None:
                plan, claim = self._plan_claimed(notification, scope, claim, attempt)
            self._stages(notification, plan, claim, attempt, result, invalid, run)
        except (ThrottledError, ResourceHeld) as exc:
            self._wait(notification, exc, result)
        except Exception as exc:  # transient: the message goes back to the queue
            self._transient(record, notification, exc, result, attempt)
        attempt.settle()
        self.state.finish(
            tenant, nid, run, owner=owner, result=result, stages=attempt.stages, release=attempt.release
        )

    def _plan_claimed(
        self, notification: Notification, scope: BatchScope, claim: Claim, attempt: Attempt
    ) -> tuple[Plan, Claim]:
        """A later copy's plan, made knowing what earlier ones did; then the resource's lease."""
        plan = self.handlers.plan(notification, scope, attempt)
        if plan.resource is not None:
            resource = plan.resource
            lease = self.resources.acquire(
                notification.tenant_id, resource.service, resource.path, attempt.owner, attempt.until
            )
            claim = replace(claim, lease=lease)
        return plan, claim

    def _stages(
        self,
        notification: Notification,
        plan: Plan | None,
        claim: Claim,
        attempt: Attempt,
        result: RecordResult,
        invalid: str | None,
        run: str,
    ) -> None:
        if invalid is not None or plan is None:
            reason = invalid or "not a notification"
            result.outcome, result.description, result.error = Outcome.FAILED, reason, reason
            self.visma.reserve(notification.tenant_id, int(self.feedback.due(notification, attempt)))
            result.feedback = self.feedback.post(notification, attempt, False, reason, reserved=True)
            return
        if plan.resource is not None and claim.lease is not None:
            plan.resource.hold(claim.lease, self.resources, attempt)

        def checkpoint() -> None:
            self.state.checkpoint(
                notification.tenant_id,
                notification.notification_id,
                run,
                owner=attempt.owner,
                stages=attempt.stages,
                release=attempt.release,
            )
            attempt.release = None

        stored = self.handlers.run(notification, plan, attempt, checkpoint)
        result.outcome = Outcome(stored["outcome"])
        result.description = stored.get("description", "")
        result.handlers = stored.get("handlers", {})
        result.feedback = stored.get("feedback")
        result.deleted = bool(stored.get("deleted"))

    def _refused(
        self,
        notification: Notification,
        status: ClaimStatus,
        found: Outcome | None,
        held_for: float,
        result: RecordResult,
    ) -> RecordResult:
        if status is ClaimStatus.COMPLETED:
            result.outcome, result.found = Outcome.DUPLICATE, found
            result.description = f"{ALREADY_PROCESSED}{found}"
        else:
            # The holder may hold it until its invocation's deadline: come back after that.
            self._wait(notification, ResourceHeld("another copy holds the notification", held_for), result)
        self.state.note(notification.tenant_id, notification.notification_id, result)
        return result

    # -- waits and failures -----------------------------------------------------------------

    def _wait(self, notification: Notification, exc: Exception, result: RecordResult) -> None:
        """Not a failure: a fresh copy comes back once the budget or the lease allows."""
        throttled = isinstance(exc, ThrottledError)
        wait = float(exc.retry_after if isinstance(exc, ThrottledError) else getattr(exc, "held_for", 0.0))
        result.outcome = Outcome.THROTTLED if throttled else Outcome.WAITING
        result.error = f"{type(exc).__name__}: {exc}"[:MAX_RESULT_CHARS]
        result.retry_after = min(float(wait) + random.uniform(0.5, 2.0), MAX_VISIBILITY_SECONDS)
        self.logger.info(
            "notification waits",
            extra={"notification_id": notification.notification_id, "outcome": result.outcome, "wait": wait},
        )

    def _transient(
        self,
        record: QueuedRecord,
        notification: Notification,
        exc: Exception,
        result: RecordResult,
        attempt: Attempt | None,
    ) -> RecordResult:
        result.outcome = Outcome.RETRYING
        result.error = f"{type(exc).__name__}: {exc}"[:MAX_RESULT_CHARS]
        result.retry_after = self._retry_after(record.attempts)
        self.logger.warning(
            "notification will be retried",
            extra={
                "notification_id": notification.notification_id,
                "error": result.error,
                "retry_after": result.retry_after,
            },
        )
        if record.attempts >= self.settings.max_receive_count and attempt is not None:
            result.feedback = self._gave_up(notification, attempt, record.attempts, result.error)
        return result

    def _gave_up(
        self, notification: Notification, attempt: Attempt, receives: int, error: str
    ) -> dict[str, Any] | None:
        """The failure feedback of the last receive: only while this copy holds the
        notification, which it claimed as not completed, and never after a success post."""
        if attempt.stages["feedback"].get("ok"):
            return dict(attempt.stages["feedback"]["ok"])
        description = f"gave up after {receives} attempts: {error}"
        try:
            self.visma.reserve(notification.tenant_id, int(self.feedback.due(notification, attempt)))
            return self.feedback.post(notification, attempt, False, description, reserved=True)
        except Exception as feedback_exc:  # the message still goes to the DLQ
            return {"posted": False, "is_success": False, "error": str(feedback_exc)[:200]}

    def _retry_after(self, receive_count: int) -> float:
        delay: float = self.settings.retry_base_seconds * 2.0 ** max(0, receive_count - 1)
        delay = min(delay, self.settings.retry_max_seconds) * random.uniform(0.8, 1.2)
        return min(delay, float(MAX_VISIBILITY_SECONDS))

    def _invalid(self, record: QueuedRecord, reason: str) -> RecordResult:
        self.logger.error(
            "message is not a valid notification", extra={"message_id": record.message_id, "reason": reason}
        )
        return RecordResult(
            record.message_id,
            Outcome.INVALID,
            record.attributes.get("notification_id"),
            error=reason,
            retry_after=self._retry_after(record.attempts),
        )

    def _still_invalid(self, record: QueuedRecord, reason: str) -> RecordResult:
        """Permanent, with no id or tenant to keep a history under: acknowledged."""
        self.logger.warning(
            "invalid notification acknowledged", extra={"message_id": record.message_id, "reason": reason}
        )
        return RecordResult(record.message_id, Outcome.FAILED, None, description=reason, error=reason)

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


def _run(record: QueuedRecord) -> str:
    """``main``, or a forced replay's own run."""
    force = record.attributes.get(FORCE_ATTRIBUTE)
    return f"force-{force}" if force else MAIN_RUN


def _summary(notification: Notification, record: QueuedRecord, invalid: str | None) -> dict[str, Any]:
    if invalid is not None:
        return {"tenant_id": notification.tenant_id, "body": record.body[:MAX_RESULT_CHARS]}
    summary: dict[str, Any] = {
        "tenant_id": notification.tenant_id,
        "event": notification.event,
        "service": notification.service,
        "resource_path": notification.resource_path,
    }
    if notification.api_client_id:
        summary["api_client_id"] = notification.api_client_id
    return summary
