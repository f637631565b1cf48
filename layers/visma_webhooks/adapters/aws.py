"""Adapters between the domain code and AWS (boto3 clients are passed in)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from visma_webhooks.domain.queueing import WAITS_ATTRIBUTE, Message, group_id

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageAttributeValueTypeDef, SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 900  # SQS's longest DelaySeconds: 15 minutes

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


class SqsRequeuer:
    """Puts a message that must wait back on its queue as a fresh, delayed copy.

    A notification waiting for its tenant's Visma budget (or for another worker holding
    its resource) is not failing. Leaving it as a batch item failure with a longer
    visibility (``ChangeMessageVisibility``) would make every wake-up another receive,
    counted toward ``maxReceiveCount``: a long enough wait would dead-letter a healthy
    notification. A copy sent with ``DelaySeconds`` starts again at receive count 1, and
    the caller acknowledges the original.

    Cost: one ``SendMessage`` per wait; a hop waits at most 15 minutes (SQS's longest
    delay), so an hour's wait is four hops. If the original is not acknowledged after
    the copy was sent (a crash in between), both run: the processor's dedup absorbs it.
    """

    def __init__(self, client: SQSClient, queue_url: str, dlq_url: str = ""):
        self.client = client
        self.queue_url = queue_url
        self.dlq_url = dlq_url

    def requeue(
        self, body: str, attributes: Mapping[str, str], *, delay: float, tenant_id: str | None
    ) -> bool:
        """Send a copy of a received message (same body and string attributes, the
        ``waits`` attribute one higher) in the tenant's group, invisible for ``delay``
        seconds (rounded up, at most 900). False if SQS did not take it: the caller then
        leaves the original to come back as a batch item failure.
        """
        waits = attributes.get(WAITS_ATTRIBUTE, "")
        counted = str((int(waits) if waits.isascii() and waits.isdigit() else 0) + 1)
        delay_seconds = max(0, math.ceil(min(float(MAX_DELAY_SECONDS), delay)))
        return self._send(
            self.queue_url, body, {**attributes, WAITS_ATTRIBUTE: counted}, tenant_id, delay_seconds
        )

    def dead_letter(self, body: str, attributes: Mapping[str, str], *, tenant_id: str | None) -> bool:
        """Send a copy to the DLQ (none configured: False). For a copy whose genuine attempts
        are used up while SQS, counting only its own receives, would never move it."""
        if not self.dlq_url:
            return False
        return self._send(self.dlq_url, body, attributes, tenant_id, 0)

    def _send(
        self, url: str, body: str, attributes: Mapping[str, str], tenant_id: str | None, delay: int
    ) -> bool:
        copied: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items() if value
        }
        try:
            self.client.send_message(
                QueueUrl=url,
                MessageBody=body,
                MessageAttributes=copied,
                DelaySeconds=delay,
                MessageGroupId=group_id(tenant_id),
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning("SendMessage of a copy failed: %s", exc)
            return False
        return True
