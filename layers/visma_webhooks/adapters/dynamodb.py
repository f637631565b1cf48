"""DynamoDB adapters: stage guards on Powertools idempotency, and the outcome history.

Both live in the one ``IdempotencyTable`` (partition key ``id``, TTL on ``expiration``):
Powertools keeps its records under ``<stage key prefix>#<hash>``; the history of each
notification is the item ``outcome#<notification_id>``.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from visma_webhooks.domain.processing import RecordResult, StageInProgress

OUTCOME_PREFIX = "outcome#"


_templates: dict[tuple[str, int], DynamoDBPersistenceLayer] = {}
_templates_lock = threading.Lock()


def _template(table_name: str, client: Any) -> DynamoDBPersistenceLayer:
    """One persistence layer per (table, client), never configured: stage calls use copies.

    ``DynamoDBPersistenceLayer.__init__`` registers a User-Agent hook on the client it is
    given, every time: a layer made per stage call would pile up hooks on the shared
    client, so that each DynamoDB request ran all of them and carried a User-Agent that
    grew with every record since the cold start. The template keeps the client alive, so
    its ``id`` cannot be reused by another client.
    """
    key = (table_name, id(client))
    with _templates_lock:
        layer = _templates.get(key)
        if layer is None or layer.client is not client:
            layer = _templates[key] = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        return layer


class PowertoolsStageGuard:
    """Runs a stage at most once per key with Powertools idempotency (conditional writes).

    Each call uses its own persistence layer, a shallow copy of a template made once per
    client: Powertools stores the function name (the key prefix) on the layer when it
    configures it, so one instance shared by concurrent threads would mix up their keys.
    """

    def __init__(self, table_name: str, client: Any, ttl_seconds: int, lambda_context: Any = None):
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.lambda_context = lambda_context
        self._template = _template(table_name, client)

    def once(self, key: str, fn: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        ran = False

        def stage(data: dict[str, str]) -> dict[str, Any]:
            nonlocal ran
            ran = True
            return fn()

        config = IdempotencyConfig(event_key_jmespath="key", expires_after_seconds=self.ttl_seconds)
        if self.lambda_context is not None:
            config.register_lambda_context(
                self.lambda_context
            )  # in-progress records expire with the invocation
        persistence = copy.copy(self._template)  # unconfigured: configured by this call only
        guarded = idempotent_function(
            stage, data_keyword_argument="data", persistence_store=persistence, config=config, key_prefix=key
        )
        try:
            result = guarded(data={"key": key})
        except IdempotencyAlreadyInProgressError as exc:
            raise StageInProgress(key) from exc
        return result, ran


class DynamoDBOutcomeStore:
    """The history of each notification: attempts, handler results, feedback, outcome."""

    def __init__(self, table_name: str, client: Any, ttl_seconds: int):
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds

    def started(
        self, notification_id: str, attempt: int, message_id: str, summary: Mapping[str, Any]
    ) -> None:
        now = _now()
        names = {f"#{k}": k for k in summary}
        values = {f":{k}": _attr(v) for k, v in summary.items()}
        sets = ", ".join(f"#{k} = :{k}" for k in summary)
        self.client.update_item(
            TableName=self.table_name,
            Key={"id": {"S": OUTCOME_PREFIX + notification_id}},
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

    def finished(self, notification_id: str, result: RecordResult) -> None:
        now = _now()
        entry = {"at": now, "step": result.outcome.value, "detail": result.error or result.description}
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
        ):
            if value is not None:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = _attr(value)
        self.client.update_item(
            TableName=self.table_name,
            Key={"id": {"S": OUTCOME_PREFIX + notification_id}},
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames={"#history": "history"},
            ExpressionAttributeValues=values,
        )

    def get(self, notification_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table_name,
            Key={"id": {"S": OUTCOME_PREFIX + notification_id}},
            ConsistentRead=True,
        ).get("Item")
        return _plain({"M": item}) if item else None

    def get_many(self, notification_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The outcome records of ``notification_ids`` that exist, by notification id."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(notification_ids), 100):  # BatchGetItem's limit
            keys = [{"id": {"S": OUTCOME_PREFIX + i}} for i in notification_ids[start : start + 100]]
            request = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    record = _plain({"M": item})
                    found[str(record.get("notification_id"))] = record
                request = response.get("UnprocessedKeys") or {}
        return found

    def scan(self) -> list[dict[str, Any]]:
        """Every outcome record (for ``status``; the table is scanned page by page)."""
        records: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.table_name,
            FilterExpression="begins_with(id, :prefix)",
            ExpressionAttributeValues={":prefix": {"S": OUTCOME_PREFIX}},
        ):
            records.extend(_plain({"M": item}) for item in page.get("Items", []))
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
