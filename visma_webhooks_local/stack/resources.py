"""The template's queues, table and secrets, created (or reused) in the emulated AWS."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from visma_webhooks_local.stack.spec import StackSpec
from visma_webhooks_local.stack.template import ResourceRef

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_secretsmanager import SecretsManagerClient
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.literals import QueueAttributeNameType


@dataclass
class Resources:
    """The physical resources made for the template's logical ones."""

    names: dict[str, str]  # logical id → physical name (queue name, table name, secret name)
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    table_name: str
    webhook_secret_arn: str
    visma_secret_arn: str
    _refs: dict[tuple[str, str | None], str] = field(default_factory=dict)

    def physical(self, ref: ResourceRef) -> str | None:
        """What ``!Ref``/``!GetAtt`` of a created resource evaluates to, if known."""
        return self._refs.get((ref.logical_id, ref.attribute))


def create_resources(
    spec: StackSpec,
    sqs: SQSClient,
    dynamodb: DynamoDBClient,
    secretsmanager: SecretsManagerClient,
    *,
    stack_name: str,
    webhook_secrets: list[str],
    visma_credentials: Mapping[str, Any],
) -> Resources:
    """Create (or reuse) the DLQ, the queue with its redrive policy, the table and the secrets."""
    names = {
        logical: f"{stack_name}-{logical}"
        for logical in (spec.queue.logical_id, spec.dlq.logical_id, spec.table.logical_id)
    }
    dlq_url = _queue(sqs, names[spec.dlq.logical_id], spec.dlq.attributes)
    dlq_arn = _queue_arn(sqs, dlq_url)
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec.max_receive_count)})
    attributes: dict[QueueAttributeNameType, str] = {**spec.queue.attributes, "RedrivePolicy": redrive}
    queue_url = _queue(sqs, names[spec.queue.logical_id], attributes)
    queue_arn = _queue_arn(sqs, queue_url)
    table = names[spec.table.logical_id]
    table_arn = _table(dynamodb, table, spec)
    webhook_arn = _secret(secretsmanager, f"{stack_name}/{spec.webhook_secret}", json.dumps(webhook_secrets))
    visma_arn = _secret(
        secretsmanager, f"{stack_name}/{spec.visma_secret}", json.dumps(dict(visma_credentials))
    )
    refs = {
        (spec.queue.logical_id, None): queue_url,
        (spec.queue.logical_id, "Arn"): queue_arn,
        (spec.queue.logical_id, "QueueName"): names[spec.queue.logical_id],
        (spec.queue.logical_id, "QueueUrl"): queue_url,
        (spec.dlq.logical_id, None): dlq_url,
        (spec.dlq.logical_id, "Arn"): dlq_arn,
        (spec.dlq.logical_id, "QueueName"): names[spec.dlq.logical_id],
        (spec.dlq.logical_id, "QueueUrl"): dlq_url,
        (spec.table.logical_id, None): table,
        (spec.table.logical_id, "Arn"): table_arn,
        (spec.webhook_secret, None): webhook_arn,
        (spec.webhook_secret, "Id"): webhook_arn,
        (spec.visma_secret, None): visma_arn,
        (spec.visma_secret, "Id"): visma_arn,
    }
    return Resources(names, queue_url, queue_arn, dlq_url, dlq_arn, table, webhook_arn, visma_arn, refs)


def function_environment(
    declared: Mapping[str, Any], resources: Resources, overrides: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The template's variables with resource references made local, then ``overrides``.

    Returns the environment and the names of variables left out (references to resources
    the local stack does not create).
    """
    environment: dict[str, str] = {}
    skipped: list[str] = []
    for name, value in declared.items():
        if isinstance(value, ResourceRef):
            physical = resources.physical(value)
            if physical is None:
                skipped.append(name)
                continue
            value = physical
        environment[name] = str(value)
    environment.update(overrides)
    return environment, skipped


def _queue(sqs: SQSClient, name: str, attributes: dict[QueueAttributeNameType, str]) -> str:
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if "QueueAlreadyExists" not in str(exc) and "QueueNameExists" not in str(exc):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url


def _queue_arn(sqs: SQSClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _table(dynamodb: DynamoDBClient, name: str, spec: StackSpec) -> str:
    try:
        description = dynamodb.create_table(
            TableName=name,
            KeySchema=spec.table.key_schema,
            AttributeDefinitions=spec.table.attribute_definitions,
            BillingMode="PAY_PER_REQUEST",
        )["TableDescription"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
        description = dynamodb.describe_table(TableName=name)["Table"]
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if spec.table.ttl_attribute:
        with contextlib.suppress(ClientError):  # already enabled on a reused table
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.table.ttl_attribute},
            )
    return description["TableArn"]


def _secret(secretsmanager: SecretsManagerClient, name: str, value: str) -> str:
    try:
        return secretsmanager.create_secret(Name=name, SecretString=value)["ARN"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceExistsException":
            raise
        return secretsmanager.put_secret_value(SecretId=name, SecretString=value)["ARN"]
