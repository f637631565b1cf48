"""The sandbox's Python control API: what tests, benchmarks and the local stack read and change.

:class:`~visma_webhooks_local.sandbox.server.VismaSandbox` has these methods; the HTTP
control API (:mod:`.control`) calls them.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter, deque
from typing import Any

from visma_webhooks.domain.services import FINANCIALS
from visma_webhooks_local.sandbox import changes as erp_changes
from visma_webhooks_local.sandbox.budget import Budget
from visma_webhooks_local.sandbox.faults import Faults, Rule
from visma_webhooks_local.sandbox.fixtures import Documents
from visma_webhooks_local.sandbox.responses import FEEDBACK_PATH, TOKEN_PATH
from visma_webhooks_local.sandbox.services import service
from visma_webhooks_local.sandbox.tokens import TokenIssuer
from visma_webhooks_local.sandbox.webhooks import Dispatcher

CHANGES = ("changed", "created", "deleted")


class Operations:
    """Logs, faults, documents, events and webhooks of a running sandbox."""

    _lock: threading.RLock
    _faults: Faults
    _budget: Budget
    _tokens: TokenIssuer
    _feedback: list[dict[str, Any]]
    _writes: list[dict[str, Any]]
    _requests: deque[dict[str, Any]]
    _dispatcher: Dispatcher
    documents: Documents

    # -- logs -----------------------------------------------------------------------------

    @property
    def feedback(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._feedback)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._requests]

    @property
    def writes(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._writes)

    def calls(self) -> dict[str, dict[str, int]]:
        """API calls per service (``connect`` for tokens): ``token``, ``feedback``, ``GET``, ``PUT``..., ``total``."""
        counts: dict[str, Counter[str]] = {}
        for entry in self.requests:
            path = entry["path"]
            kind = "token" if path == TOKEN_PATH else "feedback" if path == FEEDBACK_PATH else entry["method"]
            counts.setdefault(entry["service"], Counter())[kind] += 1
        return {name: {**kinds, "total": kinds.total()} for name, kinds in sorted(counts.items())}

    # -- faults and tokens ------------------------------------------------------------------

    def faults(self) -> dict[str, Any]:
        """The current fault settings and rules (with how often each rule has fired); ``rate_limit`` is the budget's."""
        return {**self._faults.snapshot(), "rate_limit": self._budget.calls_per_window}

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Change the given settings (see :meth:`.Faults.update`); ``rules`` replaces every rule.

        ``rate_limit`` sets the budget's calls per window (:meth:`set_budget`).
        """
        rate_limit = settings.pop("rate_limit", None)
        self._faults.update(**settings)
        self._budget.configure(calls_per_window=rate_limit)
        return self.faults()

    def budget(self) -> dict[str, Any]:
        """The rate limit's settings and, per (tenant, client), calls served, refused (429) and window resets."""
        return {**self._budget.settings(), "windows": self._budget.usage()}

    def set_budget(
        self, calls_per_window: int | None = None, window_seconds: float | None = None
    ) -> dict[str, Any]:
        """Change the calls per window or the window's length (``4-fixed-window``); raises ValueError."""
        self._budget.configure(calls_per_window=calls_per_window, window_seconds=window_seconds)
        return self.budget()

    def add_rule(self, path: str, status: int | None = None, times: int | None = None, **fields: Any) -> Rule:
        """Append a per-path rule (see the package docstring) and return it."""
        rule = Rule.from_dict({"path": path, "status": status, "times": times, **fields})
        self._faults.add_rule(rule)
        return rule

    def clear_rules(self) -> None:
        self._faults.clear_rules()

    def revoke_tokens(self, tenant: str | None = None) -> int:
        """Invalidate issued tokens (of one tenant, or all); the next API call gets a 401."""
        return self._tokens.revoke(tenant)

    # -- documents ------------------------------------------------------------------------

    @property
    def resources(self) -> dict[str, Any]:
        """The Financials documents by path (the other services: :meth:`resource`)."""
        with self._lock:
            return copy.deepcopy(self.documents.by_service[FINANCIALS])

    def resource(self, path: str, service_name: str = FINANCIALS) -> Any:
        """The document a GET would answer with, or None for a 404."""
        service(service_name)
        with self._lock:
            return self.documents.get(service_name, path)

    def set_resource(self, path: str, document: Any, service_name: str = FINANCIALS) -> None:
        """Add or replace a document (silently: no webhook, as a fixture)."""
        service(service_name)
        with self._lock:
            self.documents.put(service_name, path, document)

    def delete_resource(
        self,
        path: str,
        service_name: str = FINANCIALS,
        *,
        notify: bool = False,
        tenant: str | None = None,
        api_client_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Delete a resource, so that later GETs are 404; with ``notify``, fire its deletion webhook.

        Returns the notification's record (None without ``notify``). Raises ValueError if
        there is no such resource.
        """
        svc = service(service_name)
        if notify and not tenant:
            raise ValueError("a deletion webhook needs the tenant")
        with self._lock:
            if not self.documents.delete(service_name, path):
                raise ValueError(f"no resource {path} in {service_name}")
            modified = self.documents.modified()
        if not notify or not tenant:
            return None
        return self._dispatcher.fire(svc, path, "deleted", tenant, api_client_id, None, modified)

    # -- events and webhooks --------------------------------------------------------------

    def configure_webhooks(self, **settings: Any) -> dict[str, Any]:
        """Change where and how notifications are sent (see :class:`.WebhookConfig`)."""
        with self._lock:
            self._dispatcher.configure(**settings)
        return self.webhook_settings()

    def webhook_settings(self) -> dict[str, Any]:
        """The webhook settings, the secrets counted rather than shown."""
        config = self._dispatcher.config
        return {
            "url": config.url,
            "secrets": len(config.secrets),
            "delay": config.delay,
            "api_client_id": config.api_client_id,
            "attempts": config.attempts,
            "backoff": config.backoff,
            "drop_rate": config.drop_rate,
            "seed": config.seed,
        }

    def fire(
        self,
        path: str,
        service_name: str = FINANCIALS,
        *,
        tenant: str,
        change: str = "changed",
        changes: dict[str, Any] | None = None,
        api_client_id: str | None = None,
        delay: float | None = None,
    ) -> dict[str, Any]:
        """Something happens in the ERP: ``changes`` (if any) are applied, and the webhook fires.

        ``change`` is ``changed``, ``created`` or ``deleted`` (which deletes the resource);
        ``api_client_id`` is the client that made the change (None: an ERP user). Returns
        the notification's record.
        """
        svc = service(service_name)
        if change not in CHANGES:
            raise ValueError(f"change must be one of {CHANGES}")
        if not tenant:
            raise ValueError("an event needs the tenant")
        if change == "deleted":
            self.delete_resource(path, service_name)
        with self._lock:
            modified = self._apply(service_name, path, change, changes)
        return self._dispatcher.fire(svc, path, change, tenant, api_client_id, delay, modified)

    def _apply(self, service_name: str, path: str, change: str, changes: dict[str, Any] | None) -> str | None:
        """An event's ``changes`` written; the ``lastModifiedDateTime`` of the change."""
        if change == "deleted":
            return self.documents.modified()
        if changes is None:
            document = self.documents.get(service_name, path)
        elif (document := self.documents.write(service_name, path, changes)) is None:
            raise ValueError(f"no resource {path} in {service_name}")
        value = document.get("lastModifiedDateTime") if isinstance(document, dict) else None
        return value if isinstance(value, str) else None

    def make_changes(
        self,
        tenant: str,
        service_name: str = FINANCIALS,
        *,
        entity: str | None = None,
        count: int = 0,
        new: int = 0,
        paths: list[str] | None = None,
        changes: dict[str, Any] | None = None,
        delay: float | None = None,
    ) -> dict[str, Any]:
        """An ERP user changes resources (see :mod:`.changes`): ``paths``, or ``count`` of the entity's.

        With ``entity``, its ``count`` least recently changed resources change, and new ones
        are created for any it lacks and for ``new``; a path not stored is created. Each
        fires its webhook without ``ApiClientId`` (dropped at the drop share). Returns what
        changed, per path.
        """
        if not tenant:
            raise ValueError("a change needs the tenant")
        for name, value in (("count", count), ("new", new)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
            raise ValueError("delay must be a number of seconds >= 0")
        svc = service(service_name)
        if paths is None:
            paths = erp_changes.plan(self, svc, entity, count, new)
        elif not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError("paths must be a list of resource paths")
        return erp_changes.make(self, tenant, service_name, paths, changes, delay)

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        """Every notification fired, oldest first, with how its delivery went (``dropped`` ones too)."""
        return self._dispatcher.records

    @property
    def dropped_webhooks(self) -> list[dict[str, Any]]:
        """The notifications dropped (``drop_rate``): tenant, service, path, event, lastModifiedDateTime."""
        return self._dispatcher.dropped

    def wait_for_webhooks(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` notifications were fired and none is still being sent."""
        return self._dispatcher.wait(count, timeout)

    # -- reset ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the start: fault settings, no rules, empty logs, fresh rate windows and documents."""
        with self._lock:
            self._faults.reset()
            self._feedback.clear()
            self._writes.clear()
            self._requests.clear()
            self._budget.reset()
            self.documents.reset()
        self._dispatcher.clear()
