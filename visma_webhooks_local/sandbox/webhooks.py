"""The sandbox's webhook dispatcher: signed notifications of changes, sent a short while after them.

Visma publishes no body for the dispatcher's ERP events; the sandbox sends one JSON object
per delivery, camelCase, plus ``ApiClientId`` as ERP 9.30+ names it::

    "Visma Net Financial" (Financials and journal transactions):
    {"notificationId": "<uuid>", "event": "Customer Changed", "publisher": "Visma Net Financial",
     "tenantId": "1262489", "resourceUri": "https://api.finance.visma.net/v1/customer/10002",
     "entity": "customer", "entityId": "10002", "ApiClientId": "<writer's client id>",
     "timeStamp": "2026-01-05T10:00:00.123Z"}

    "visma.net.erp.salesorderservice":
    {"notificationId": "<uuid>", "eventType": "SALESORDER_UPDATED",
     "publisher": "visma.net.erp.salesorderservice", "tenantId": "1262489",
     "resourceUri": "https://salesorder.visma.net/api/v3/SalesOrders/SO/1286",
     "orderType": "SO", "orderNo": "1286", "ApiClientId": "...", "timeStamp": "..."}

``resourceUri`` names Visma's own host of the service (the receiver maps it onto its
configured base URL). ``ApiClientId`` is left out when the change had no client (an ERP
user) or the sandbox was told not to send it. Headers as the dispatcher sets them:
``x-vwd-signature-v1`` (base64 HMAC-SHA256 of the body with the first secret),
``x-vwd-tenant-id``, ``x-vwd-notification-id`` (unique), ``x-vwd-event-id`` (one id per
event type), ``x-vwd-subscription-id``, ``x-vwd-group-id``, ``x-vwd-application-id``,
``x-vwd-notification-timestamp`` and ``x-vwd-webhook-timestamp`` (epoch ms, per attempt).
A non-2xx answer or a connection error is retried with backoff, ``attempts`` times in all.

A share ``drop_rate`` of the notifications is dropped, as a dispatcher that gives up or a
subscription that lapsed loses them: each is drawn when it is fired (from ``seed``, so a
seeded run drops the same ones), recorded with the change's ``lastModifiedDateTime`` and
never sent; :attr:`Dispatcher.dropped` lists them, which is what reconciliation must find.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from visma_webhooks.domain.signature import sign
from visma_webhooks_local.sandbox.responses import now_iso
from visma_webhooks_local.sandbox.services import SALESORDER_PUBLISHER, SandboxService, entity_of

USER_AGENT = "Visma-Webhook-Dispatcher/1.0"
_NAMESPACE = uuid.UUID("6b1f1d3e-5a43-4f0b-9a57-3f1c1d0e7a21")


@dataclass
class WebhookConfig:
    """Where change notifications go and how; no ``url``: none are sent (they are still recorded)."""

    url: str | None = None
    secrets: list[str] = field(default_factory=list)
    delay: float = 0.2  # seconds between a change and its notification
    api_client_id: bool = True  # name the writer's client, as ERP 9.30+ does
    attempts: int = 3
    backoff: float = 0.5
    drop_rate: float = 0.0  # the share of notifications dropped, never sent
    seed: int | None = None  # of the drop draws; None: the sandbox's seed

    def update(self, **settings: Any) -> None:
        """Change the given settings; raises ValueError for an unknown or bad one."""
        unknown = set(settings) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown webhook settings: {sorted(unknown)}")
        if "secrets" in settings and isinstance(settings["secrets"], str):
            settings["secrets"] = [settings["secrets"]]
        for name in ("delay", "backoff"):
            if name in settings and (not isinstance(settings[name], int | float) or settings[name] < 0):
                raise ValueError(f"{name} must be a number of seconds >= 0")
        if "attempts" in settings and (not isinstance(settings["attempts"], int) or settings["attempts"] < 1):
            raise ValueError("attempts must be a positive integer")
        drop = settings.get("drop_rate", 0.0)
        if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop <= 1:
            raise ValueError("drop_rate must be a fraction between 0 and 1")
        seed = settings.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        for name, value in settings.items():
            setattr(self, name, value)


def notification(
    svc: SandboxService, path: str, change: str, tenant: str, api_client_id: str | None
) -> tuple[dict[str, Any], str]:
    """The body of one notification for ``path`` and the event's name (see the module docstring)."""
    found = svc.resource.match(path)
    if found is None:
        raise ValueError(f"{path} names no resource of the {svc.name} API")
    entity = entity_of(svc, found)
    event = svc.event(entity, change)
    body: dict[str, Any] = {"notificationId": str(uuid.uuid4())}
    if svc.publisher == SALESORDER_PUBLISHER:
        body |= {"eventType": event, "publisher": svc.publisher, "tenantId": tenant}
        body |= {"resourceUri": svc.public_base_url + path}
        body |= {"orderType": found.group(2), "orderNo": found.group(3)}
    else:
        body |= {"event": event, "publisher": svc.publisher, "tenantId": tenant}
        body |= {"resourceUri": svc.public_base_url + path}
        body |= {"entity": entity, "entityId": found.groups()[-1]}
    if api_client_id:
        body["ApiClientId"] = api_client_id
    body["timeStamp"] = now_iso()
    return body, event


class Dispatcher:
    """Queues notifications and sends each after the configured delay, in order, from one thread."""

    def __init__(self, config: WebhookConfig, seed: int | None = None):
        self.config = config
        self._seed = seed
        self._drops = random.Random(seed if config.seed is None else config.seed)
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._records: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscription = str(uuid.uuid4())
        self._session = requests.Session()

    @property
    def records(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(r) for r in self._records]

    @property
    def dropped(self) -> list[dict[str, Any]]:
        """The notifications dropped, oldest first: what a receiver never got."""
        fields = ("notificationId", "tenant", "service", "path", "event", "lastModifiedDateTime", "fired_at")
        with self._cond:
            return [{f: r[f] for f in fields} for r in self._records if r["state"] == "dropped"]

    def configure(self, **settings: Any) -> None:
        """Change the settings (see :class:`WebhookConfig`); a ``seed`` restarts the drop draws from it."""
        with self._cond:
            self.config.update(**settings)
            if "seed" in settings:
                self._drops.seed(self._seed if self.config.seed is None else self.config.seed)

    def _drop(self) -> bool:
        return self.config.drop_rate > 0 and self._drops.random() < self.config.drop_rate

    @property
    def pending(self) -> int:
        with self._cond:
            return sum(1 for r in self._records if r["state"] in ("queued", "sending"))

    def fire(
        self,
        svc: SandboxService,
        path: str,
        change: str,
        tenant: str,
        client: str | None,
        delay: float | None,
        modified: str | None = None,
    ) -> dict[str, Any]:
        """Record one notification and queue it for sending, unless it is dropped; returns its record.

        ``modified`` is the changed resource's ``lastModifiedDateTime``, kept in the record.
        """
        body, event = notification(svc, path, change, tenant, client if self.config.api_client_id else None)
        record: dict[str, Any] = {
            "notificationId": body["notificationId"],
            "service": svc.name,
            "path": path,
            "event": event,
            "publisher": svc.publisher,
            "tenant": tenant,
            "lastModifiedDateTime": modified,
            "apiClientId": body.get("ApiClientId"),
            "body": body,
            "url": self.config.url,
            "state": "queued" if self.config.url else "not sent (no webhook URL)",
            "status": None,
            "attempts": 0,
            "error": None,
            "fired_at": now_iso(),
            "fired_ms": int(time.time() * 1000),
        }
        with self._cond:
            if self._drop():
                record["state"] = "dropped"
            self._records.append(record)
            if self.config.url and record["state"] != "dropped":
                due = time.monotonic() + (self.config.delay if delay is None else delay)
                heapq.heappush(self._due, (due, next(self._seq), record))
                self._start()
                self._cond.notify_all()
        return dict(record)

    def wait(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until ``count`` notifications were fired and none is still being sent; returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._records) < count or any(
                r["state"] in ("queued", "sending") for r in self._records
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._records)} of {count} webhook notifications settled")
                self._cond.wait(left)
            return [dict(r) for r in self._records]

    def clear(self) -> None:
        with self._cond:
            self._due.clear()
            self._records.clear()
            self._cond.notify_all()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._session.close()

    def _start(self) -> None:
        if self._thread is None and not self._stopping.is_set():
            self._thread = threading.Thread(target=self._run, name="visma-sandbox-webhooks", daemon=True)
            self._thread.start()

    def _next(self) -> dict[str, Any] | None:
        with self._cond:
            while not self._stopping.is_set():
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    record = heapq.heappop(self._due)[2]
                    record["state"] = "sending"
                    return record
                self._cond.wait(self._due[0][0] - now if self._due else None)
        return None

    def _run(self) -> None:
        while (record := self._next()) is not None:
            state, status, error = self._deliver(record)
            with self._cond:
                record.update(state=state, status=status, error=error, sent_at=now_iso())
                self._cond.notify_all()

    def _deliver(self, record: dict[str, Any]) -> tuple[str, int | None, str | None]:
        raw = json.dumps(record["body"], separators=(",", ":")).encode()
        status: int | None = None
        error: str | None = None
        for attempt in range(self.config.attempts):
            if attempt and self._stopping.wait(self.config.backoff * 2 ** (attempt - 1)):
                break
            record["attempts"] = attempt + 1
            try:
                headers = self._headers(record, raw)
                response = self._session.post(record["url"], data=raw, headers=headers, timeout=10)
            except requests.RequestException as exc:
                status, error = None, type(exc).__name__
                continue
            status, error = response.status_code, None
            if 200 <= status < 300:
                return "delivered", status, None
        return "failed", status, error

    def _headers(self, record: dict[str, Any], raw: bytes) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-vwd-tenant-id": record["tenant"],
            "x-vwd-notification-id": record["notificationId"],
            "x-vwd-event-id": str(uuid.uuid5(_NAMESPACE, f"{record['publisher']}/{record['event']}")),
            "x-vwd-subscription-id": self._subscription,
            "x-vwd-group-id": str(uuid.uuid5(_NAMESPACE, record["publisher"])),
            "x-vwd-application-id": str(uuid.uuid5(_NAMESPACE, "visma-sandbox")),
            "x-vwd-notification-timestamp": str(record["fired_ms"]),
            "x-vwd-webhook-timestamp": str(int(time.time() * 1000)),  # this attempt
        }
        if self.config.secrets:
            headers["x-vwd-signature-v1"] = sign(raw, self.config.secrets[0])
        return headers
