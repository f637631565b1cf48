"""Queue messages for notifications and quarantined items, and batched enqueueing.

Message bodies are JSON; attributes carry ``event``, ``tenant_id`` and
``notification_id`` so that replay and filters never need to parse bodies.

Every message is sent with ``MessageGroupId`` = its tenant (:func:`group_id`): on a
standard queue that is how SQS fair queues tell tenants apart, so that one tenant's
backlog does not delay the others' notifications. A message whose tenant is unknown (a
quarantined item without one) goes to the fixed group :data:`UNKNOWN_GROUP`.

A quarantined item keeps, besides the item and its reasons, the delivery's ``x-vwd-*``
metadata and the item's ``index`` among the delivery's ``count`` items: a replay
re-parses it with all three (:func:`parse_quarantined`), so an item that had the derived
id ``<header id>:<index>`` gets that id again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.parsing import MAX_ITEMS, PayloadError, Rejection, parse_item
from visma_webhooks.domain.resources import ResourceRules

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 1_048_576  # SendMessageBatch: 1 MiB for all bodies and attributes together
MAX_MESSAGE_BYTES = 1_048_576  # one SQS message, body and attributes
QUARANTINE_KEY = "quarantine"
REJECTION_ATTRIBUTE = "rejection_reason"
FORCE_ATTRIBUTE = "force"
WAITS_ATTRIBUTE = "waits"  # how many times a message was put back to wait (it has run before)
FAILURES_ATTRIBUTE = "failures"  # genuine failures of the copies a waiting copy replaced
UNKNOWN_GROUP = "unknown"  # the fair-queue group of messages whose tenant is not known
_GROUP_ID = re.compile(r"^[!-~]{1,128}$")  # what SQS accepts as a MessageGroupId


class EnqueueError(RuntimeError):
    """Some messages were not acknowledged by the queue after every retry."""

    def __init__(self, failed: Sequence[str], detail: str = ""):
        self.failed = list(failed)
        super().__init__(f"{len(self.failed)} message(s) not acknowledged{': ' + detail if detail else ''}")


@dataclass(frozen=True)
class Message:
    """One queue message: an id unique within its batch, a JSON body, string attributes, its group."""

    id: str
    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    group_id: str = UNKNOWN_GROUP

    @property
    def size(self) -> int:
        attrs = sum(len(k.encode()) + len(v.encode()) + len("String") for k, v in self.attributes.items())
        return len(self.body.encode("utf-8")) + attrs


class BatchSender(Protocol):
    """Sends up to ten messages in one call; returns the ids of the entries that failed."""

    def send_batch(self, messages: Sequence[Message]) -> list[str]: ...


def dumps(data: Any) -> str:
    """Compact JSON that SQS accepts (it refuses the non-characters U+FFFE and U+FFFF)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


def group_id(tenant_id: str | None) -> str:
    """The fair-queue group (``MessageGroupId``) of a tenant's messages: the tenant id itself.

    No tenant → :data:`UNKNOWN_GROUP`. A tenant id that SQS would refuse as a group id
    (over 128 characters, or not printable ASCII) is replaced by its SHA-256, so the
    tenant still has one group of its own and the message is not refused.
    """
    if not tenant_id:
        return UNKNOWN_GROUP
    if _GROUP_ID.match(tenant_id):
        return tenant_id
    return "sha256:" + hashlib.sha256(tenant_id.encode("utf-8")).hexdigest()


def notification_message(index: int, notification: Notification) -> Message:
    attributes = {
        "event": notification.event,
        "tenant_id": notification.tenant_id,
        "notification_id": notification.notification_id,
        "source_format": notification.source_format,
    }
    body = dumps(notification.model_dump(mode="json"))
    return Message(f"n{index}", body, attributes, group_id(notification.tenant_id))


def quarantine_message(rejection: Rejection, metadata: Mapping[str, str]) -> Message:
    """A rejected item, kept whole with its reasons and its place in the delivery (for the DLQ)."""
    body = {
        QUARANTINE_KEY: {
            "reasons": list(rejection.reasons),
            "index": rejection.index,
            "count": rejection.count,
            "metadata": dict(metadata),
            "received_at": datetime.now(UTC).isoformat(),
            "item": rejection.raw,
        }
    }
    attributes = {REJECTION_ATTRIBUTE: attribute_text(rejection.reasons[0])}
    if rejection.notification_id:
        attributes["notification_id"] = rejection.notification_id
    if rejection.tenant_id:
        attributes["tenant_id"] = rejection.tenant_id
    return Message(f"q{rejection.index}", dumps(body), attributes, group_id(rejection.tenant_id))


def parse_quarantined(body: Mapping[str, Any], rules: ResourceRules) -> Notification:
    """A quarantine message's body (decoded) → the notification its item is under ``rules`` now.

    Raises :class:`PayloadError` when ``body`` is not a quarantine record (no object item,
    metadata that is not text, an impossible index or count) and
    :class:`~visma_webhooks.domain.parsing.ItemError` when the item is still invalid. A
    record without ``count`` (written before it was kept) counts as ``index + 1`` items:
    the ids it gives stay distinct.
    """
    record = body.get(QUARANTINE_KEY)
    if not isinstance(record, Mapping):
        raise PayloadError([f"the message has no {QUARANTINE_KEY!r} object"])
    item, metadata = record.get("item"), record.get("metadata") or {}
    if not isinstance(item, dict):
        raise PayloadError(["quarantined item is not an object"])
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise PayloadError(["quarantined metadata is not an object of strings"])
    index: Any = record.get("index", 0)
    count: Any = record.get("count", index + 1 if _whole(index) else None)
    if not (_whole(index) and _whole(count) and 0 <= index < count <= MAX_ITEMS):
        raise PayloadError([f"quarantined index {index!r} of {count!r} items is impossible"])
    return parse_item(item, metadata, rules, index=index, count=count)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def message_attribute(message: Mapping[str, Any], name: str) -> str | None:
    """A string attribute of a received SQS message, or None."""
    value = (message.get("MessageAttributes") or {}).get(name)
    return value.get("StringValue") if isinstance(value, dict) else None


def attribute_text(text: str, limit: int = 256) -> str:
    """``text`` as printable ASCII (other characters backslash-escaped), cut to ``limit``.

    Reasons may quote the payload; SQS refuses attribute values with control characters,
    U+FFFE or U+FFFF, and a log line must not be forged by a CR/LF taken from a payload.
    """
    return text.encode("unicode_escape").decode("ascii")[:limit]


def batches(messages: Sequence[Message]) -> Iterator[list[Message]]:
    """Split into SendMessageBatch calls: ≤10 entries and ≤1 MiB each, order kept."""
    batch: list[Message] = []
    size = 0
    for message in messages:
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + message.size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += message.size
    if batch:
        yield batch


def enqueue(
    sender: BatchSender,
    messages: Sequence[Message],
    *,
    attempts: int = 3,
    backoff: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Send every message, retrying failed entries; returns the number of calls made.

    Raises :class:`EnqueueError` naming the entries still failing after ``attempts``.
    """
    calls = 0
    for batch in batches(messages):
        pending = batch
        for attempt in range(attempts):
            calls += 1
            failed = set(sender.send_batch(pending))
            pending = [m for m in pending if m.id in failed]
            if not pending:
                break
            if attempt + 1 < attempts:
                sleep(backoff * 2**attempt)
        if pending:
            raise EnqueueError([m.id for m in pending])
    return calls
