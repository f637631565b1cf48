"""The control API over HTTP (``/_sandbox/...``): what tests and benchmarks read and change."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from visma_webhooks.domain.services import FINANCIALS
from visma_webhooks_local.sandbox.faults import FAULT_SETTINGS
from visma_webhooks_local.sandbox.responses import CONTROL_PREFIX, Response

if TYPE_CHECKING:
    from visma_webhooks_local.sandbox.server import VismaSandbox


def control(sandbox: VismaSandbox, method: str, path: str, raw: bytes) -> Response:
    """Answer one control request; a body that is not JSON, or a bad setting, is a 400."""
    name = path[len(CONTROL_PREFIX) :].rstrip("/")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return Response(400, {"message": "the request body is not JSON"})
    try:
        if method == "GET" and name in _VIEWS:
            return Response(200, _VIEWS[name](sandbox))
        if method == "POST" and name in _ACTIONS:
            return Response(200, _ACTIONS[name](sandbox, body))
    except ValueError as exc:
        return Response(400, {"message": str(exc)})
    return Response(404, {"message": f"no such control endpoint: {method} {path}"})


def _faults(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    """A body with ``path`` adds one rule; otherwise it changes settings (``rules`` replaces them all)."""
    if not isinstance(body, dict):
        raise ValueError("faults must be a JSON object")
    if "path" in body:
        sandbox.add_rule(**body)
        return sandbox.faults()
    unknown = set(body) - {*FAULT_SETTINGS, "rules"}
    if unknown:
        raise ValueError(f"unknown fault settings: {sorted(unknown)}")
    rules = body.get("rules")
    if rules is not None and not isinstance(rules, list):
        raise ValueError("rules must be a list")
    return sandbox.set_faults(**{k: v for k, v in body.items() if k != "rules"}, rules=rules)


def _budget(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    """``{"calls_per_window"?, "window_seconds"?}``: Visma's ``4-fixed-window`` limit per (tenant, client)."""
    body = _object(body, "budget settings")
    unknown = set(body) - {"calls_per_window", "window_seconds"}
    if unknown:
        raise ValueError(f"unknown budget settings: {sorted(unknown)}")
    return sandbox.set_budget(**body)


def _reset(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    sandbox.reset()
    return {"reset": True}


def _revoke_tokens(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    tenant = body.get("tenant") if isinstance(body, dict) else None
    return {"revoked": sandbox.revoke_tokens(tenant)}


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError(f"{what} must be a JSON object")
    return body


def _resources(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    """``{path: document}`` for Financials, or ``{"service": name, "documents": {path: document}}``."""
    body = _object(body, "resources")
    name = body.get("service", FINANCIALS)
    documents = _object(body.get("documents") if "service" in body else body, "documents")
    for resource_path, document in documents.items():
        sandbox.set_resource(resource_path, document, name)
    return {"resources": len(documents)}


def _delete(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    """``{"path", "service"?, "notify"?, "tenant"?, "apiClientId"?}``: later GETs are 404."""
    body = _object(body, "a deletion")
    record = sandbox.delete_resource(
        _text(body, "path"),
        body.get("service", FINANCIALS),
        notify=bool(body.get("notify")),
        tenant=body.get("tenant"),
        api_client_id=body.get("apiClientId"),
    )
    return {"deleted": True, "webhook": record}


def _event(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    """``{"path", "tenant", "service"?, "change"?, "changes"?, "apiClientId"?, "delay"?}``: fire a webhook."""
    body = _object(body, "an event")
    changes = body.get("changes")
    if changes is not None:
        changes = _object(changes, "changes")
    return sandbox.fire(
        _text(body, "path"),
        body.get("service", FINANCIALS),
        tenant=_text(body, "tenant"),
        change=body.get("change", "changed"),
        changes=changes,
        api_client_id=body.get("apiClientId"),
        delay=body.get("delay"),
    )


def _changes(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    """``{"tenant", "service"?, "entity"?, "count"?, "new"?, "paths"?, "changes"?, "delay"?}``: an ERP user's changes."""
    body = _object(body, "changes")
    unknown = set(body) - {"tenant", "service", "entity", "count", "new", "paths", "changes", "delay"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    if "paths" not in body and not body.get("count") and not body.get("new"):
        raise ValueError("name the paths, or an entity with a count or new")
    changes = body.get("changes")
    return sandbox.make_changes(
        _text(body, "tenant"),
        body.get("service", FINANCIALS),
        entity=body.get("entity"),
        count=body.get("count", 0),
        new=body.get("new", 0),
        paths=body.get("paths"),
        changes=None if changes is None else _object(changes, "changes"),
        delay=body.get("delay"),
    )


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


_VIEWS: dict[str, Callable[[VismaSandbox], Any]] = {
    "feedback": lambda s: s.feedback,
    "requests": lambda s: s.requests,
    "writes": lambda s: s.writes,
    "calls": lambda s: s.calls(),
    "webhooks": lambda s: s.webhooks,
    "dropped-webhooks": lambda s: s.dropped_webhooks,
    "webhook-settings": lambda s: s.webhook_settings(),
    "faults": lambda s: s.faults(),
    "budget": lambda s: s.budget(),
    "health": lambda s: {"ok": True},
}
_ACTIONS: dict[str, Callable[[VismaSandbox, Any], Any]] = {
    "faults": _faults,
    "budget": _budget,
    "reset": _reset,
    "revoke-tokens": _revoke_tokens,
    "resources": _resources,
    "delete": _delete,
    "events": _event,
    "changes": _changes,
    "webhook-settings": lambda s, body: s.configure_webhooks(**_object(body, "webhook settings")),
}
