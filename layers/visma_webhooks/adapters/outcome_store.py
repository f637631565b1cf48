"""The outcome history of each notification, in the ``IdempotencyTable``.

The item ``outcome#<tenant>#<notification_id>`` is written by the processor
(:mod:`visma_webhooks.adapters.notification_state`) and read back as an :class:`OutcomeRecord` by everything that reports on it (``status``,
``inspect``, the demo, the soak). Visma's ids are unique per tenant only, so the key holds
the tenant; :meth:`DynamoDBOutcomeStore.find` still finds a notification by its id alone
(a scan: for the tooling, never for the processor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from visma_webhooks.domain.outcomes import COMPLETED, FINAL

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_dynamodb.type_defs import KeysAndAttributesOutputTypeDef, KeysAndAttributesTypeDef

OUTCOME_PREFIX = "outcome#"


def outcome_key(tenant_id: str, notification_id: str) -> dict[str, Any]:
    return {"id": {"S": f"{OUTCOME_PREFIX}{tenant_id}#{notification_id}"}}


@dataclass(frozen=True)
class HistoryEntry:
    """One step of a notification's history: a copy received, or what became of it."""

    step: str
    at: str = ""
    detail: str | None = None
    receive_count: int | None = None
    found: str | None = None  # a duplicate: the outcome the notification already had

    @classmethod
    def from_plain(cls, entry: Mapping[str, Any]) -> HistoryEntry:
        count = entry.get("receive_count")
        return cls(
            step=str(entry.get("step") or ""),
            at=str(entry.get("at") or ""),
            detail=None if entry.get("detail") is None else str(entry["detail"]),
            receive_count=int(count) if isinstance(count, int | float) else None,
            found=None if entry.get("found") is None else str(entry["found"]),
        )


@dataclass(frozen=True)
class OutcomeRecord:
    """A notification's history item, as :class:`DynamoDBOutcomeStore` wrote it.

    ``outcome`` is the latest copy's; :attr:`effective_outcome` is the notification's own.
    """

    notification_id: str
    outcome: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    tenant_id: str | None = None
    event: str | None = None
    resource_path: str | None = None
    first_seen: str | None = None
    updated_at: str | None = None
    receive_count: int = 0
    attempts: int = 0
    last_message_id: str | None = None
    handlers: dict[str, Any] = field(default_factory=dict)
    feedback: dict[str, Any] | None = None
    description: str | None = None
    last_error: str | None = None
    item: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole item, as stored

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> OutcomeRecord:
        """From a DynamoDB item (attribute values) of the outcome store."""
        values: dict[str, Any] = plain({"M": item})
        text = {k: None if values.get(k) is None else str(values[k]) for k in _TEXT_FIELDS}
        feedback = values.get("feedback")
        return cls(
            notification_id=str(values.get("notification_id") or ""),
            history=tuple(
                HistoryEntry.from_plain(e) for e in values.get("history") or [] if isinstance(e, dict)
            ),
            receive_count=int(values.get("receive_count") or 0),
            attempts=int(values.get("attempts") or 0),
            handlers=dict(values.get("handlers") or {}),
            feedback=dict(feedback) if isinstance(feedback, dict) else None,
            item=values,
            **text,
        )

    @property
    def effective_outcome(self) -> str:
        """The notification's own outcome, whatever its copies appended.

        The latest completed step wins (a ``retrying`` after ``succeeded`` is a sibling
        copy that found the notification held; a forced replay's later completion counts).
        With none, a copy absorbed as a duplicate names the outcome it found (a crash
        between the notification's stage and its history write leaves only that); else the
        latest step past ``received`` says where it is.
        """
        steps = [e.step for e in self.history]
        for step in reversed(steps):
            if step in COMPLETED:
                return step
        for entry in reversed(self.history):
            if entry.step == "duplicate" and entry.found:
                return entry.found
        for step in reversed(steps):
            if step not in ("", "received", "duplicate"):
                return step
        return "in progress" if self.history else self.outcome or "in progress"

    @property
    def duplicates_absorbed(self) -> int:
        """Copies acknowledged as duplicates of this notification."""
        return sum(1 for e in self.history if e.step == "duplicate")

    @property
    def final_steps(self) -> list[str]:
        """The outcome of each copy that was done with, in the order they were written."""
        return [e.step for e in self.history if e.step in FINAL]

    @property
    def completed(self) -> bool:
        """The history holds the step that completed the notification."""
        return any(e.step in COMPLETED for e in self.history)


_TEXT_FIELDS = (
    "outcome",
    "tenant_id",
    "event",
    "resource_path",
    "first_seen",
    "updated_at",
    "last_message_id",
    "description",
    "last_error",
)


class DynamoDBOutcomeStore:
    """Reads the history of each notification: attempts, handler results, feedback, outcome."""

    def __init__(self, table_name: str, client: DynamoDBClient, ttl_seconds: int):
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds

    def get(self, notification_id: str, tenant_id: str | None = None) -> OutcomeRecord | None:
        """The tenant's notification; without a tenant, the latest updated record of that id."""
        if tenant_id is None:
            found = self.find(notification_id)
            return found[0] if found else None
        item = self.client.get_item(
            TableName=self.table_name, Key=outcome_key(tenant_id, notification_id), ConsistentRead=True
        ).get("Item")
        return OutcomeRecord.from_item(item) if item else None

    def find(self, notification_id: str) -> list[OutcomeRecord]:
        """Every tenant's record of ``notification_id``, the latest updated first (a scan)."""
        records = self._scan(
            "begins_with(id, :prefix) AND notification_id = :nid", {":nid": {"S": notification_id}}
        )
        return sorted(records, key=lambda r: r.updated_at or "", reverse=True)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], OutcomeRecord]:
        """The outcome records of the (tenant, notification id) ``keys`` that exist, by key."""
        found: dict[tuple[str, str], OutcomeRecord] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):  # BatchGetItem's limit
            batch = [outcome_key(t, n) for t, n in unique[start : start + 100]]
            request: Mapping[str, KeysAndAttributesTypeDef | KeysAndAttributesOutputTypeDef] = {
                self.table_name: {"Keys": batch, "ConsistentRead": True}
            }
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    record = OutcomeRecord.from_item(item)
                    found[(record.tenant_id or "", record.notification_id)] = record
                request = response.get("UnprocessedKeys") or {}
        return found

    def scan(self) -> list[OutcomeRecord]:
        """Every outcome record (for ``status``; the table is scanned page by page)."""
        return self._scan("begins_with(id, :prefix)", {})

    def _scan(self, condition: str, values: Mapping[str, Any]) -> list[OutcomeRecord]:
        records: list[OutcomeRecord] = []
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.table_name,
            FilterExpression=condition,
            ExpressionAttributeValues={":prefix": {"S": OUTCOME_PREFIX}, **values},
        ):
            records.extend(OutcomeRecord.from_item(item) for item in page.get("Items", []))
        return records


def plain(attr: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a plain value."""
    ((kind, value),) = attr.items()
    if kind == "M":
        return {k: plain(v) for k, v in value.items()}
    if kind == "L":
        return [plain(v) for v in value]
    if kind == "N":
        number = float(value)
        return int(number) if number.is_integer() else number
    if kind == "NULL":
        return None
    return value
