"""Signing and posting deliveries as the Visma webhook dispatcher does (``visma-webhooks send``).

A sample file is either the JSON body itself (sent byte for byte), or an envelope
``{"headers": {...}, "body": ...}`` like ``events/dispatcher-delivery.json`` whose headers
are sent too (the body compact-serialised, or as given when it is a string). The
signature is ``x-vwd-signature-v1``: base64 HMAC-SHA256 of the exact bytes sent.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from visma_webhooks.domain.signature import SIGNATURE_HEADER, sign

ENVELOPE_KEYS = frozenset({"headers", "body", "description"})
TIMESTAMP_HEADER = "x-vwd-webhook-timestamp"
NOTIFICATION_ID_HEADER = "x-vwd-notification-id"
USER_AGENT = "visma-webhooks-send/0.1"
_NOT_SENT = frozenset({"content-length", "host", "connection", "transfer-encoding", SIGNATURE_HEADER})


@dataclass
class Delivery:
    """One request to send: the exact body bytes and the headers besides the signature."""

    name: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def signed(self, secret: str) -> dict[str, str]:
        """The headers to send, with a fresh webhook timestamp (when the sample has one) and the signature."""
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, **self.headers}
        if TIMESTAMP_HEADER in headers:
            headers[TIMESTAMP_HEADER] = str(int(time.time() * 1000))  # this delivery attempt is now
        headers[SIGNATURE_HEADER] = sign(self.body, secret)
        return headers

    def items(self) -> list[dict[str, Any]]:
        """The body's items (an object counts as one item)."""
        data = json.loads(self.body)
        items = data if isinstance(data, list) else [data]
        return [i for i in items if isinstance(i, dict)]


def load_delivery(path: str | Path, *, new_ids: bool = False) -> Delivery:
    """Read a sample file; with ``new_ids`` every notification id is replaced by a fresh UUID."""
    path = Path(path)
    raw = path.read_bytes()
    data = json.loads(raw)
    headers: dict[str, str] = {}
    if isinstance(data, dict) and "body" in data and set(data) <= ENVELOPE_KEYS:
        headers = {str(k).lower(): str(v) for k, v in (data.get("headers") or {}).items()}
        headers = {k: v for k, v in headers.items() if k not in _NOT_SENT}
        body = data["body"]
        raw = body.encode("utf-8") if isinstance(body, str) else _compact(body)
        data = json.loads(raw)
    if new_ids:
        data = _with_new_ids(data)
        raw = _compact(data)
        if NOTIFICATION_ID_HEADER in headers:
            headers[NOTIFICATION_ID_HEADER] = str(uuid.uuid4())
    return Delivery(path.name, raw, headers)


def post(url: str, delivery: Delivery, secret: str, *, timeout: float = 30.0) -> requests.Response:
    """POST the delivery, signed, to ``url``."""
    return requests.post(url, data=delivery.body, headers=delivery.signed(secret), timeout=timeout)


def _compact(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _with_new_ids(data: Any) -> Any:
    if isinstance(data, list):
        return [_with_new_ids(item) for item in data]
    if isinstance(data, dict):
        return {
            k: str(uuid.uuid4()) if _is_id_key(k) else v  # only the item's own id, not nested ones
            for k, v in data.items()
        }
    return data


def _is_id_key(key: Any) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "").replace("-", "") == "notificationid"
