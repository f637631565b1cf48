"""One SQS batch as the processor sees it: its records and what they share."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from visma_webhooks.domain.handling import Visma
from visma_webhooks.domain.outcomes import RecordResult
from visma_webhooks.domain.queueing import FAILURES_ATTRIBUTE

DEFAULT_LEASE_SECONDS = 900.0  # Lambda's longest invocation, for a scope without a deadline


@dataclass(frozen=True)
class QueuedRecord:
    """One SQS message as the processor sees it."""

    message_id: str
    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    receive_count: int = 1

    @property
    def attempts(self) -> int:
        """Genuine attempts: this copy's receives and the failures of the copies it replaced
        (a waiting copy starts again at receive count 1, but its failures still count)."""
        carried = self.attributes.get(FAILURES_ATTRIBUTE, "")
        return self.receive_count + (int(carried) if carried.isascii() and carried.isdigit() else 0)


class BatchScope:
    """Per-batch state: each distinct (tenant, service, path) is fetched once, records that
    name one resource take turns handling it, and a notification that appears twice in the
    batch is processed by its first record only. ``deadline`` (epoch seconds) ends the
    leases its records take: nobody else can take them over before the invocation ends."""

    def __init__(self, visma: Visma, deadline: float | None = None):
        self._visma = visma
        self.deadline = deadline if deadline is not None else time.time() + DEFAULT_LEASE_SECONDS
        self._lock = threading.Lock()
        self._fetches: dict[tuple[str, str, str], Future[Any]] = {}
        self._holds: dict[tuple[str, str, str], threading.Lock] = {}
        self._records: dict[str, Future[RecordResult]] = {}

    def claim(self, key: str) -> Future[RecordResult] | None:
        """None if this record is the first with ``key``; else the first one's future result."""
        with self._lock:
            if key in self._records:
                return self._records[key]
            self._records[key] = Future()
            return None

    def settle(self, key: str, result: RecordResult) -> None:
        self._records[key].set_result(result)

    def hold(self, tenant_id: str, service: str, path: str) -> threading.Lock:
        """The resource's turn: held while one record handles it and records its outcome."""
        with self._lock:
            return self._holds.setdefault((tenant_id, service, path), threading.Lock())

    def fetched(self, tenant_id: str, service: str, path: str) -> bool:
        with self._lock:
            return (tenant_id, service, path) in self._fetches

    def fetch(self, tenant_id: str, service: str, path: str) -> Any:
        key = (tenant_id, service, path)
        with self._lock:
            existing = self._fetches.get(key)
            future = self._fetches[key] = existing or Future()
        if existing is None:
            try:  # its call was taken from the budget with the notification's others
                future.set_result(self._visma.get(tenant_id, service, path, reserved=True))
            except BaseException as exc:  # handed to every waiter, then re-raised
                future.set_exception(exc)
        return future.result()
