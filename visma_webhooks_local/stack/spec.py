"""What the local stack builds, read from ``template.yaml``: queues, table, secrets, functions.

The resources are found by their type and wiring (the queue with a redrive policy and the
DLQ it names; the table and secrets the functions' environment references), so that a
renamed logical id does not break the local stack. What the local stack needs and the
template lacks is a :class:`TemplateError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visma_webhooks_local.stack.template import ResourceRef, Template, TemplateError

if TYPE_CHECKING:
    from types_boto3_dynamodb.type_defs import AttributeDefinitionTypeDef, KeySchemaElementTypeDef
    from types_boto3_sqs.literals import QueueAttributeNameType

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
SECRET_TYPE = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type
QUEUE_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
)
LAMBDA_DEFAULT_TIMEOUT = 3


@dataclass
class QueueSpec:
    logical_id: str
    attributes: dict[QueueAttributeNameType, str]


@dataclass
class TableSpec:
    logical_id: str
    key_schema: list[KeySchemaElementTypeDef]
    attribute_definitions: list[AttributeDefinitionTypeDef]
    ttl_attribute: str | None


@dataclass
class FunctionSpec:
    logical_id: str
    timeout: float
    environment: dict[str, Any]  # values are strings or ResourceRefs; what cannot be resolved is left out


@dataclass
class SourceMappingSpec:
    """The processor's SQS event source mapping."""

    batch_size: int = 10
    batching_window: float = 0.0


@dataclass
class StackSpec:
    queue: QueueSpec
    dlq: QueueSpec
    max_receive_count: int
    table: TableSpec
    webhook_secret: str
    visma_secret: str
    ingest: FunctionSpec
    processor: FunctionSpec
    mapping: SourceMappingSpec

    @classmethod
    def from_template(
        cls,
        template: Template,
        *,
        max_receive_count: int | None = None,
        visibility_timeout: int | None = None,
        processor_timeout: float | None = None,
    ) -> StackSpec:
        """The stack as the template declares it, with the given local overrides."""
        queue_id, dlq_id = _queues(template)
        redrive = template.prop(queue_id, "RedrivePolicy") or {}
        receives = int(max_receive_count or redrive.get("maxReceiveCount") or 0)
        if receives < 1:
            raise TemplateError(f"{queue_id} has no RedrivePolicy maxReceiveCount")
        queue = QueueSpec(queue_id, _queue_attributes(template, queue_id))
        if visibility_timeout is not None:
            queue.attributes["VisibilityTimeout"] = str(int(visibility_timeout))
        dlq = QueueSpec(dlq_id, _queue_attributes(template, dlq_id))

        ingest_id = _function(template, "HttpApi", "IngestFunction")
        processor_id = _function(template, "SQS", "ProcessorFunction")
        ingest = _function_spec(template, ingest_id)
        processor = _function_spec(template, processor_id)
        if processor_timeout is not None:
            processor.timeout = float(processor_timeout)

        return cls(
            queue=queue,
            dlq=dlq,
            max_receive_count=receives,
            table=_table(
                template, _referenced(template, processor, "IDEMPOTENCY_TABLE", "AWS::DynamoDB::Table")
            ),
            webhook_secret=_referenced(template, ingest, "WEBHOOK_SECRET_ARN", SECRET_TYPE),
            visma_secret=_referenced(template, processor, "VISMA_CLIENT_SECRET_ARN", SECRET_TYPE),
            ingest=ingest,
            processor=processor,
            mapping=_mapping(template, processor_id),
        )


def _queues(template: Template) -> tuple[str, str]:
    """(queue, DLQ) logical ids: the queue whose RedrivePolicy names the DLQ."""
    candidates = []
    for name in template.of_type("AWS::SQS::Queue"):
        target = template.prop(name, "RedrivePolicy", "deadLetterTargetArn")
        if isinstance(target, ResourceRef):
            candidates.append((name, target.logical_id))
    if not candidates:
        raise TemplateError("the template has no SQS queue with a RedrivePolicy to a DLQ in the template")
    preferred = [c for c in candidates if c[0] == "NotificationsQueue"]
    return (preferred or candidates)[0]


def _queue_attributes(template: Template, logical_id: str) -> dict[QueueAttributeNameType, str]:
    attributes: dict[QueueAttributeNameType, str] = {}
    for name in QUEUE_ATTRIBUTES:
        value = template.prop(logical_id, name)
        if value is not None:
            attributes[name] = str(value)
    sse = template.prop(logical_id, "SqsManagedSseEnabled")
    if sse is not None:
        attributes["SqsManagedSseEnabled"] = str(sse).lower()
    return attributes


def _function(template: Template, event_type: str, preferred: str) -> str:
    """``preferred`` if the template has it, else the function subscribed to an ``event_type`` event."""
    functions = template.of_type(*FUNCTION_TYPES)
    if preferred in functions:
        return preferred
    for name in functions:
        try:
            events = template.prop(name, "Events") or {}
        except TemplateError:
            continue
        if any(isinstance(e, dict) and e.get("Type") == event_type for e in events.values()):
            return name
    raise TemplateError(f"the template has no {preferred} (nor a function with a {event_type} event)")


def _function_spec(template: Template, logical_id: str) -> FunctionSpec:
    """The function's timeout and environment, the ``Globals`` merged in (values resolved one by one)."""
    timeout = template.prop(logical_id, "Timeout", default=template.global_prop("Function", "Timeout"))
    variables: dict[str, Any] = {
        **(
            (template.data.get("Globals") or {}).get("Function", {}).get("Environment", {}).get("Variables")
            or {}
        ),
        **(
            (template.resources[logical_id].get("Properties") or {}).get("Environment", {}).get("Variables")
            or {}
        ),
    }
    environment: dict[str, Any] = {}
    for key, raw in variables.items():
        try:
            value = template.resolve(raw)
        except TemplateError:
            continue  # e.g. a !Sub over a resource's attributes: not needed locally
        if isinstance(value, bool):
            value = str(value).lower()
        environment[key] = value if isinstance(value, ResourceRef) else str(value)
    return FunctionSpec(
        logical_id, float(timeout if timeout is not None else LAMBDA_DEFAULT_TIMEOUT), environment
    )


def _referenced(template: Template, function: FunctionSpec, variable: str, resource_type: str) -> str:
    """The logical id of the ``resource_type`` resource that a function's variable references."""
    value = function.environment.get(variable)
    if isinstance(value, ResourceRef) and template.resources[value.logical_id].get("Type") == resource_type:
        return value.logical_id
    raise TemplateError(f"{function.logical_id}'s {variable} does not reference an {resource_type}")


def _table(template: Template, logical_id: str) -> TableSpec:
    key_schema = template.prop(logical_id, "KeySchema")
    definitions = template.prop(logical_id, "AttributeDefinitions")
    if not key_schema or not definitions:
        raise TemplateError(f"{logical_id} has no KeySchema/AttributeDefinitions")
    ttl = template.prop(logical_id, "TimeToLiveSpecification") or {}
    enabled = str(ttl.get("Enabled", "false")).lower() == "true"
    return TableSpec(
        logical_id,
        [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in key_schema],
        [{"AttributeName": d["AttributeName"], "AttributeType": d["AttributeType"]} for d in definitions],
        ttl.get("AttributeName") if enabled else None,
    )


def _mapping(template: Template, processor_id: str) -> SourceMappingSpec:
    events: Mapping[str, Any] = template.prop(processor_id, "Events") or {}
    for event in events.values():
        if isinstance(event, dict) and event.get("Type") == "SQS":
            props = event.get("Properties") or {}
            return SourceMappingSpec(
                batch_size=int(props.get("BatchSize", 10)),
                batching_window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
            )
    return SourceMappingSpec()
