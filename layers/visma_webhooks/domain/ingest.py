"""The webhook endpoint's logic, free of Lambda and boto3.

Order of checks: source address allow-list (403, when configured) → size (413) → signature (401) → timestamp tolerance (401) → body (400)
→ enqueue valid notifications to the queue and rejected items to the DLQ → 202, or
503 when the queue did not acknowledge everything (the dispatcher then retries, and
the processor's dedup absorbs what was already enqueued).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visma_webhooks.domain.errors import ConfigurationError
from visma_webhooks.domain.parsing import PayloadError, parse_delivery
from visma_webhooks.domain.queueing import (
    MAX_MESSAGE_BYTES,
    BatchSender,
    EnqueueError,
    enqueue,
    notification_message,
    quarantine_message,
)
from visma_webhooks.domain.settings import IngestSettings
from visma_webhooks.domain.signature import SIGNATURE_HEADER, verify

TIMESTAMP_HEADER = "x-vwd-webhook-timestamp"


@dataclass
class IngestResponse:
    status: int
    body: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    notification_ids: list[str] = field(default_factory=list)


class Ingestor:
    """Verifies, parses and enqueues one delivery."""

    def __init__(
        self,
        settings: IngestSettings,
        secrets: Callable[[], Sequence[str]],
        queue: BatchSender,
        dlq: BatchSender,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self._secrets = secrets
        self._queue = queue
        self._dlq = dlq
        self._clock = clock
        self.calls = 0  # SendMessageBatch calls made by the last delivery

    def handle(self, body: bytes, headers: Mapping[str, str], source_ip: str | None = None) -> IngestResponse:
        headers = {k.lower(): v for k, v in headers.items()}
        if not self._allowed_source(source_ip):
            return IngestResponse(
                403, {"message": "source address is not allow-listed"}, {"RequestsForbidden": 1}
            )
        if len(body) > self.settings.max_body_bytes:
            return IngestResponse(
                413,
                {"message": f"body is {len(body)} bytes; the limit is {self.settings.max_body_bytes}"},
                {"RequestsTooLarge": 1},
            )
        if not self._authentic(body, headers):
            return IngestResponse(
                401,
                {"message": "missing or invalid x-vwd-signature-v1"},
                {"RequestsUnauthorized": 1},
            )
        stale = self._stale(headers)
        if stale:
            return IngestResponse(401, {"message": stale}, {"RequestsUnauthorized": 1})
        try:
            delivery = parse_delivery(body, headers, self.settings.rules)
        except PayloadError as exc:
            return IngestResponse(
                400,
                {"message": "malformed delivery", "problems": exc.problems},
                {"RequestsMalformed": 1},
            )

        messages = [notification_message(i, n) for i, n in enumerate(delivery.notifications)]
        quarantined = [quarantine_message(r, delivery.metadata) for r in delivery.rejections]
        ids = [n.notification_id for n in delivery.notifications]
        received = len(messages) + len(quarantined) + delivery.duplicates
        if any(m.size > MAX_MESSAGE_BYTES for m in messages + quarantined):
            # SQS would refuse it on every retry: a clear 413, not an endless 503.
            return IngestResponse(
                413,
                {"message": f"an item does not fit one queue message ({MAX_MESSAGE_BYTES} bytes)"},
                {"RequestsTooLarge": 1},
            )
        try:
            self.calls = enqueue(self._queue, messages) + enqueue(self._dlq, quarantined)
        except EnqueueError as exc:
            return IngestResponse(
                503,
                {"message": "the queue did not acknowledge every notification; retry the delivery"},
                {"NotificationsReceived": received, "EnqueueFailures": len(exc.failed)},
                ids,
            )
        return IngestResponse(
            202,
            {
                "accepted": len(messages),
                "rejected": [r.summary() for r in delivery.rejections],
                "duplicates": delivery.duplicates,
            },
            {
                "NotificationsReceived": received,
                "NotificationsAccepted": len(messages),
                "NotificationsRejected": len(quarantined),
                "DuplicatesInDelivery": delivery.duplicates,
            },
            ids,
        )

    def _allowed_source(self, source_ip: str | None) -> bool:
        if not self.settings.allowed_networks:
            return True
        try:
            address = ipaddress.ip_address(source_ip or "")
        except ValueError:
            return False
        return any(address in network for network in self.settings.allowed_networks)

    def _authentic(self, body: bytes, headers: Mapping[str, str]) -> bool:
        if self.settings.secret_arn is None:
            return self.settings.allow_unsigned
        secrets = [s for s in self._secrets() if s]
        if not secrets:
            raise ConfigurationError("the webhook secret holds no usable secret")
        return verify(body, headers.get(SIGNATURE_HEADER), secrets)

    def _stale(self, headers: Mapping[str, str]) -> str | None:
        """A reason to refuse the delivery's timestamp, when a tolerance is configured."""
        tolerance = self.settings.timestamp_tolerance_seconds
        if tolerance <= 0:
            return None
        value = headers.get(TIMESTAMP_HEADER, "").strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 16):
            return f"{TIMESTAMP_HEADER} is missing or not epoch milliseconds"
        skew = abs(self._clock() - int(value) / 1000)
        if skew > tolerance:
            return f"{TIMESTAMP_HEADER} is {int(skew)} s from now; the tolerance is {tolerance} s"
        return None
