"""Baseline ingest handler, written naively: everything the job needs, imported and made at import."""

from __future__ import annotations

import os

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from pydantic import BaseModel

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
    entries = [{"Id": str(i), "MessageBody": n.model_dump_json()} for i, n in enumerate(items)]
    for start in range(0, len(entries), 10):
        sqs.send_message_batch(QueueUrl=QUEUE_URL, Entries=entries[start : start + 10])
    return {"accepted": len(items)}


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
