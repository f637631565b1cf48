"""What became of a queued notification: its outcome, and where its history is kept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # permanent: not retried, failure feedback posted
    RETRYING = "retrying"  # transient: back on the queue after a backoff
    THROTTLED = "throttled"  # Visma asked us to wait: back on the queue after that wait
    UNHANDLED = "unhandled"  # no handler matches the event
    ECHO = "echo"  # our own Visma client made the change: no handler opted in, no feedback
    UNCHANGED = "unchanged"  # the resource is as handlers last saw it: none opted in
    DUPLICATE = "duplicate"  # already processed
    INVALID = "invalid"  # the message is not a notification; kept (it returns, then the DLQ)


RETRIED = frozenset({Outcome.RETRYING, Outcome.THROTTLED, Outcome.INVALID})
FINAL = frozenset(Outcome) - RETRIED  # the copy is done with: its message is deleted
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

    @property
    def retry(self) -> bool:
        """True when the message must stay on the queue (a batch item failure)."""
        return self.outcome in RETRIED


class OutcomeStore(Protocol):
    """Where the history of each notification is kept (for ``status`` and ``inspect``), by tenant and id."""

    def started(
        self,
        tenant_id: str,
        notification_id: str,
        attempt: int,
        message_id: str,
        summary: Mapping[str, Any],
    ) -> None: ...

    def finished(self, tenant_id: str, notification_id: str, result: RecordResult) -> None: ...
