"""Baseline processor handler, written naively: everything the job needs, imported and made at import."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
import requests
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

if TYPE_CHECKING:  # annotations only: nothing more is imported at cold start
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
sqs = boto3.client("sqs")
dynamodb = boto3.client("dynamodb")
persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "idempotency"))
config = IdempotencyConfig(event_key_jmespath="notificationId")
session = requests.Session()
BASE_URL = os.environ.get("VISMA_API_BASE_URL", "https://api.finance.visma.net")


@idempotent_function(data_keyword_argument="notification", persistence_store=persistence, config=config)
def process(notification: dict) -> dict:
    response = session.get(f"{BASE_URL}{notification['resourcePath']}", timeout=10)
    response.raise_for_status()
    return response.json()


def record_handler(record: SQSRecord) -> dict:
    return process(notification=record.json_body)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    config.register_lambda_context(context)
    return process_partial_response(event, record_handler, processor, context)
