"""ProcessorFunction: the SQS consumer (see visma_webhooks.domain.processing).

Records of a batch run concurrently in threads; the response lists the records to
retry (ReportBatchItemFailures), after extending their visibility by their backoff. A
record that waits (for its tenant's budget, a 429's wait or a lease) is put back on the
queue as a fresh copy with a delay and acknowledged: waiting never uses up a receive
that counts toward the DLQ.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from types_boto3_sqs import SQSClient

from visma_webhooks.adapters.aws import SDK_CONFIG, SqsRequeuer
from visma_webhooks.adapters.budget_store import SharedBudget
from visma_webhooks.adapters.notification_state import DynamoDBNotificationState
from visma_webhooks.adapters.visma_http import VismaClient
from visma_webhooks.domain.batches import QueuedRecord
from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.outcomes import Outcome, RecordResult
from visma_webhooks.domain.processing import Processor
from visma_webhooks.domain.queueing import FAILURES_ATTRIBUTE
from visma_webhooks.domain.settings import ProcessorSettings
from visma_webhooks.notification_handlers import load_modules, registry

METRIC_BY_OUTCOME = {
    Outcome.SUCCEEDED: "NotificationsSucceeded",
    Outcome.FAILED: "NotificationsFailed",
    Outcome.RETRYING: "NotificationsRetried",
    Outcome.THROTTLED: "NotificationsThrottled",
    Outcome.WAITING: "NotificationsWaiting",
    Outcome.SUPERSEDED: "NotificationsSuperseded",
    Outcome.UNHANDLED: "NotificationsUnhandled",
    Outcome.ECHO: "NotificationsEcho",
    Outcome.UNCHANGED: "NotificationsUnchanged",
    Outcome.DUPLICATE: "NotificationsDuplicate",
    Outcome.INVALID: "NotificationsInvalid",
}

logger = Logger()
metrics = Metrics()
settings = ProcessorSettings.from_env()  # refuses to start without its table and the Visma client secret
load_modules(settings.handler_modules)

_dynamodb = boto3.client("dynamodb", config=SDK_CONFIG)  # every record needs it


@cache
def sqs_client() -> SQSClient:
    """The SQS client, made on first use: only a record to retry needs it (cold start).

    Called from the event loop's thread only (``_delay``), never from the record threads.
    """
    return boto3.client("sqs", config=SDK_CONFIG)


@cache
def requeuer() -> SqsRequeuer:
    """Puts waiting records back on the queue (made on first use, like the SQS client)."""
    return SqsRequeuer(sqs_client(), settings.queue_url, settings.dlq_url)


@cache
def visma_client() -> VismaClient:
    """The Visma client, made on first use (its secret is read once per cold start)."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider  # only needed here

    # The default session's client: a SecretsProvider of its own would build a second boto3 session.
    secret = SecretsProvider(boto3_client=boto3.client("secretsmanager", config=SDK_CONFIG)).get(
        settings.secret_arn, transform="json"
    )
    if not isinstance(secret, dict) or not {"client_id", "client_secret"} <= secret.keys():
        raise ConfigurationError(
            "the Visma client secret must be a JSON object with client_id and client_secret"
        )
    return VismaClient(
        settings.endpoints,
        settings.token_url,
        secret["client_id"],
        secret["client_secret"],
        secret.get("scope"),
        budget=SharedBudget(settings.table_name, _dynamodb, secret["client_id"], settings.budget),
    )


state = DynamoDBNotificationState(settings.table_name, _dynamodb, settings.ttl_seconds)
resources = state.resources
batch_processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_threads = ThreadPoolExecutor(max_workers=10, thread_name_prefix="record")


def _attributes(record: SQSRecord) -> dict[str, str]:
    return {name: value.string_value or "" for name, value in record.message_attributes.items()}


def _queued(record: SQSRecord) -> QueuedRecord:
    return QueuedRecord(
        message_id=record.message_id,
        body=record.body,
        attributes=_attributes(record),
        receive_count=int(record.attributes.approximate_receive_count or 1),
    )


def _delay(record: SQSRecord, result: RecordResult) -> None:
    """Keep a record to retry invisible for its backoff, instead of sleeping."""
    try:
        sqs_client().change_message_visibility(
            QueueUrl=settings.queue_url,
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=math.ceil(result.retry_after or 0),
        )
    except Exception:  # the queue's own visibility timeout applies instead
        logger.exception("could not change the message's visibility", extra={"message_id": record.message_id})


def _requeued(record: SQSRecord, result: RecordResult) -> bool:
    """A fresh copy of a waiting record, delayed by its wait, carrying its failures so far;
    False if SQS refused it."""
    attributes = {**_attributes(record), FAILURES_ATTRIBUTE: str(result.attempts - 1)}
    return requeuer().requeue(
        record.body, attributes, delay=result.retry_after or 0, tenant_id=result.tenant_id
    )


def _dead_lettered(record: SQSRecord, result: RecordResult) -> bool:
    """Move a record to the DLQ itself: its genuine attempts are used up, but SQS counts only
    this copy's receives (waits started it again at 1), so it would never move it."""
    if result.attempts < settings.max_receive_count:
        return False
    if int(record.attributes.approximate_receive_count or 1) >= settings.max_receive_count:
        return False  # SQS moves it
    # the attempts it used, for whoever reads the DLQ; refused: it stays and is tried again
    attributes = {**_attributes(record), FAILURES_ATTRIBUTE: str(result.attempts)}
    return requeuer().dead_letter(record.body, attributes, tenant_id=result.tenant_id)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    visma = visma_client()
    throttled_before = visma.stats["throttled"]
    visma.remaining_time = lambda: context.get_remaining_time_in_millis() / 1000
    processor = Processor(settings, visma, state, resources, registry, logger)
    scope = processor.batch(deadline=time.time() + context.get_remaining_time_in_millis() / 1000)
    results: list[RecordResult] = []

    async def record_handler(record: SQSRecord) -> str:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(_threads, processor.process, _queued(record), scope)
        results.append(result)
        logger.info(
            "record processed",
            extra={
                "notification_id": result.notification_id,
                "outcome": result.outcome,
                "feedback": result.feedback,
            },
        )
        if result.wait and not _requeued(record, result):
            _delay(record, result)  # the fallback: this receive counts, but nothing is lost
            raise RuntimeError(f"{result.outcome}: {result.error}")
        if result.retry and not _dead_lettered(record, result):
            _delay(record, result)
            raise RuntimeError(f"{result.outcome}: {result.error}")
        return result.outcome

    response = async_process_partial_response(event, record_handler, batch_processor, context)
    _count(results, visma.stats["throttled"] - throttled_before)
    return response


def _count(results: list[RecordResult], throttled: int) -> None:
    for result in results:
        metrics.add_metric(name=METRIC_BY_OUTCOME[result.outcome], unit=MetricUnit.Count, value=1)
        if result.deleted:
            metrics.add_metric(name="NotificationsDeleted", unit=MetricUnit.Count, value=1)
        feedback = result.feedback
        if feedback is not None and not feedback.get("skipped"):  # skipped: not due (a derived id)
            metrics.add_metric(
                name="FeedbackPosted" if feedback.get("posted") else "FeedbackFailed",
                unit=MetricUnit.Count,
                value=1,
            )
        failed = [h for h in result.handlers.values() if isinstance(h, dict) and h.get("status") == "failed"]
        if failed:
            metrics.add_metric(name="HandlerErrors", unit=MetricUnit.Count, value=len(failed))
    if throttled:
        metrics.add_metric(name="VismaThrottled", unit=MetricUnit.Count, value=throttled)
