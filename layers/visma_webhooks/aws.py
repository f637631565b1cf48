"""Adapters between the domain code and AWS (boto3 clients are passed in)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.queueing import Message

log = logging.getLogger(__name__)


class SqsBatchSender:
    """``SendMessageBatch`` to one queue; a failed call counts as every entry failed."""

    def __init__(self, client: Any, queue_url: str):
        self.client = client
        self.queue_url = queue_url

    def send_batch(self, messages: Sequence[Message]) -> list[str]:
        entries = [
            {
                "Id": m.id,
                "MessageBody": m.body,
                "MessageAttributes": {
                    k: {"DataType": "String", "StringValue": v} for k, v in m.attributes.items()
                },
            }
            for m in messages
        ]
        try:
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            log.warning("SendMessageBatch failed: %s", exc)
            return [m.id for m in messages]
        failed = response.get("Failed", [])
        if failed:
            log.warning("SendMessageBatch entries failed: %s", [(f["Id"], f.get("Code")) for f in failed])
        return [failure["Id"] for failure in failed]
