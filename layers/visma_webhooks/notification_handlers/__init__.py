"""Handler registry: ``@handler("salesorder_*")`` routes notifications by event glob.

A handler is ``fn(notification, resource, context) -> result``. Its result (any
JSON-serialisable value; a string reads best) becomes part of the feedback description.
Raise :class:`PermanentError` for a failure that retrying cannot fix; any other
exception is treated as transient and the notification is retried.

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

__all__ = ["HandlerContext", "PermanentError", "Registry", "handler", "load_modules", "registry"]

HandlerFn = Callable[[Notification, Any, "HandlerContext"], Any]


@dataclass(frozen=True)
class Handler:
    name: str
    patterns: tuple[str, ...]
    fn: HandlerFn

    def matches(self, event: str) -> bool:
        return any(fnmatchcase(event, pattern) for pattern in self.patterns)


@dataclass(frozen=True)
class HandlerContext:
    """What a handler gets besides the notification and the resource."""

    logger: logging.Logger | Any
    tenant_id: str
    visma: Any  # visma_webhooks.adapters.visma_http.VismaClient, for write-backs
    notification_id: str


class Registry:
    """Handlers by name, in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(self, patterns: tuple[str, ...], fn: HandlerFn, name: str | None = None) -> Handler:
        """Register ``fn`` under ``name`` (default: its qualified name); a name is unique."""
        entry = Handler(name or f"{fn.__module__}.{fn.__qualname__}", tuple(p.lower() for p in patterns), fn)
        self._handlers[entry.name] = entry
        return entry

    def matching(self, event: str) -> list[Handler]:
        return [h for h in self._handlers.values() if h.matches(event)]

    def __len__(self) -> int:
        return len(self._handlers)

    def clear(self) -> None:
        self._handlers.clear()


registry = Registry()


def handler(*patterns: str, name: str | None = None) -> Callable[[HandlerFn], HandlerFn]:
    """Register ``fn`` for events matching any of the globs (``customer_*``, ``*``).

    ``name`` identifies the handler in feedback, history and its idempotency key; keep
    it stable across deployments, or a renamed handler runs again for a retried notification.
    """
    if not patterns:
        raise TypeError("handler() needs at least one event glob")

    def register(fn: HandlerFn) -> HandlerFn:
        registry.add(patterns, fn, name)
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
