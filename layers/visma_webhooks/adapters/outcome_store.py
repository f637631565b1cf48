"""The outcome history of each notification, in the ``IdempotencyTable``.

The item ``outcome#<tenant>#<notification_id>`` is written by :class:`DynamoDBOutcomeStore`
and read back as an :class:`OutcomeRecord` by everything that reports on it (``status``,
``inspect``, the demo, the soak). Visma's ids are unique per tenant only, so the key holds
the tenant; :meth:`DynamoDBOutcomeStore.find` still finds a notification by its id alone
(a scan: for the tooling, never for the processor).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from visma_webhooks.domain.outcomes import COMPLETED, FINAL, RecordResult

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
        plain: dict[str, Any] = _plain({"M": item})
        text = {k: None if plain.get(k) is None else str(plain[k]) for k in _TEXT_FIELDS}
        feedback = plain.get("feedback")
        return cls(
            notification_id=str(plain.get("notification_id") or ""),
            history=tuple(
                HistoryEntry.from_plain(e) for e in plain.get("history") or [] if isinstance(e, dict)
            ),
            receive_count=int(plain.get("receive_count") or 0),
            attempts=int(plain.get("attempts") or 0),
            handlers=dict(plain.get("handlers") or {}),
            feedback=dict(feedback) if isinstance(feedback, dict) else None,
            item=plain,
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
    """The history of each notification: attempts, handler results, feedback, outcome."""

    def __init__(self, table_name: str, client: DynamoDBClient, ttl_seconds: int):
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds

    def started(
        self,
        tenant_id: str,
        notification_id: str,
        attempt: int,
        message_id: str,
        summary: Mapping[str, Any],
    ) -> None:
        now = _now()
        names = {f"#{k}": k for k in summary}
        values = {f":{k}": _attr(v) for k, v in summary.items()}
        sets = ", ".join(f"#{k} = :{k}" for k in summary)
        self.client.update_item(
            TableName=self.table_name,
            Key=outcome_key(tenant_id, notification_id),
            UpdateExpression=(
                f"SET {sets + ', ' if sets else ''}notification_id = :nid, first_seen = if_not_exists(first_seen, :now), "
                "updated_at = :now, receive_count = :attempt, last_message_id = :mid, expiration = :exp, "
                "#history = list_append(if_not_exists(#history, :empty), :entry) ADD attempts :one"
            ),
            ExpressionAttributeNames={**names, "#history": "history"},
            ExpressionAttributeValues={
                **values,
                ":nid": {"S": notification_id},
                ":now": {"S": now},
                ":attempt": {"N": str(attempt)},
                ":mid": {"S": message_id},
                ":exp": {"N": str(int(time.time()) + self.ttl_seconds)},
                ":empty": {"L": []},
                ":entry": {"L": [_attr({"at": now, "step": "received", "receive_count": attempt})]},
                ":one": {"N": "1"},
            },
        )

    def finished(self, tenant_id: str, notification_id: str, result: RecordResult) -> None:
        now = _now()
        entry: dict[str, Any] = {
            "at": now,
            "step": result.outcome.value,
            "detail": result.error or result.description,
        }
        if result.found is not None:
            entry["found"] = result.found.value
        values: dict[str, Any] = {
            ":outcome": {"S": result.outcome.value},
            ":now": {"S": now},
            ":entry": {"L": [_attr(entry)]},
            ":empty": {"L": []},
        }
        sets = [
            "outcome = :outcome",
            "updated_at = :now",
            "#history = list_append(if_not_exists(#history, :empty), :entry)",
        ]
        for name, value in (
            ("handlers", result.handlers or None),
            ("feedback", result.feedback),
            ("description", result.description or None),
            ("last_error", result.error),
            ("deleted", result.deleted or None),
        ):
            if value is not None:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = _attr(value)
        self.client.update_item(
            TableName=self.table_name,
            Key=outcome_key(tenant_id, notification_id),
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames={"#history": "history"},
            ExpressionAttributeValues=values,
        )

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _attr(value: Any) -> dict[str, Any]:
    """A plain value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): _attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_attr(v) for v in value]}
    return {"S": str(value)}


def _plain(attr: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a plain value."""
    ((kind, value),) = attr.items()
    if kind == "M":
        return {k: _plain(v) for k, v in value.items()}
    if kind == "L":
        return [_plain(v) for v in value]
    if kind == "N":
        number = float(value)
        return int(number) if number.is_integer() else number
    if kind == "NULL":
        return None
    return value
