"""Baseline ingest handler, written naively: everything the job needs, imported and made at import."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from pydantic import BaseModel

if TYPE_CHECKING:  # annotations only: nothing more is imported at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = Logger()
app = APIGatewayHttpResolver()
sqs = boto3.client("sqs")
QUEUE_URL = os.environ.get("QUEUE_URL", "")


class Notification(BaseModel):
    notificationId: str
    contextId: str
    event: str
    resourceUri: str | None = None


@app.post("/webhooks/visma")
def receive() -> dict:
    items = [Notification.model_validate(item) for item in app.current_event.json_body]
    entries: list[SendMessageBatchRequestEntryTypeDef] = [
        {"Id": str(i), "MessageBody": n.model_dump_json()} for i, n in enumerate(items)
    ]
    for start in range(0, len(entries), 10):
        sqs.send_message_batch(QueueUrl=QUEUE_URL, Entries=entries[start : start + 10])
    return {"accepted": len(items)}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
