"""What became of a queued notification: its outcome, and where its history is kept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from visma_webhooks.domain.ordering import Lease, ResourceClaim


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # permanent: not retried, failure feedback posted
    RETRYING = "retrying"  # transient: back on the queue after a backoff
    THROTTLED = "throttled"  # waiting for the tenant's Visma budget: re-enqueued with a delay
    WAITING = "waiting"  # another worker holds the notification or its resource: re-enqueued
    UNHANDLED = "unhandled"  # no handler matches the event
    ECHO = "echo"  # our own Visma client made the change: no handler opted in, no feedback
    UNCHANGED = "unchanged"  # the resource is as handlers last saw it: none opted in
    SUPERSEDED = "superseded"  # handlers already received a newer state of the resource
    DUPLICATE = "duplicate"  # already processed
    INVALID = "invalid"  # the message is not a notification; kept (it returns, then the DLQ)


RETRIED = frozenset({Outcome.RETRYING, Outcome.INVALID})  # a receive that counts toward the DLQ
WAITED = frozenset({Outcome.THROTTLED, Outcome.WAITING})  # not a failure: a fresh copy waits
FINAL = frozenset(Outcome) - RETRIED - WAITED  # the copy is done with: its message is deleted
COMPLETED = FINAL - {Outcome.DUPLICATE}  # the notification itself was processed
ALREADY_PROCESSED = "already processed: "  # a duplicate's description, followed by the outcome it found


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
    deleted: bool = False  # handlers were told the resource is gone
    tenant_id: str | None = None
    attempts: int = 1  # genuine attempts so far, this one included

    @property
    def retry(self) -> bool:
        """True when the message must stay on the queue (a batch item failure)."""
        return self.outcome in RETRIED

    @property
    def wait(self) -> bool:
        """True when a fresh copy of the message must wait ``retry_after`` seconds."""
        return self.outcome in WAITED


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"  # this copy holds the notification until its lease ends
    COMPLETED = "completed"  # the notification (this run of it) was processed already
    HELD = "held"  # another copy holds it right now


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    stages: dict[str, Any] = field(default_factory=dict)  # what earlier copies finished
    found: Outcome | None = None  # completed: its outcome
    held_for: float = 0.0  # held: seconds the holder may still hold it
    lease: Lease | None = None  # claimed with a resource: its lease (or who holds it)


class NotificationState(Protocol):
    """Each notification's one state item: its lease, the stages done, its history.

    ``run`` tells a forced replay's stages from the notification's own (``main``).
    """

    def claim(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        *,
        owner: str,
        until: float,
        attempt: int,
        message_id: str,
        summary: Mapping[str, Any],
        resource: ResourceClaim | None = None,
    ) -> Claim: ...

    def checkpoint(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        *,
        owner: str,
        stages: Mapping[str, Any],
        release: Any = None,
    ) -> None:
        """Record the handlers' results (and ``release``) before the feedback is posted."""
        ...

    def finish(
        self,
        tenant_id: str,
        notification_id: str,
        run: str,
        *,
        owner: str,
        result: RecordResult,
        stages: Mapping[str, Any],
        release: Any = None,
    ) -> None:
        """Record what became of this copy and give the lease back (and ``release``, the
        resource's lease, in the same write)."""
        ...

    def note(self, tenant_id: str, notification_id: str, result: RecordResult) -> None:
        """Add a copy's outcome to the history without holding the notification."""
        ...
