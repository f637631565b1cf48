"""Changes as an ERP user makes them: many resources of an entity change, or are created, at once.

Each one is written as the ERP saves it (new content, a later ``lastModifiedDateTime`` and
``timeStamp``) and fires its webhook without ``ApiClientId`` (a person, not an API
client), subject to the dispatcher's drop share. What a list endpoint then shows and what
the webhooks said can be compared, which is what reconciliation and the soak need.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any

from visma_webhooks.domain.ordering import modified_at
from visma_webhooks.domain.services import FINANCIALS, SALESORDERS
from visma_webhooks_local.sandbox.lists import member
from visma_webhooks_local.sandbox.services import SandboxService, service

if TYPE_CHECKING:
    from visma_webhooks_local.sandbox.operations import Operations

# The field that holds a Financials resource's id in its documents (others: ``id``).
KEY_FIELDS = {
    "customer": "number",
    "supplier": "number",
    "inventory": "inventoryNumber",
    "account": "accountCD",
    "project": "projectID",
    "employee": "employeeNumber",
    "customerinvoice": "referenceNumber",
    "supplierinvoice": "referenceNumber",
    "shipment": "shipmentNumber",
}
_revisions = itertools.count(1)


def collection(svc: SandboxService, entity: str | None) -> str:
    """The list path of an entity: ``/v1/customer``, ``/api/v3/SalesOrders``, ``/api/v1/JournalTransactions``."""
    if svc.name == FINANCIALS:
        if not entity or not re.fullmatch(r"[A-Za-z]+", entity):
            raise ValueError("a Financials change needs its entity (customer, supplier, inventory...)")
        return f"/v1/{entity}"
    return "/api/v3/SalesOrders" if svc.name == SALESORDERS else "/api/v1/JournalTransactions"


def plan(sandbox: Operations, svc: SandboxService, entity: str | None, count: int, new: int) -> list[str]:
    """The paths to change: the entity's ``count`` least recently changed, then new ones for the rest and ``new``."""
    base = collection(svc, entity)
    listed = svc.collection.match(base)
    assert listed is not None  # every collection path is its service's list
    with sandbox._lock:
        stored = sandbox.documents.stored(svc.name)
        taken = {path for path, _ in stored} | sandbox.documents.deleted[svc.name]
    members = sorted((modified_at(doc) or "", path) for path, doc in stored if member(svc, listed, path))
    paths = [path for _, path in members[:count]]
    prefix = base + "/SO" if svc.name == SALESORDERS else base
    fresh = (f"{prefix}/N{i:06d}" for i in itertools.count(1))
    paths += list(itertools.islice((p for p in fresh if p not in taken), count - len(paths) + new))
    return paths


def apply(
    sandbox: Operations, svc: SandboxService, path: str, changes: dict[str, Any] | None
) -> tuple[str, str | None]:
    """Write one change (creating the resource if it is not stored): ("changed"|"created", lastModifiedDateTime)."""
    documents = sandbox.documents
    with sandbox._lock:
        stored = path in documents.by_service[svc.name] and path not in documents.deleted[svc.name]
        change = "changed" if stored else "created"
        if change == "created":
            documents.put(svc.name, path, _new_document(svc, path))
        written = documents.write(
            svc.name, path, changes or {"note": f"changed by an ERP user ({next(_revisions)})"}
        )
    return change, None if written is None else written.get("lastModifiedDateTime")


def _new_document(svc: SandboxService, path: str) -> dict[str, Any]:
    found = svc.match(path)
    if found is None:
        raise ValueError(f"{path} names no resource of the {svc.name} API that can exist")
    if svc.name != FINANCIALS:
        shaped = svc.synthesise(found)
        return {
            k: v for k, v in shaped.items() if k not in ("synthetic", "lastModifiedDateTime", "timeStamp")
        }
    entity, ids = found.group(2), found.group(3)
    return {KEY_FIELDS.get(entity.lower(), "id"): ids, "name": f"New {entity} {ids}", "status": "Active"}


def make(
    sandbox: Operations,
    tenant: str,
    service_name: str,
    targets: list[str],
    changes: dict[str, Any] | None,
    delay: float | None,
) -> dict[str, Any]:
    """Change every path in ``targets`` and fire its webhook; what changed, was created and was dropped."""
    svc = service(service_name)
    for path in targets:
        if svc.match(path) is None:
            raise ValueError(f"{path} names no resource of the {svc.name} API that can exist")
    made = []
    for path in targets:
        change, modified = apply(sandbox, svc, path, changes)
        record = sandbox._dispatcher.fire(svc, path, change, tenant, None, delay, modified)
        made.append(
            {
                "path": path,
                "change": change,
                "lastModifiedDateTime": modified,
                "notificationId": record["notificationId"],
                "dropped": record["state"] == "dropped",
            }
        )
    return {
        "tenant": tenant,
        "service": svc.name,
        "changed": sum(m["change"] == "changed" for m in made),
        "created": sum(m["change"] == "created" for m in made),
        "dropped": sum(m["dropped"] for m in made),
        "changes": made,
    }
