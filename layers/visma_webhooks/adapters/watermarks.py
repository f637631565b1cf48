"""Reconciliation cursors and the processor's resource watermarks, in the ``IdempotencyTable``.

* ``reconcile#<tenant>#<service>#<entity>`` and ``backfill#<tenant>#<service>#<entity>``
  hold a :class:`~visma_webhooks.domain.reconciling.Cursor`: the watermark, a pass under
  way (its filter, cutoff and next page) and its counts, with a ``version``. A cursor is
  written with a conditional put on the version it was read with, so two runs on one
  entity never both advance it. It carries no TTL: a watermark must outlive quiet months.
* ``reconcile#index`` lists every cursor's ``<kind>#<tenant>#<service>#<entity>`` (a string
  set, added to once per cursor), so that ``visma-webhooks status`` finds them all with one
  read and a batch, without scanning the table.
* The processor's resource items (:func:`~visma_webhooks.adapters.resource_store.resource_key`)
  are read with ``BatchGetItem``, 100 keys at a time, for their ``modified`` watermark.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from visma_webhooks.adapters.resource_store import resource_key
from visma_webhooks.domain.reconciliation import CursorConflict, Kind
from visma_webhooks.domain.reconciling import Cursor, Entity

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

INDEX_KEY = {"id": {"S": "reconcile#index"}}
TENANTS_SEEN_KEY = {"id": {"S": "tenants#seen"}}  # kept by the processor's budget adapter
MAX_BATCH_GET = 100
MAX_UNPROCESSED_ROUNDS = 8
_TEXT = {f.name for f in fields(Cursor) if f.type in ("str | None", "str")}
_NUMBERS = {f.name for f in fields(Cursor)} - _TEXT


def cursor_name(kind: Kind, tenant_id: str, entity: Entity) -> str:
    return f"{kind}#{tenant_id}#{entity.service}#{entity.name}"


def to_item(cursor: Cursor) -> dict[str, Any]:
    item: dict[str, Any] = {name: {"N": str(getattr(cursor, name))} for name in _NUMBERS}
    item |= {name: {"S": getattr(cursor, name)} for name in _TEXT if getattr(cursor, name) is not None}
    return item


def from_item(item: dict[str, Any] | None) -> Cursor:
    if not item:
        return Cursor()
    values: dict[str, Any] = {n: int(item[n]["N"]) for n in _NUMBERS if "N" in item.get(n, {})}
    values |= {n: item[n]["S"] for n in _TEXT if "S" in item.get(n, {})}
    return Cursor(**values)


class DynamoDBCursorStore:
    """:class:`~visma_webhooks.domain.reconciliation.CursorStore` on the stack's table."""

    def __init__(self, table_name: str, client: DynamoDBClient):
        self.table_name = table_name
        self.client = client
        self.requests = 0  # DynamoDB requests made

    def load(self, kind: Kind, tenant_id: str, entity: Entity) -> Cursor:
        self.requests += 1
        key = {"id": {"S": cursor_name(kind, tenant_id, entity)}}
        return from_item(
            self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
        )

    def save(self, kind: Kind, tenant_id: str, entity: Entity, cursor: Cursor) -> Cursor:
        name = cursor_name(kind, tenant_id, entity)
        stored = replace(cursor, version=cursor.version + 1)
        item = {"id": {"S": name}, "tenant_id": {"S": tenant_id}, "entity": {"S": entity.name}} | to_item(
            stored
        )
        condition = "attribute_not_exists(id)" if cursor.version == 0 else "version = :version"
        extra: dict[str, Any] = {}
        if cursor.version:
            extra["ExpressionAttributeValues"] = {":version": {"N": str(cursor.version)}}
        self.requests += 1
        try:
            self.client.put_item(TableName=self.table_name, Item=item, ConditionExpression=condition, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise CursorConflict(name) from None
            raise
        if cursor.version == 0:
            self._index(name)
        return stored

    def _index(self, name: str) -> None:
        self.requests += 1
        self.client.update_item(
            TableName=self.table_name,
            Key=INDEX_KEY,
            UpdateExpression="ADD cursors :name",
            ExpressionAttributeValues={":name": {"SS": [name]}},
        )

    def seen(self, tenant_id: str, service: str, paths: Sequence[str]) -> dict[str, str | None]:
        keys = {resource_key(tenant_id, service, p)["id"]["S"]: p for p in paths}
        seen: dict[str, str | None] = dict.fromkeys(paths)
        now = time.time()
        for item in self._batch_get(list(keys), ("id", "modified", "expiration")):
            if int(item.get("expiration", {}).get("N", "0")) > now:  # expired: the processor ignores it too
                seen[keys[item["id"]["S"]]] = item.get("modified", {}).get("S")
        return seen

    def _batch_get(self, ids: list[str], attributes: Sequence[str]) -> list[dict[str, Any]]:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}  # some are reserved words
        items: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_BATCH_GET):
            pending: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{"id": {"S": i}} for i in ids[start : start + MAX_BATCH_GET]],
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                    "ConsistentRead": True,
                }
            }
            for round_ in range(MAX_UNPROCESSED_ROUNDS):
                self.requests += 1
                answer = self.client.batch_get_item(RequestItems=pending)
                items += answer.get("Responses", {}).get(self.table_name, [])
                pending = dict(answer.get("UnprocessedKeys") or {})
                if not pending:
                    break
                time.sleep(0.05 * 2**round_)
            else:
                raise RuntimeError("DynamoDB left keys unprocessed after every retry")
        return items

    def tenants_seen(self) -> set[str]:
        """The tenants that made Visma calls recently (the processor's budget adapter keeps them)."""
        self.requests += 1
        item = self.client.get_item(TableName=self.table_name, Key=TENANTS_SEEN_KEY).get("Item") or {}
        return set(item.get("tenants", {}).get("SS", []))

    def cursors(self) -> dict[str, Cursor]:
        """Every cursor by its name (``<kind>#<tenant>#<service>#<entity>``), for status."""
        self.requests += 1
        index = self.client.get_item(TableName=self.table_name, Key=INDEX_KEY).get("Item") or {}
        names = sorted(index.get("cursors", {}).get("SS", []))
        return {item["id"]["S"]: from_item(item) for item in self._batch_get(names, _ALL)}


_ALL = ("id", *sorted(_TEXT | _NUMBERS))
