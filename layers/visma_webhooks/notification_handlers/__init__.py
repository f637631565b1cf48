"""Handler registry: ``@handler("salesorder_*")`` routes notifications by event glob.

A handler is ``fn(notification, resource, context) -> result``. Its result (any
JSON-serialisable value; a string reads best) becomes part of the feedback description.
Raise :class:`PermanentError` for a failure that retrying cannot fix; any other
exception is treated as transient and the notification is retried.

What a handler says it needs (:func:`handler`'s flags):

* ``fetch=False``: it needs no resource (it gets ``None``); a notification whose matching
  handlers all say so is never fetched, which saves a call in the tenant's budget.
* ``echoes=True``: it also runs for our own changes (``api_client_id`` is our client),
  which the others never see, so a handler's write-back does not run it again.
* ``unchanged=True``: it also runs when the resource is as handlers last saw it.

A deleted resource (a deletion event, or a 404/410 on fetching) reaches every handler with
resource ``None`` and ``notification.deleted`` set.

Modules named in ``HANDLER_MODULES`` (comma-separated) are imported once per cold start;
importing a module registers its handlers.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from visma_webhooks.domain.errors import PermanentError
from visma_webhooks.domain.models import Notification
from visma_webhooks.domain.services import FINANCIALS

__all__ = ["HandlerContext", "PermanentError", "Registry", "handler", "load_modules", "registry"]

HandlerFn = Callable[[Notification, Any, "HandlerContext"], Any]


@dataclass(frozen=True)
class Handler:
    name: str
    patterns: tuple[str, ...]
    fn: HandlerFn
    fetch: bool = True
    echoes: bool = False
    unchanged: bool = False

    def matches(self, event: str) -> bool:
        return any(fnmatchcase(event, pattern) for pattern in self.patterns)


@dataclass(frozen=True)
class HandlerContext:
    """What a handler gets besides the notification and the resource.

    ``visma`` is the Visma client (:class:`~visma_webhooks.adapters.visma_http.VismaClient`)
    for any configured service; :meth:`request` is the short form for this tenant.
    ``service`` is the notification's service (None when it names no resource).
    """

    logger: logging.Logger | Any
    tenant_id: str
    visma: Any
    notification_id: str
    service: str | None = None

    def request(
        self, method: str, path: str, json: Any = None, *, service: str | None = None, params: Any = None
    ) -> Any:
        """Call the tenant's Visma API: ``service`` defaults to the notification's (else Financials).

        A write-back fires a notification of its own, which comes back as an echo.
        """
        return self.visma.request(
            self.tenant_id, method, service or self.service or FINANCIALS, path, json=json, params=params
        )


class Registry:
    """Handlers by name, in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(
        self,
        patterns: tuple[str, ...],
        fn: HandlerFn,
        name: str | None = None,
        *,
        fetch: bool = True,
        echoes: bool = False,
        unchanged: bool = False,
    ) -> Handler:
        """Register ``fn`` under ``name`` (default: its qualified name); a name is unique."""
        entry = Handler(
            name or f"{fn.__module__}.{fn.__qualname__}",
            tuple(p.lower() for p in patterns),
            fn,
            fetch=fetch,
            echoes=echoes,
            unchanged=unchanged,
        )
        self._handlers[entry.name] = entry
        return entry

    def matching(self, event: str) -> list[Handler]:
        return [h for h in self._handlers.values() if h.matches(event)]

    def clear(self) -> None:
        self._handlers.clear()


registry = Registry()


def handler(
    *patterns: str,
    name: str | None = None,
    fetch: bool = True,
    echoes: bool = False,
    unchanged: bool = False,
) -> Callable[[HandlerFn], HandlerFn]:
    """Register ``fn`` for events matching any of the globs (``customer_*``, ``*``).

    ``name`` identifies the handler in feedback, history and its idempotency key; keep
    it stable across deployments, or a renamed handler runs again for a retried notification.
    ``fetch``, ``echoes`` and ``unchanged``: see the module's docstring.
    """
    if not patterns:
        raise TypeError("handler() needs at least one event glob")

    def register(fn: HandlerFn) -> HandlerFn:
        registry.add(patterns, fn, name, fetch=fetch, echoes=echoes, unchanged=unchanged)
        return fn

    return register


def load_modules(names: Iterable[str]) -> None:
    """Register the handlers of every module in ``names``, replacing any registered before.

    A module imported earlier is re-run, so that loading a function module afresh (the
    local stack, tests) registers exactly the modules it names.
    """
    registry.clear()
    for name in (n.strip() for n in names):
        if not name:
            continue
        module = sys.modules.get(name)
        if module is None:
            importlib.import_module(name)
        else:
            importlib.reload(module)
