"""Adapters between the domain code and AWS (boto3 clients are passed in)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.domain.queueing import Message

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

# The SDK's defaults wait up to 60 s per attempt: a stuck connection would outlast the
# invocation. The processor's clients give up within seconds and retry in standard mode.
SDK_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
# Ingest has 10 s and retries failed entries itself (queueing.enqueue, 3 attempts), so each
# of its SQS calls makes one short attempt: a hung SQS gets a 503 well within the timeout.
INGEST_SDK_CONFIG = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 1}
)


class SqsBatchSender:
    """``SendMessageBatch`` to one queue, each entry in its group; a failed call counts as every entry failed."""

    def __init__(self, client: SQSClient, queue_url: str):
        self.client = client
        self.queue_url = queue_url

    def send_batch(self, messages: Sequence[Message]) -> list[str]:
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": m.id,
                "MessageBody": m.body,
                "MessageGroupId": m.group_id,
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
