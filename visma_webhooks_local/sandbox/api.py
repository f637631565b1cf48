"""The ERP API calls of every service: reads, writes that fire webhooks, deletions, feedback.

A write or deletion is recorded, applied and its notification queued before the answer
goes out, so that whoever has the answer finds all three in the sandbox.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from visma_webhooks.domain.services import FINANCIALS
from visma_webhooks_local.sandbox.lists import answer, list_of
from visma_webhooks_local.sandbox.responses import FEEDBACK_PATH, Response, now_iso
from visma_webhooks_local.sandbox.services import SandboxService

if TYPE_CHECKING:
    from visma_webhooks_local.sandbox.server import VismaSandbox

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def route(
    sandbox: VismaSandbox,
    svc: SandboxService,
    method: str,
    path: str,
    caller: tuple[str, str | None],
    raw: bytes,
    query: str = "",
) -> Response:
    """Answer one authenticated API call; ``caller`` is the token's (tenant, client id)."""
    tenant, client = caller
    if method in ("GET", "HEAD"):
        listed = list_of(svc, path)
        with sandbox._lock:
            if listed is not None:
                return answer(sandbox.documents, svc, listed, query)
            document = sandbox.documents.get(svc.name, path)
        if document is None:
            return Response(404, {"message": f"resource not found: {path}"})
        return Response(200, document)
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return Response(400, {"message": "the request body is not JSON"})
    if svc.name == FINANCIALS and path == FEEDBACK_PATH:
        return _record_feedback(sandbox, method, tenant, body)
    if method not in WRITES:
        return Response(405, {"message": f"{method} is not supported"})
    write = {"tenant": tenant, "method": method, "service": svc.name, "path": path, "body": body}
    with sandbox._lock:
        sandbox._writes.append({**write, "client_id": client, "received_at": now_iso()})
        if method == "DELETE":
            return _delete(sandbox, svc, path, tenant, client)
        changed = sandbox.documents.write(svc.name, path, body)
    if changed is not None:
        sandbox._dispatcher.fire(svc, path, "changed", tenant, client, None, changed["lastModifiedDateTime"])
    if method == "POST":
        return Response(201, None, {"Location": path})
    return Response(204)


def _delete(
    sandbox: VismaSandbox, svc: SandboxService, path: str, tenant: str, client: str | None
) -> Response:
    if svc.match(path) is None:
        return Response(204)  # not one resource: recorded only, as before
    if not sandbox.documents.delete(svc.name, path):
        return Response(404, {"message": f"resource not found: {path}"})
    sandbox._dispatcher.fire(svc, path, "deleted", tenant, client, None, sandbox.documents.modified())
    return Response(204)


def _record_feedback(sandbox: VismaSandbox, method: str, tenant: str, body: Any) -> Response:
    if method != "POST":
        return Response(405, {"message": "feedback is created with POST"})
    if not isinstance(body, dict):
        return Response(400, {"message": "feedback must be a JSON object"})
    problems = _feedback_problems(body)
    if problems:
        return Response(400, {"message": "; ".join(problems)})
    record = {
        "tenant": tenant,
        "notificationId": body["notificationId"],
        "source": body.get("source"),
        "description": body.get("description"),
        "isSuccess": body["isSuccess"],
        "received_at": now_iso(),
    }
    with sandbox._lock:
        sandbox._feedback.append(record)
    return Response(201)


def _feedback_problems(body: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(body.get("notificationId"), str) or not body["notificationId"]:
        problems.append("notificationId must be a non-empty string")
    if not isinstance(body.get("isSuccess"), bool):
        problems.append("isSuccess must be true or false")
    for name in ("source", "description"):
        if body.get(name) is not None and not isinstance(body[name], str):
            problems.append(f"{name} must be a string")
    return problems
