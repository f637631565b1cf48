"""Each resource's lease, watermark and fingerprint in the ``IdempotencyTable`` (:mod:`visma_webhooks.domain.ordering`).

The item ``resource#<tenant>#<service>#<path>`` holds ``lease_owner``/``lease_until``
(epoch seconds: the holder's invocation deadline), ``modified`` (the watermark) and
``fingerprint``. The lease is taken in the same transaction that claims the notification, on the
condition that the fetched state is newer than and differs from the one handlers last
received (:meth:`DynamoDBResourceStore.acquire_newer`); when that is refused, by one
conditional update that returns the state (:meth:`DynamoDBResourceStore.acquire`). It is
given back, with the new watermark and fingerprint, in the same transaction that records
the handlers' results (:mod:`visma_webhooks.adapters.notification_state`), so that a
crash can never leave a watermark without its results or the other way round.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from visma_webhooks.domain.ordering import Lease, ResourceState

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

RESOURCE_PREFIX = "resource#"


def resource_key(tenant_id: str, service: str, path: str) -> dict[str, Any]:
    return {"id": {"S": f"{RESOURCE_PREFIX}{tenant_id}#{service}#{path}"}}


def _state(item: dict[str, Any], now: float) -> ResourceState:
    if int(item.get("expiration", {}).get("N", "0")) <= now:  # expired: DynamoDB deletes it late
        return ResourceState()
    return ResourceState(
        fingerprint=item.get("fingerprint", {}).get("S"), modified=item.get("modified", {}).get("S")
    )


class DynamoDBResourceStore:
    def __init__(self, table_name: str, client: DynamoDBClient, ttl_seconds: int):
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds

    def acquire(self, tenant_id: str, service: str, path: str, owner: str, until: float) -> Lease:
        """The lease until ``until``, unless another owner holds it (then how long it may)."""
        now = time.time()
        try:
            item = self.client.update_item(
                TableName=self.table_name,
                Key=resource_key(tenant_id, service, path),
                UpdateExpression="SET lease_owner = :owner, lease_until = :until",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": f"{until:.3f}"},
                    ":now": {"N": f"{now:.3f}"},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )["Attributes"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            held: dict[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
            return Lease(False, held_for=max(0.0, float(held.get("lease_until", {}).get("N", "0")) - now))
        return Lease(True, _state(item, now))

    def acquire_newer(
        self, tenant_id: str, service: str, path: str, owner: str, until: float, state: ResourceState
    ) -> dict[str, Any]:
        """The transaction item taking the lease only if ``state`` is newer than, and differs
        from, what handlers last received (a refusal says neither which nor why)."""
        values: dict[str, Any] = {
            ":owner": {"S": owner},
            ":until": {"N": f"{until:.3f}"},
            ":now": {"N": f"{time.time():.3f}"},
            ":fp": {"S": state.fingerprint or ""},
        }
        condition = (
            "(attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner) "
            "AND (attribute_not_exists(fingerprint) OR fingerprint <> :fp)"
        )
        if state.modified is not None:
            condition += " AND (attribute_not_exists(modified) OR modified < :modified)"
            values[":modified"] = {"S": state.modified}
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": resource_key(tenant_id, service, path),
                "UpdateExpression": "SET lease_owner = :owner, lease_until = :until",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    def release(
        self, tenant_id: str, service: str, path: str, owner: str, state: ResourceState | None, gone: bool
    ) -> dict[str, Any]:
        """The transaction item that gives the lease back (and keeps ``state``, or forgets a gone one)."""
        values: dict[str, Any] = {":owner": {"S": owner}}
        sets: list[str] = []
        removes = ["lease_owner", "lease_until"]
        if gone:
            removes += ["fingerprint", "modified"]
        elif state is not None:
            values[":exp"] = {"N": str(int(time.time()) + self.ttl_seconds)}
            sets.append("expiration = :exp")
            for name in ("fingerprint", "modified"):
                value = getattr(state, name)
                if value is not None:
                    sets.append(f"{name} = :{name}")
                    values[f":{name}"] = {"S": value}
        expression = ("SET " + ", ".join(sets) + " " if sets else "") + "REMOVE " + ", ".join(removes)
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": resource_key(tenant_id, service, path),
                "UpdateExpression": expression,
                "ConditionExpression": "lease_owner = :owner",
                "ExpressionAttributeValues": values,
            }
        }
