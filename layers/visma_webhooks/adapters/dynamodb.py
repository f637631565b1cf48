"""DynamoDB adapters: stage guards on Powertools idempotency, resource fingerprints, outcomes.

All live in the one ``IdempotencyTable`` (partition key ``id``, TTL on ``expiration``):
Powertools keeps its records under ``<stage key prefix>#<hash>``; the fingerprint of each
resource is the item ``fingerprint#<tenant>#<service>#<path>``; the history of each
notification is ``outcome#<tenant>#<notification_id>`` (:mod:`visma_webhooks.adapters.outcome_store`).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from visma_webhooks.domain.errors import StageInProgress

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from types_boto3_dynamodb import DynamoDBClient

FINGERPRINT_PREFIX = "fingerprint#"


_templates: dict[tuple[str, int], DynamoDBPersistenceLayer] = {}
_templates_lock = threading.Lock()


def _template(table_name: str, client: DynamoDBClient) -> DynamoDBPersistenceLayer:
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

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        ttl_seconds: int,
        lambda_context: LambdaContext | None = None,
    ):
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


class DynamoDBFingerprintStore:
    """The fingerprint of each resource as last handed to handlers (:mod:`visma_webhooks.domain.fingerprints`).

    Reads are consistent: a stale fingerprint could make a resource that changed back to
    an earlier state look unchanged. An item past its ``expiration`` counts as absent
    (DynamoDB deletes expired items late), so a resource not seen for the TTL is a change.
    """

    def __init__(self, table_name: str, client: DynamoDBClient, ttl_seconds: int):
        self.table_name = table_name
        self.client = client
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def _key(tenant_id: str, service: str, path: str) -> dict[str, Any]:
        return {"id": {"S": f"{FINGERPRINT_PREFIX}{tenant_id}#{service}#{path}"}}

    def get(self, tenant_id: str, service: str, path: str) -> str | None:
        item = self.client.get_item(
            TableName=self.table_name, Key=self._key(tenant_id, service, path), ConsistentRead=True
        ).get("Item")
        if not item or int(item.get("expiration", {}).get("N", "0")) <= time.time():
            return None
        return item.get("fingerprint", {}).get("S")

    def put(self, tenant_id: str, service: str, path: str, value: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                **self._key(tenant_id, service, path),
                "fingerprint": {"S": value},
                "expiration": {"N": str(int(time.time()) + self.ttl_seconds)},
            },
        )

    def forget(self, tenant_id: str, service: str, path: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=self._key(tenant_id, service, path))
