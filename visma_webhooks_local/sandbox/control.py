"""The control API over HTTP (``/_sandbox/...``): what tests and benchmarks read and change."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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


def _reset(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    sandbox.reset()
    return {"reset": True}


def _revoke_tokens(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    tenant = body.get("tenant") if isinstance(body, dict) else None
    return {"revoked": sandbox.revoke_tokens(tenant)}


def _resources(sandbox: VismaSandbox, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("resources must be a JSON object of path → document")
    for resource_path, document in body.items():
        sandbox.set_resource(resource_path, document)
    return {"resources": len(sandbox.resources)}


_VIEWS: dict[str, Callable[[VismaSandbox], Any]] = {
    "feedback": lambda s: s.feedback,
    "requests": lambda s: s.requests,
    "writes": lambda s: s.writes,
    "faults": lambda s: s.faults(),
    "health": lambda s: {"ok": True},
}
_ACTIONS: dict[str, Callable[[VismaSandbox, Any], Any]] = {
    "faults": _faults,
    "reset": _reset,
    "revoke-tokens": _revoke_tokens,
    "resources": _resources,
}
